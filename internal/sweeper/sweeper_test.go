package sweeper

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// partlyDown is a target whose shard 1 is on a Redis that does not answer
// (each call blocks until its context ends), as during a failover.
type partlyDown struct {
	mu    sync.Mutex
	swept map[int]int
}

func (p *partlyDown) Shards() int { return 3 }
func (p *partlyDown) SweepShard(ctx context.Context, shard, _ int) (redisstore.SweepResult, error) {
	if shard == 1 {
		<-ctx.Done()
		return redisstore.SweepResult{}, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.swept[shard]++
	return redisstore.SweepResult{Examined: 1, Expired: []redisstore.Expired{{UserID: int64(shard)}}}, nil
}

func TestSweepOnceContinuesPastAShardThatIsDown(t *testing.T) {
	target := &partlyDown{swept: map[int]int{}}
	var settled []int64
	s := New(target, Config{CallTimeout: 50 * time.Millisecond, OnExpired: func(e redisstore.Expired, _ time.Duration) { settled = append(settled, e.UserID) }})
	start := time.Now()
	n, err := s.SweepOnce(context.Background())
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "shard 1") {
		t.Errorf("error: got %v, want shard 1's deadline exceeded", err)
	}
	if n != 2 || target.swept[0] != 1 || target.swept[2] != 1 {
		t.Errorf("settled %d (calls per shard %v), want shards 0 and 2 swept once each", n, target.swept)
	}
	if len(settled) != 2 {
		t.Errorf("OnExpired calls: got %v, want 2", settled)
	}
	if took > time.Second {
		t.Errorf("sweep took %s with a shard down, want about the 50ms call timeout", took)
	}
}
