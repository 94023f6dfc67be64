package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
)

// MaxBatch is the most sessions one TouchSessions call takes: 1000 sessions
// are 2000 pipelined commands, about a millisecond of Redis time, so one
// batch never holds Redis up for long.
const MaxBatch = 1000

// BatchResult is what TouchSessions did with a batch.
type BatchResult struct {
	// Refreshed counts the sessions kept live (revived ones included).
	Refreshed int
	// Unknown are the sessions of users that do not exist (never did, or
	// were deleted).
	Unknown []presence.SessionRef
	// Revoked are the sessions that were ended (logout, logout-all,
	// suspension, force-logout, an expired refresh token) or never existed,
	// and those of accounts that are not active.
	Revoked []presence.SessionRef
}

// TouchSessions refreshes many sessions at once, for trusted gateways that
// hold the clients' connections and heartbeat on their behalf. It is Touch
// for a batch: the steady state is ONE pipelined round trip of
// SET live <now> XX PX ttl GET and ZADD deadlines XX per session, the very
// commands of Touch's fast path, so revocation (an ended session has no live
// key, and XX never recreates it) is enforced in the same round trip, and
// each refresh counts as activity, like a heartbeat without {"active": false}.
//
// The rare sessions Touch would send down a slow path take the same one,
// batched: a marked live key (idle session, manual status) runs activate.lua,
// and a missing one runs revive.lua, which brings back a session whose TTL
// merely ran out and reports an ended one. revive.lua checks the token
// version, which a gateway does not hold: one more pipelined read fetches the
// current one, which is sound because ending every session of a user (the
// only thing that bumps it) also deletes their session records, which is
// what revive.lua then finds missing. The token version of refs is ignored.
//
// refs must hold at most MaxBatch entries; duplicates are each refreshed and
// counted. The result lists unknown and revoked refs in their input order.
func (s *Store) TouchSessions(ctx context.Context, refs []presence.SessionRef) (BatchResult, error) {
	if len(refs) > MaxBatch {
		return BatchResult{}, fmt.Errorf("redisstore: touch %d sessions: at most %d per batch", len(refs), MaxBatch)
	}
	now := s.now()
	nowMS := now.UnixMilli()
	deadline := float64(nowMS + s.ttlMS)
	sets := make([]*redis.StatusCmd, len(refs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		// The deadline index's name, built once per shard (usually once).
		shard, index := int64(-1), ""
		for i, ref := range refs {
			if ref.UserID <= 0 || ref.SessionID == "" {
				continue
			}
			if sh := s.k.shardOfID(ref.UserID); sh != shard {
				shard, index = sh, s.k.deadlines(sh)
			}
			sets[i] = p.SetArgs(ctx, s.k.live(ref.UserID, ref.SessionID), nowMS, redis.SetArgs{Mode: "XX", TTL: s.ttl, Get: true})
			p.ZAddXX(ctx, index, redis.Z{Score: deadline, Member: member(ref.UserID, ref.SessionID)})
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return BatchResult{}, s.fail("touch sessions", err)
	}
	outcome := make([]batchOutcome, len(refs))
	var missed, marked []int
	for i, set := range sets {
		switch {
		case set == nil:
			outcome[i] = batchUnknown
		case set.Err() == nil:
			// As in Touch: a value starting with a letter is marked.
			if old := set.Val(); old != "" && old[0] >= 'a' {
				marked = append(marked, i)
			} else {
				outcome[i] = batchRefreshed
			}
		case errors.Is(set.Err(), redis.Nil):
			missed = append(missed, i)
		default:
			return BatchResult{}, s.fail("touch sessions", set.Err())
		}
	}
	if len(marked) > 0 {
		gone, err := s.activateBatch(ctx, refs, marked, outcome, nowMS)
		if err != nil {
			return BatchResult{}, err
		}
		missed = append(missed, gone...)
	}
	if len(missed) > 0 {
		if err := s.reviveBatch(ctx, refs, missed, outcome, nowMS); err != nil {
			return BatchResult{}, err
		}
	}
	var res BatchResult
	for i, o := range outcome {
		switch o {
		case batchRefreshed:
			res.Refreshed++
		case batchUnknown:
			res.Unknown = append(res.Unknown, refs[i])
		case batchRevoked:
			res.Revoked = append(res.Revoked, refs[i])
		}
	}
	return res, nil
}

// batchOutcome is what became of one session of a batch.
type batchOutcome byte

const (
	batchRefreshed batchOutcome = iota
	batchUnknown
	batchRevoked
)

// activateBatch runs activate.lua for refs[marked] (their activity is
// already stored) and returns those whose live key vanished meanwhile.
func (s *Store) activateBatch(ctx context.Context, refs []presence.SessionRef, marked []int, outcome []batchOutcome, nowMS int64) ([]int, error) {
	rows, err := s.pipelineScript(ctx, s.sc.activate, len(marked), func(j int) ([]string, []any) {
		ref := refs[marked[j]]
		return []string{s.k.user(ref.UserID)},
			[]any{s.k.tag(s.k.shardOfID(ref.UserID)), ref.UserID, ref.SessionID, nowMS, s.ttlMS, s.maxlen}
	})
	if err != nil {
		return nil, s.fail("touch sessions: activate", err)
	}
	var gone []int
	for j, i := range marked {
		row := rows[j]
		if str(row[0]) == "gone" {
			gone = append(gone, i)
			continue
		}
		outcome[i] = batchRefreshed
		if len(row) > 2 {
			s.observe(str(row[2]), presence.ReasonHeartbeat)
		}
	}
	return gone, nil
}

// reviveBatch runs revive.lua for refs[missed], the sessions whose live key
// was gone, after reading their users' current token version.
func (s *Store) reviveBatch(ctx context.Context, refs []presence.SessionRef, missed []int, outcome []batchOutcome, nowMS int64) error {
	users := make([]*redis.SliceCmd, len(missed))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, i := range missed {
			users[j] = p.HMGet(ctx, s.k.user(refs[i].UserID), "status", "tv")
		}
		return nil
	})
	if err != nil {
		return s.fail("touch sessions: read users", err)
	}
	var known []int // indexes into missed of existing users
	for j, i := range missed {
		if v := users[j].Val(); len(v) < 2 || v[0] == nil {
			outcome[i] = batchUnknown
		} else {
			known = append(known, j)
		}
	}
	rows, err := s.pipelineScript(ctx, s.sc.revive, len(known), func(k int) ([]string, []any) {
		j := known[k]
		ref := refs[missed[j]]
		tv, _ := users[j].Val()[1].(string)
		return []string{s.k.user(ref.UserID)},
			[]any{s.k.tag(s.k.shardOfID(ref.UserID)), ref.UserID, ref.SessionID, tv, nowMS, s.ttlMS, s.maxlen, "0"}
	})
	if err != nil {
		return s.fail("touch sessions: revive", err)
	}
	for k, row := range rows {
		i := missed[known[k]]
		if str(row[0]) != "ok" {
			outcome[i] = batchRevoked // "revoked" or "inactive"
			continue
		}
		outcome[i] = batchRefreshed
		if len(row) > 2 {
			s.observe(str(row[2]), presence.ReasonHeartbeat)
		}
	}
	return nil
}

