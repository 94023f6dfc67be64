package redisstore

import (
	"context"
	"errors"
	"fmt"

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
// hold the clients' connections and heartbeat on their behalf. It is
// Touch for a batch: the steady state is ONE pipelined round trip of
// SET live 1 XX PX ttl and ZADD deadlines XX per session, the very commands
// of Touch's fast path, so revocation (an ended session has no live key, and
// XX never recreates it) is enforced in the same round trip.
//
// Sessions whose SET XX found no key take the slow path, like Touch's: one
// pipeline reads their users' status and token version, and one runs
// revive.lua for each whose user exists, which brings back a session whose
// TTL merely ran out and reports an ended one. The token version refs carry
// is ignored: a gateway does not hold it, and a session whose tokens were
// revoked has no session record, which is what revive.lua checks.
//
// refs must hold at most MaxBatch entries; duplicates are each refreshed and
// counted. The result lists unknown and revoked refs in their input order.
func (s *Store) TouchSessions(ctx context.Context, refs []presence.SessionRef) (BatchResult, error) {
	if len(refs) > MaxBatch {
		return BatchResult{}, fmt.Errorf("redisstore: touch %d sessions: at most %d per batch", len(refs), MaxBatch)
	}
	now := s.now()
	deadline := float64(now.UnixMilli() + s.ttlMS)
	sets := make([]*redis.StatusCmd, len(refs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ref := range refs {
			if ref.UserID <= 0 || ref.SessionID == "" {
				continue
			}
			sets[i] = p.SetArgs(ctx, s.k.live(ref.UserID, ref.SessionID), "1", redis.SetArgs{Mode: "XX", TTL: s.ttl})
			p.ZAddXX(ctx, s.k.deadlines(s.k.shardOfID(ref.UserID)), redis.Z{Score: deadline, Member: member(ref.UserID, ref.SessionID)})
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return BatchResult{}, s.fail("touch sessions", err)
	}
	outcome := make([]batchOutcome, len(refs))
	var missed []int
	for i, set := range sets {
		switch {
		case set == nil:
			outcome[i] = batchUnknown
		case set.Err() == nil:
			outcome[i] = batchRefreshed
		case errors.Is(set.Err(), redis.Nil):
			missed = append(missed, i)
		default:
			return BatchResult{}, s.fail("touch sessions", set.Err())
		}
	}
	if len(missed) > 0 {
		if err := s.reviveBatch(ctx, refs, missed, outcome, now.UnixMilli(), true); err != nil {
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

// reviveBatch is TouchSessions' slow path for refs[missed], the sessions
// whose live key was gone; it records their outcome.
func (s *Store) reviveBatch(ctx context.Context, refs []presence.SessionRef, missed []int, outcome []batchOutcome, nowMS int64, retry bool) error {
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
	revives := make([]*redis.Cmd, len(missed))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, i := range missed {
			v := users[j].Val()
			if len(v) < 2 || v[0] == nil {
				continue // no such user
			}
			tv, _ := v[1].(string)
			ref := refs[i]
			revives[j] = s.sc.revive.EvalSha(ctx, p, []string{s.k.user(ref.UserID)},
				s.k.tag(s.k.shardOfID(ref.UserID)), ref.UserID, ref.SessionID, tv, nowMS, s.ttlMS, s.maxlen)
		}
		return nil
	})
	if err != nil && retry && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// A fresh or flushed server: load the script and try once more
		// (nothing ran: every call failed the same way).
		if err := s.sc.revive.Load(ctx, s.rdb).Err(); err != nil {
			return s.fail("touch sessions: load script", err)
		}
		return s.reviveBatch(ctx, refs, missed, outcome, nowMS, false)
	}
	if err != nil {
		return s.fail("touch sessions: revive", err)
	}
	for j, i := range missed {
		if revives[j] == nil {
			outcome[i] = batchUnknown
			continue
		}
		row, err := revives[j].Slice()
		if err != nil {
			return s.fail("touch sessions: revive", err)
		}
		if str(row[0]) != "ok" {
			outcome[i] = batchRevoked // "revoked" or "inactive"
			continue
		}
		outcome[i] = batchRefreshed
		if len(row) > 2 {
			s.observe(str(row[2]), presence.Online, presence.ReasonHeartbeat)
		}
	}
	return nil
}
