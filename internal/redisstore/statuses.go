package redisstore

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
)

// readStatuses is Statuses: the presence of many users in two pipelined
// round trips of plain commands, reading only what a status needs.
//
// read_users.lua (which User and the listing use) returns each user's whole
// hash; for a 1000-ID bulk status that is ~300 KB built by Lua and decoded
// into a million Go values, ~9 ms of Redis time and ~3 ms of client CPU per
// call. Here: HMGET of the three fields a status needs and HKEYS of the
// session records per user, then one ZMSCORE per shard for the sessions of
// the users that are online (their latest live activity, as read_users.lua
// computes it: deadline − TTL of each live session).
//
// The two round trips are not one atomic read: a user who goes offline in
// between is reported online with the last_seen of the first read, the
// answer of a moment earlier.
func (s *Store) readStatuses(ctx context.Context, ids []int64) (map[int64]presence.Status, error) {
	out := make(map[int64]presence.Status, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	fields := make([]*redis.SliceCmd, len(ids))
	sessions := make([]*redis.StringSliceCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			if id <= 0 {
				continue
			}
			fields[i] = p.HMGet(ctx, s.k.user(id), "id", "online_status", "last_seen")
			sessions[i] = p.HKeys(ctx, s.k.sessions(id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.fail("statuses", err)
	}
	// The live sessions' deadlines of the online users, per shard.
	type owner struct {
		id  int64
		pos int // index in ids
	}
	members := map[int64][]string{}
	owners := map[int64][]owner{}
	for i, id := range ids {
		if fields[i] == nil {
			continue
		}
		v := fields[i].Val()
		if len(v) < 3 || v[0] == nil {
			continue // no such user
		}
		st := presence.Status{OnlineStatus: presence.Offline}
		if os, _ := v[1].(string); os != "" {
			st.OnlineStatus = presence.OnlineStatus(os)
		}
		if ls, _ := v[2].(string); ls != "" {
			st.LastSeen = parseMS(ls)
		}
		out[id] = st
		if st.OnlineStatus == presence.Offline {
			continue
		}
		sh := s.k.shardOfID(id)
		for _, sid := range sessions[i].Val() {
			members[sh] = append(members[sh], member(id, sid))
			owners[sh] = append(owners[sh], owner{id, i})
		}
	}
	if len(members) == 0 {
		return out, nil
	}
	scores := make(map[int64]*redis.FloatSliceCmd, len(members))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for sh, m := range members {
			scores[sh] = p.ZMScore(ctx, s.k.deadlines(sh), m...)
		}
		return nil
	})
	if err != nil {
		return nil, s.fail("statuses: deadlines", err)
	}
	now := s.nowMS()
	for sh, cmd := range scores {
		vals := cmd.Val()
		for j, o := range owners[sh] {
			if j >= len(vals) {
				break
			}
			// ZMSCORE answers 0 for a missing member (go-redis maps nil).
			d := int64(vals[j])
			if d <= now {
				continue // not live (or not indexed)
			}
			if last := msTime(d - s.ttlMS); last.After(out[o.id].LastSeen) {
				st := out[o.id]
				st.LastSeen = last
				out[o.id] = st
			}
		}
	}
	return out, nil
}