// pipelineScript runs n calls of sc (call(i) gives the keys and arguments of
// the i-th) in one pipeline with EVALSHA and returns their replies. On a
// fresh or flushed server every call fails with NOSCRIPT and nothing ran: the
// script is loaded and the pipeline sent once more.
func (s *Store) pipelineScript(ctx context.Context, sc *redis.Script, n int, call func(i int) ([]string, []any)) ([][]any, error) {
	if n == 0 {
		return nil, nil
	}
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, n)
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range cmds {
				keys, args := call(i)
				cmds[i] = sc.EvalSha(ctx, p, keys, args...)
			}
			return nil
		})
		if err != nil && attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := sc.Load(ctx, s.rdb).Err(); err != nil {
				return nil, fmt.Errorf("load script: %w", err)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		rows := make([][]any, n)
		for i, c := range cmds {
			row, err := c.Slice()
			if err != nil || len(row) == 0 {
				return nil, fmt.Errorf("script reply %v: %w", row, err)
			}
			rows[i] = row
		}
		return rows, nil
	}
}

// maxTouchPipelines bounds the pipelines of coalesced heartbeats in flight
// at once; a heartbeat that arrives while that many are in flight waits and
// joins the next one.
const maxTouchPipelines = 2

// touchCoalescer sends the fast-path commands of concurrent Touch calls
// (SET live XX PX GET + ZADD deadlines XX each) in shared pipelines. Each
// call still sends its own commands for its own session and gets its own
// replies, so Touch's semantics are unchanged, revocation included: an ended
// session's SET XX fails in whichever pipeline carries it. What changes is
// the cost: under load, one write and one read (on both sides of the
// connection) serve many heartbeats instead of one each, and go-redis takes
// one connection per batch. Alone, a call is sent at once, as before.
//
// It works without a goroutine of its own (the Store has no lifecycle): the
// first callers become leaders, up to maxTouchPipelines; later ones queue,
// and a leader whose pipeline is done hands the lead to the oldest queued
// call, which sends everything queued so far. The zero value is ready.
type touchCoalescer struct {
	mu      sync.Mutex
	leaders int
	queue   []*touchCall
}

// touchCall is one Touch's commands and replies.
type touchCall struct {
	ctx              context.Context
	live, index, mem string
	nowMS            int64
	score            float64
	old              string
	err              error
	// done is closed when the replies are in, or when the call is handed
	// the lead (lead is then true).
	done chan struct{}
	lead bool
}

