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
	stats, err := rdb.Info(ctx, "commandstats").Result()
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
	delete(calls, "config|resetstat") // the reset itself
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
