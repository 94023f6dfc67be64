package sweeper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestSweepOnceCatchesUpPastTheBatch(t *testing.T) {
	ctx := context.Background()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	clk := &fakeClock{now: time.UnixMilli(1_780_000_000_000)}
	store, err := redisstore.New(rdb, redisstore.Config{Shards: 2, TTL: 5 * time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	const users = 23
	for i := 0; i < users; i++ {
		u, err := store.CreateUser(ctx, presence.NewUser{Username: fmt.Sprintf("user%d", i), Status: presence.StatusActive, PasswordHash: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := store.StartSession(ctx, u.ID, presence.SessionStart{RefreshExpires: clk.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(7 * time.Second)
	mr.FastForward(7 * time.Second)
	var lags []time.Duration
	s := New(store, Config{Batch: 4, Now: clk.Now, OnExpired: func(_ redisstore.Expired, lag time.Duration) { lags = append(lags, lag) }})
	n, err := s.SweepOnce(ctx)
	if err != nil || n != users {
		t.Fatalf("SweepOnce: got %d %v, want %d", n, err, users)
	}
	for _, l := range lags {
		if l != 2*time.Second {
			t.Fatalf("lag %v, want 2s (7s after login with a 5s TTL)", l)
		}
	}
	if online, _ := store.CountOnline(ctx); online != 0 {
		t.Fatalf("%d users still online", online)
	}
	if n, _ := s.SweepOnce(ctx); n != 0 {
		t.Fatalf("second sweep settled %d", n)
	}
}

type failing struct{ calls int }

func (f *failing) Shards() int { return 1 }
func (f *failing) SweepShard(context.Context, int, int) (redisstore.SweepResult, error) {
	f.calls++
	return redisstore.SweepResult{}, errors.New("redis down")
}

func TestRunRetriesAndStopsWithContext(t *testing.T) {
	target := &failing{}
	runs := make(chan error, 100)
	s := New(target, Config{Interval: 5 * time.Millisecond, OnRun: func(_ int, err error) { runs <- err }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	for i := 0; i < 3; i++ {
		if err := <-runs; err == nil {
			t.Fatal("run reported no error from a failing target")
		}
	}
	s.Kick()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil on cancel", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
}
