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
func (s *Store) ReadTransitions(ctx context.Context, after string, count int, block time.Duration) ([]presence.Transition, string, error) {
	pos, err := s.resolvePosition(ctx, after)
	if err != nil {
		return nil, "", err
	}
	if count <= 0 {
		count = 100
	}
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
		return nil, strings.Join(pos, ","), nil
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
