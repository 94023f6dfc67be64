package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/presenced/presenced/internal/presence"
)

// Limit is a sliding-window limit: at most Max attempts within any Window.
// The zero value limits nothing.
type Limit struct {
	Max    int
	Window time.Duration
}

func (l Limit) off() bool { return l.Max == 0 }

// LoginLimits configures a LoginLimiter.
type LoginLimits struct {
	// PerUser bounds the failed logins of one username, from anywhere.
	// Zero: no such limit.
	PerUser Limit
	// PerIP bounds the failed logins from one client address, whatever the
	// username. Zero: no such limit.
	PerIP Limit
}

// LoginLimiter bounds password guessing with two sliding windows kept in
// Redis, so that every replica shares them: one per username (a guesser
// spread over many addresses still gets only PerUser.Max tries per window at
// one account) and one per client address (one address trying many
// usernames). Only failures count: a login whose password was right is taken
// back out of both windows.
//
// A window never locks anyone out for longer than itself: an attempt refused
// because the window is full is not logged, so hammering a full window does
// not extend it, and it opens again one Window after the oldest logged
// failure. Sessions that exist are never touched; only new logins wait.
type LoginLimiter struct {
	s   *Store
	lim LoginLimits
}

// NewLoginLimiter returns a LoginLimiter on the store's Redis and key prefix.
func (s *Store) NewLoginLimiter(lim LoginLimits) (*LoginLimiter, error) {
	for _, l := range []Limit{lim.PerUser, lim.PerIP} {
		if l.Max < 0 || !l.off() && l.Window < time.Millisecond {
			return nil, fmt.Errorf("redisstore: login limit %d per %s: want a positive number per window of at least 1ms", l.Max, l.Window)
		}
	}
	return &LoginLimiter{s: s, lim: lim}, nil
}

// Acquire logs a login attempt at username from ip in both windows and returns
// its ID, for Succeeded. When either window is full it logs nothing and
// returns how long until an attempt would be let through (wait > 0). A
// username that no account can have (presence.ValidateUsername) is counted
// against the address only: it cannot be guessed, and login refuses it
// without looking.
func (l *LoginLimiter) Acquire(ctx context.Context, username, ip string) (id string, wait time.Duration, err error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", 0, fmt.Errorf("redisstore: login attempt id: %w", err)
	}
	id = base64.RawURLEncoding.EncodeToString(b)
	now := l.s.nowMS()
	var taken []string
	for _, w := range l.windows(username, ip) {
		res, err := l.s.sc.loginLimit.Run(ctx, l.s.rdb, []string{w.key}, w.tag, now, w.limit.Window.Milliseconds(), w.limit.Max, id).Int64()
		if err != nil {
			l.giveBack(ctx, taken, id)
			return "", 0, l.s.fail("login limit", err)
		}
		if res > 0 {
			l.giveBack(ctx, taken, id)
			return "", time.Duration(res) * time.Millisecond, nil
		}
		taken = append(taken, w.key)
	}
	return id, 0, nil
}

// Succeeded takes the attempt id, whose password was right, back out of both
// windows: only failures count.
func (l *LoginLimiter) Succeeded(ctx context.Context, username, ip, id string) error {
	var keys []string
	for _, w := range l.windows(username, ip) {
		keys = append(keys, w.key)
	}
	return l.remove(ctx, keys, id)
}

// window is one attempt log, its tag and its limit.
type window struct {
	tag, key string
	limit    Limit
}

func (l *LoginLimiter) windows(username, ip string) []window {
	var out []window
	add := func(kind, v string, limit Limit) {
		tag := l.s.k.loginTag(kind, v)
		out = append(out, window{tag: tag, key: l.s.k.loginAttempts(tag), limit: limit})
	}
	if !l.lim.PerUser.off() && presence.ValidateUsername(username) == nil {
		add("user", presence.NormalizeUsername(username), l.lim.PerUser)
	}
	// The address comes from the HTTP layer (an IP or an IPv6 /64); braces
	// would break the key's tag, so anything holding one is not counted
	// rather than counted in the wrong slot.
	if !l.lim.PerIP.off() && ip != "" && !strings.ContainsAny(ip, "{}") {
		add("ip", ip, l.lim.PerIP)
	}
	return out
}

// giveBack removes an attempt that another window refused, on a best-effort
// basis: if Redis fails here, the attempt counts as a failure, which errs on
// the safe side.
func (l *LoginLimiter) giveBack(ctx context.Context, keys []string, id string) {
	if err := l.remove(context.WithoutCancel(ctx), keys, id); err != nil {
		l.s.log.Warn("login limit: could not take back a refused attempt", "error", err)
	}
}

// remove takes id out of each key; one command per key, so each is routed to
// its own slot on Redis Cluster.
func (l *LoginLimiter) remove(ctx context.Context, keys []string, id string) error {
	var errs []error
	for _, k := range keys {
		if err := l.s.rdb.ZRem(ctx, k, id).Err(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return l.s.fail("login limit", err)
	}
	return nil
}