// touchLive runs Touch's fast path for ref at nowMS through the
// coalescer: SET live <nowMS> XX PX ttl GET and ZADD deadlines XX. It
// returns the live key's old value; redis.Nil when the key did not exist
// (nothing was set).
func (s *Store) touchLive(ctx context.Context, ref presence.SessionRef, nowMS int64) (string, error) {
	c := &touchCall{
		ctx: ctx, live: s.k.live(ref.UserID, ref.SessionID), index: s.k.deadlines(s.k.shardOfID(ref.UserID)),
		mem: member(ref.UserID, ref.SessionID), nowMS: nowMS, score: float64(nowMS + s.ttlMS),
	}
	tc := s.coalescer(ctx, c.live)
	tc.mu.Lock()
	if tc.leaders < maxTouchPipelines {
		tc.leaders++
		tc.mu.Unlock()
		s.leadTouches(tc, []*touchCall{c})
		return c.old, c.err
	}
	c.done = make(chan struct{})
	tc.queue = append(tc.queue, c)
	tc.mu.Unlock()
	<-c.done
	if c.lead {
		// Handed the lead (and taken off the queue): send this call and
		// every one queued behind it.
		tc.mu.Lock()
		batch := append([]*touchCall{c}, tc.queue...)
		tc.queue = nil
		tc.mu.Unlock()
		s.leadTouches(tc, batch)
	}
	return c.old, c.err
}

// coalescer returns the coalescer of a heartbeat for the live key key. On
// a Redis Cluster there is one per master: a cluster pipeline waits for
// every master it touches, so heartbeats of different masters must not share
// one, or a master that dies would stall everybody's heartbeats until the
// failover instead of only its own shards'. (One per shard would do too,
// but split the batches so finely that Redis spent about three times the CPU
// per heartbeat.) The master of a key changes with a failover or resharding;
// a pipeline sent to an old one still reaches the right master through
// go-redis's redirections, and the next heartbeats use the new one.
func (s *Store) coalescer(ctx context.Context, key string) *touchCoalescer {
	if s.cluster == nil {
		return &s.touches
	}
	node, err := s.cluster.MasterForKey(ctx, key)
	if err != nil {
		return &s.touches // the pipeline will report the error
	}
	if tc, ok := s.nodeTouches.Load(node); ok {
		return tc.(*touchCoalescer)
	}
	tc, _ := s.nodeTouches.LoadOrStore(node, &touchCoalescer{})
	return tc.(*touchCoalescer)
}

// leadTouches sends batch as one pipeline, hands each call its replies,
// then passes the lead on to the oldest queued call, if any.
func (s *Store) leadTouches(tc *touchCoalescer, batch []*touchCall) {
	s.sendTouches(batch)
	tc.mu.Lock()
	var next *touchCall
	if len(tc.queue) > 0 {
		next = tc.queue[0]
		next.lead = true
		tc.queue = tc.queue[1:]
	} else {
		tc.leaders--
	}
	tc.mu.Unlock()
	for _, c := range batch {
		if c.done != nil && !c.lead {
			close(c.done)
		}
	}
	if next != nil {
		close(next.done)
	}
}

// sendTouches runs the calls' commands in one pipeline. It is bounded by the
// latest deadline among the calls (a call whose own request was cancelled
// does not fail the others').
func (s *Store) sendTouches(batch []*touchCall) {
	if len(batch) == 1 {
		// Alone (the common case below saturation): its own context.
		s.sendTouchesCtx(batch[0].ctx, batch)
		return
	}
	ctx := context.Background()
	var latest time.Time
	for _, c := range batch {
		d, ok := c.ctx.Deadline()
		if !ok {
			latest = time.Time{}
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	if !latest.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, latest)
		defer cancel()
	}
	s.sendTouchesCtx(ctx, batch)
}

func (s *Store) sendTouchesCtx(ctx context.Context, batch []*touchCall) {
	sets := make([]*redis.StatusCmd, len(batch))
	zadds := make([]*redis.IntCmd, len(batch))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range batch {
			sets[i] = p.SetArgs(ctx, c.live, c.nowMS, redis.SetArgs{Mode: "XX", TTL: s.ttl, Get: true})
			zadds[i] = p.ZAddXX(ctx, c.index, redis.Z{Score: c.score, Member: c.mem})
		}
		return nil
	})
	// Pipelined's own error is the first command error; each call looks at
	// its own commands only (go-redis marks every command of a pipeline that
	// failed as a whole).
	_ = err
	for i, c := range batch {
		switch {
		case sets[i].Err() != nil:
			c.err = sets[i].Err()
		case zadds[i].Err() != nil:
			c.err = zadds[i].Err()
		default:
			c.old = sets[i].Val()
		}
	}
}
