package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
)

// CreateUser implements presence.Store.
func (s *Store) CreateUser(ctx context.Context, nu presence.NewUser) (presence.User, error) {
	norm := presence.NormalizeUsername(nu.Username)
	shard := s.k.shardOfName(norm)
	role, status := nu.Role, nu.Status
	if role == "" {
		role = presence.RoleUser
	}
	if status == "" {
		status = presence.StatusPending
	}
	res, err := s.run(ctx, s.sc.createUser, shard, s.k.names(shard),
		norm, s.k.shards, shard, s.nowMS(), nu.PasswordHash,
		"username", nu.Username, "email", nu.Email, "first_name", nu.FirstName,
		"last_name", nu.LastName, "role", string(role), "status", string(status))
	if err != nil {
		return presence.User{}, s.fail("create user", err)
	}
	if str(res[0]) == "taken" {
		return presence.User{}, fmt.Errorf("redisstore: create user %q: %w", nu.Username, presence.ErrUsernameTaken)
	}
	id, _ := res[1].(int64)
	return s.User(ctx, id)
}

// User implements presence.Store.
func (s *Store) User(ctx context.Context, id int64) (presence.User, error) {
	if id <= 0 {
		return presence.User{}, fmt.Errorf("redisstore: user %d: %w", id, presence.ErrNotFound)
	}
	users, err := s.readUsers(ctx, s.k.shardOfID(id), []int64{id})
	if err != nil {
		return presence.User{}, err
	}
	if len(users) == 0 {
		return presence.User{}, fmt.Errorf("redisstore: user %d: %w", id, presence.ErrNotFound)
	}
	return users[0], nil
}

// UserIDByUsername implements presence.Store.
func (s *Store) UserIDByUsername(ctx context.Context, username string) (int64, error) {
	norm := presence.NormalizeUsername(username)
	v, err := s.rdb.HGet(ctx, s.k.names(s.k.shardOfName(norm)), norm).Result()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("redisstore: username %q: %w", username, presence.ErrNotFound)
	}
	if err != nil {
		return 0, s.fail("lookup username", err)
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redisstore: username %q: corrupt id %q", username, v)
	}
	return id, nil
}

// PasswordHash implements presence.Store.
func (s *Store) PasswordHash(ctx context.Context, id int64) (string, error) {
	v, err := s.rdb.Get(ctx, s.k.cred(id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("redisstore: credentials of user %d: %w", id, presence.ErrNotFound)
	}
	if err != nil {
		return "", s.fail("read credentials", err)
	}
	return v, nil
}

// UpdateUser implements presence.Store.
func (s *Store) UpdateUser(ctx context.Context, id int64, upd presence.UserUpdate) (presence.User, error) {
	var fields []any
	add := func(name string, v *string) {
		if v != nil {
			fields = append(fields, name, *v)
		}
	}
	add("email", upd.Email)
	add("first_name", upd.FirstName)
	add("last_name", upd.LastName)
	if upd.Role != nil {
		fields = append(fields, "role", string(*upd.Role))
	}
	if upd.Status != nil {
		fields = append(fields, "status", string(*upd.Status))
	}
	if _, err := s.account(ctx, "update", id, presence.ReasonAdmin, fields...); err != nil {
		return presence.User{}, err
	}
	return s.User(ctx, id)
}

// DeleteUser implements presence.Store.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	_, err := s.account(ctx, "delete", id, presence.ReasonAdmin)
	return err
}

// EndAllSessions implements presence.Store.
func (s *Store) EndAllSessions(ctx context.Context, userID int64, reason presence.Reason) error {
	_, err := s.account(ctx, "end_all", userID, reason)
	return err
}

func (s *Store) account(ctx context.Context, mode string, id int64, reason presence.Reason, fields ...any) ([]any, error) {
	if id <= 0 {
		return nil, fmt.Errorf("redisstore: %s user %d: %w", mode, id, presence.ErrNotFound)
	}
	args := append([]any{mode, id, s.nowMS(), s.maxlen, string(reason), s.ttlMS}, fields...)
	res, err := s.run(ctx, s.sc.account, s.k.shardOfID(id), s.k.user(id), args...)
	if err != nil {
		return nil, s.fail(mode+" user", err)
	}
	if str(res[0]) == "notfound" {
		return nil, fmt.Errorf("redisstore: %s user %d: %w", mode, id, presence.ErrNotFound)
	}
	s.observe(str(res[1]), reason)
	return res, nil
}

// SetOnlineStatus implements presence.Store.
func (s *Store) SetOnlineStatus(ctx context.Context, userID int64, status presence.OnlineStatus, until time.Time, reason presence.Reason) (presence.User, error) {
	if !status.Valid() {
		return presence.User{}, presence.Invalid("status", "must be online, away or offline")
	}
	var untilMS int64
	if !until.IsZero() {
		untilMS = until.UnixMilli()
	}
	if _, err := s.account(ctx, "override", userID, reason, string(status), untilMS); err != nil {
		return presence.User{}, err
	}
	return s.User(ctx, userID)
}

// CountUsers implements presence.Store: the sum of the username indexes'
// sizes (HLEN is O(1)).
func (s *Store) CountUsers(ctx context.Context) (int64, error) {
	return s.sumPerShard(ctx, "count users", func(p redis.Pipeliner, shard int64) *redis.IntCmd {
		return p.HLen(ctx, s.k.names(shard))
	})
}

// CountOnline implements presence.Store.
func (s *Store) CountOnline(ctx context.Context) (int64, error) {
	return s.sumPerShard(ctx, "count online", func(p redis.Pipeliner, shard int64) *redis.IntCmd {
		return p.SCard(ctx, s.k.online(shard))
	})
}

func (s *Store) sumPerShard(ctx context.Context, op string, cmd func(redis.Pipeliner, int64) *redis.IntCmd) (int64, error) {
	cmds := make([]*redis.IntCmd, s.k.shards)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for sh := int64(0); sh < s.k.shards; sh++ {
			cmds[sh] = cmd(p, sh)
		}
		return nil
	})
	if err != nil {
		return 0, s.fail(op, err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// OnlineUsers implements presence.Store.
func (s *Store) OnlineUsers(ctx context.Context) ([]presence.User, error) {
	var out []presence.User
	for sh := int64(0); sh < s.k.shards; sh++ {
		var cursor uint64
		for {
			members, next, err := s.rdb.SScan(ctx, s.k.online(sh), cursor, "", 1000).Result()
			if err != nil {
				return nil, s.fail("online users", err)
			}
			users, err := s.readUsers(ctx, sh, parseIDs(members))
			if err != nil {
				return nil, err
			}
			for _, u := range users {
				if u.IsOnline() {
					out = append(out, u)
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return dedupe(out), nil
}

// Statuses implements presence.Store in two pipelined round trips of plain
// commands (see readStatuses).
func (s *Store) Statuses(ctx context.Context, ids []int64) (map[int64]presence.Status, error) {
	return s.readStatuses(ctx, ids)
}

func parseIDs(vals []string) []int64 {
	ids := make([]int64, 0, len(vals))
	for _, v := range vals {
		if id, err := strconv.ParseInt(v, 10, 64); err == nil && id > 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

func dedupe(users []presence.User) []presence.User {
	seen := make(map[int64]bool, len(users))
	out := users[:0]
	for _, u := range users {
		if !seen[u.ID] {
			seen[u.ID] = true
			out = append(out, u)
		}
	}
	return out
}
