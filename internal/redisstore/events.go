package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
)

// ReadTransitions implements presence.Store with XREAD over every shard's
// stream. With one shard a position is a plain stream ID, so other services
// and SSE clients share IDs; with several it is the shard IDs joined by ",".
//
// On a single Redis server one XREAD reads (and blocks on) every stream. On
// a Redis Cluster the streams of different shards live in different slots,
// and a command naming keys of two slots fails with CROSSSLOT, even when
// both slots are on one node. There each shard's stream is read on its own,
// all in one pipeline (which go-redis splits into one round trip per
// master, in parallel), and waiting for a transition is done by repeating
// that read every ClusterPollInterval until block has passed: a blocking
// XREAD per shard would hold one pooled connection per shard for the whole
// wait. The results are the same; only a new transition may be seen up to
// one poll interval later.
func (s *Store) ReadTransitions(ctx context.Context, after string, count int, block time.Duration) ([]presence.Transition, string, error) {
	pos, err := s.resolvePosition(ctx, after)
	if err != nil {
		return nil, "", err
	}
	if count <= 0 {
		count = 100
	}
	var res []redis.XStream
	if s.cluster != nil && len(pos) > 1 {
		res, err = s.pollShards(ctx, pos, count, block)
	} else {
		res, err = s.xread(ctx, pos, count, block)
	}
	if err != nil {
		return nil, "", s.fail("read transitions", err)
	}
	// XREAD's COUNT is per stream; the position advances only past what is
	// returned, so cutting at count loses nothing.
	var out []presence.Transition
	for _, st := range res {
		sh := s.shardOfEvents(st.Stream)
		for _, m := range st.Messages {
			if len(out) == count {
				break
			}
			pos[sh] = m.ID
			t := transitionFrom(m)
			t.ID = strings.Join(pos, ",")
			out = append(out, t)
		}
	}
	return out, strings.Join(pos, ","), nil
}

// xread reads every shard's stream after pos in one XREAD; nothing new is
// an empty result, not an error.
func (s *Store) xread(ctx context.Context, pos []string, count int, block time.Duration) ([]redis.XStream, error) {
	streams := make([]string, 0, 2*len(pos))
	for sh := range pos {
		streams = append(streams, s.k.events(int64(sh)))
	}
	streams = append(streams, pos...)
	args := &redis.XReadArgs{Streams: streams, Count: int64(count), Block: -1}
	if block > 0 {
		args.Block = block
	}
	res, err := s.rdb.XRead(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return res, err
}

// pollShards reads each shard's stream after pos with its own XREAD, all in
// one pipeline, and repeats every poll interval until something arrives or
// block has passed (block <= 0: read once). Streams come back in shard
// order, as one XREAD would return them.
func (s *Store) pollShards(ctx context.Context, pos []string, count int, block time.Duration) ([]redis.XStream, error) {
	deadline := time.Now().Add(block)
	cmds := make([]*redis.XStreamSliceCmd, len(pos))
	for {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for sh, id := range pos {
				cmds[sh] = p.XRead(ctx, &redis.XReadArgs{Streams: []string{s.k.events(int64(sh)), id}, Count: int64(count), Block: -1})
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		var out []redis.XStream
		for _, c := range cmds {
			if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return nil, err
			}
			out = append(out, c.Val()...)
		}
		wait := time.Until(deadline)
		if len(out) > 0 || wait <= 0 {
			return out, nil
		}
		t := time.NewTimer(min(wait, s.pollInterval))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// resolvePosition turns "" / "$" into the current last IDs (so no transition
// is missed between two calls) and checks a given position.
func (s *Store) resolvePosition(ctx context.Context, after string) ([]string, error) {
	n := int(s.k.shards)
	if after == "" || after == "$" {
		cmds := make([]*redis.XMessageSliceCmd, n)
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for sh := 0; sh < n; sh++ {
				cmds[sh] = p.XRevRangeN(ctx, s.k.events(int64(sh)), "+", "-", 1)
			}
			return nil
		})
		if err != nil {
			return nil, s.fail("read transitions", err)
		}
		pos := make([]string, n)
		for sh, c := range cmds {
			pos[sh] = "0-0"
			if msgs := c.Val(); len(msgs) > 0 {
				pos[sh] = msgs[0].ID
			}
		}
		return pos, nil
	}
	parts := strings.Split(after, ",")
	if after == "0" {
		parts = make([]string, n)
		for i := range parts {
			parts[i] = "0-0"
		}
	}
	if len(parts) != n {
		return nil, fmt.Errorf("redisstore: position %q: %w", after, presence.ErrInvalidCursor)
	}
	for _, p := range parts {
		if !validStreamID(p) {
			return nil, fmt.Errorf("redisstore: position %q: %w", after, presence.ErrInvalidCursor)
		}
	}
	return parts, nil
}

func validStreamID(id string) bool {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		seq = "0"
	}
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil && len(id) <= 41
}

func (s *Store) shardOfEvents(key string) int {
	for sh := int64(0); sh < s.k.shards; sh++ {
		if s.k.events(sh) == key {
			return int(sh)
		}
	}
	return 0
}

func transitionFrom(m redis.XMessage) presence.Transition {
	v := func(k string) string { s, _ := m.Values[k].(string); return s }
	id, _ := strconv.ParseInt(v("user_id"), 10, 64)
	return presence.Transition{
		UserID: id, Username: v("username"), OnlineStatus: presence.OnlineStatus(v("online_status")),
		LastSeen: parseMS(v("last_seen")), Reason: presence.Reason(v("reason")), At: parseMS(v("at")),
	}
}

// IssueTicket implements presence.Store.
func (s *Store) IssueTicket(ctx context.Context, ref presence.SessionRef, ttl time.Duration) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("redisstore: ticket: %w", err)
	}
	t := base64.RawURLEncoding.EncodeToString(b)
	v := fmt.Sprintf("%d:%s:%d", ref.UserID, ref.SessionID, ref.TokenVersion)
	if err := s.rdb.Set(ctx, s.k.ticket(t), v, ttl).Err(); err != nil {
		return "", s.fail("issue ticket", err)
	}
	return t, nil
}

// RedeemTicket implements presence.Store; GETDEL makes it single-use even
// when two requests race with the same ticket.
func (s *Store) RedeemTicket(ctx context.Context, ticket string) (presence.SessionRef, error) {
	if ticket == "" || len(ticket) > 64 {
		return presence.SessionRef{}, fmt.Errorf("redisstore: ticket: %w", presence.ErrNotFound)
	}
	v, err := s.rdb.GetDel(ctx, s.k.ticket(ticket)).Result()
	if errors.Is(err, redis.Nil) {
		return presence.SessionRef{}, fmt.Errorf("redisstore: ticket: %w", presence.ErrNotFound)
	}
	if err != nil {
		return presence.SessionRef{}, s.fail("redeem ticket", err)
	}
	parts := strings.SplitN(v, ":", 3)
	if len(parts) != 3 {
		return presence.SessionRef{}, fmt.Errorf("redisstore: ticket: corrupt value")
	}
	uid, _ := strconv.ParseInt(parts[0], 10, 64)
	tv, _ := strconv.ParseInt(parts[2], 10, 64)
	return presence.SessionRef{UserID: uid, SessionID: parts[1], TokenVersion: tv}, nil
}
