package redisstore

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/redistest"
)

// roundTrips counts what go-redis sends: one per command, one per pipeline.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// TestIntegrationSteadyStateHeartbeatCost proves the hot path's cost on a
// real Redis: one round trip and two plain commands (SET, ZADD) per
// heartbeat, no script, nothing written to the durable user hash.
func TestIntegrationSteadyStateHeartbeatCost(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	st, err := New(rdb, Config{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	u := newUser(t, st, "alice")
	ref := loginAt(t, st, u)
	if _, err := st.Touch(ctx, ref); err != nil {
		t.Fatal(err)
	}
	before, _ := rdb.HGetAll(ctx, st.k.user(u.ID)).Result()
	hook := &roundTrips{}
	rdb.AddHook(hook)
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	hook.n.Store(0)
	const n = 200
	for i := 0; i < n; i++ {
		if _, err := st.Touch(ctx, ref); err != nil {
			t.Fatal(err)
		}
	}
	if got := hook.n.Load(); got != n {
		t.Fatalf("%d round trips for %d heartbeats, want %d", got, n, n)
	}
	calls := commandCalls(t, rdb)
	want := map[string]int{"set": n, "zadd": n}
	if len(calls) != len(want) || calls["set"] != n || calls["zadd"] != n {
		t.Fatalf("commands for %d heartbeats: %v, want %v", n, calls, want)
	}
	after, _ := rdb.HGetAll(ctx, st.k.user(u.ID)).Result()
	if len(after) != len(before) {
		t.Fatalf("user hash changed: %v -> %v", before, after)
	}
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("heartbeat wrote user hash field %s: %q -> %q", k, v, after[k])
		}
	}
	t.Logf("steady-state heartbeat: 1 round trip, commands per heartbeat: %v", map[string]float64{"set": float64(calls["set"]) / n, "zadd": float64(calls["zadd"]) / n})
}

// commandCalls returns the calls per command since the last CONFIG
// RESETSTAT (from INFO commandstats), leaving out the reset itself.
func commandCalls(t *testing.T, rdb *redis.Client) map[string]int {
	t.Helper()
	stats, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(stats, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		f, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		c, _ := strconv.Atoi(f)
		calls[strings.TrimPrefix(name, "cmdstat_")] = c
	}
	delete(calls, "config|resetstat")
	return calls
}

// TestIntegrationExpiryCostPerUser proves that settling a user whose
// sessions all expired costs the same Redis commands whether they had 2
// sessions or 10: the first ended session settles the rest at once with
// batch commands (see fold_overdue in lua/lib.lua). It also logs how fast
// the sweep settles a small flood on this machine (a figure, not an
// assertion: README, Reliability).
func TestIntegrationExpiryCostPerUser(t *testing.T) {
	srv := redistest.Start(t, redistest.WithoutNotifications())
	rdb := srv.Client(t)
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	st, err := New(rdb, Config{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	// login starts n sessions for each of users new users.
	login := func(prefix string, users, n int) {
		for i := range users {
			u := newUser(t, st, prefix+strconv.Itoa(i))
			for range n {
				loginAt(t, st, u)
			}
		}
	}
	sweep := func() (settled int) {
		for {
			res, err := st.SweepShard(ctx, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			settled += len(res.Expired)
			if res.Examined < 1000 {
				return settled
			}
		}
	}
	// cost settles one user with n expired sessions and returns the
	// commands the sweep's script ran.
	cost := func(name string, n int) (map[string]int, int) {
		login(name, 1, n)
		time.Sleep(ttl + 100*time.Millisecond)
		if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		sweep()
		calls := commandCalls(t, rdb)
		if online, _ := rdb.SCard(ctx, st.k.online(0)).Result(); online != 0 {
			t.Fatalf("%s still online after the sweep", name)
		}
		total := 0
		for cmd, c := range calls {
			if cmd != "evalsha" && cmd != "eval" {
				total += c
			}
		}
		return calls, total
	}
	calls2, total2 := cost("two", 2)
	calls10, total10 := cost("ten", 10)
	if total10 != total2 {
		t.Errorf("settling a user: %d commands with 10 sessions %v, %d with 2 %v; want the same", total10, calls10, total2, calls2)
	}

	// A small flood: 200 users with 10 sessions each, swept at once.
	const users, per = 200, 10
	login("flood", users, per)
	time.Sleep(ttl + 100*time.Millisecond)
	start := time.Now()
	sweep()
	took := time.Since(start)
	t.Logf("FIGURES expiry cost: %d commands to settle a user, with 2 or 10 expired sessions (%v); sweep settled %d sessions (%d per user) in %v, %.0f sessions/s",
		total10, calls10, users*per, per, took.Round(time.Millisecond), float64(users*per)/took.Seconds())
}
