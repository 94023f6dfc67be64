// Package sweeper runs the backup offline detector: a loop that settles every
// session whose deadline has passed, whether or not Redis ever announced its
// expiry.
//
// It exists because keyspace notifications are fire-and-forget: Redis sends
// "expired" only when it gets round to deleting a key (with a million live
// keys its sampler can take many minutes), sends nothing to a subscriber that
// is disconnected or restarting, and never replays. The sweep reads only the
// head of each shard's deadline index, so running it every second is cheap,
// and it is what bounds how late a user goes offline: TTL + interval + the
// time of one sweep.
package sweeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/presenced/presenced/internal/redisstore"
)

// Target is what the sweeper sweeps; *redisstore.Store implements it.
type Target interface {
	Shards() int
	SweepShard(ctx context.Context, shard, limit int) (redisstore.SweepResult, error)
}

// IdleScanner is implemented by targets that also detect idle users (away
// after a period without activity); the sweeper runs one slice of that scan
// per shard on every tick.
type IdleScanner interface {
	ScanIdle(ctx context.Context, shard int) (int, error)
}

// Config configures a Sweeper.
type Config struct {
	// Interval between sweeps. Default 1s.
	Interval time.Duration
	// Batch is how many overdue sessions one script call settles; a sweep
	// repeats calls until a shard has no overdue session left. Default 1000
	// (about a millisecond of Redis time per call).
	Batch int
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock used for lag. Default time.Now.
	Now func() time.Time
	// OnExpired is called for each settled session with how long after its
	// deadline it was settled, from one goroutine at a time.
	OnExpired func(e redisstore.Expired, lag time.Duration)
	// OnRun is called after each sweep with the number of sessions settled
	// and the error, if any.
	OnRun func(settled int, err error)
	// Concurrency is how many shards are swept at once. Default 8.
	Concurrency int
	// CallTimeout bounds one SweepShard or ScanIdle call, so that a Redis
	// master that stopped answering holds up its own shards for at most
	// this long per sweep. Default 5s.
	CallTimeout time.Duration
}

// Sweeper periodically settles overdue sessions.
type Sweeper struct {
	target Target
	cfg    Config
	kick   chan struct{}
	// mu serialises OnExpired, which concurrent shard sweeps report to.
	mu sync.Mutex
}

// New returns a Sweeper of target.
func New(target Target, cfg Config) *Sweeper {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OnExpired == nil {
		cfg.OnExpired = func(redisstore.Expired, time.Duration) {}
	}
	if cfg.OnRun == nil {
		cfg.OnRun = func(int, error) {}
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	return &Sweeper{target: target, cfg: cfg, kick: make(chan struct{}, 1)}
}

// Kick asks for a sweep now (for example after the expiry listener
// reconnected, since the events of the gap are lost). It never blocks.
func (s *Sweeper) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run sweeps every Interval until ctx ends. Errors (Redis down) are logged
// and retried at the next tick; the sweep catches up on its own afterwards.
func (s *Sweeper) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		n, err := s.SweepOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.cfg.OnRun(n, err)
		switch {
		case err != nil && !failing:
			s.cfg.Logger.Warn("sweep failed; retrying every interval", "error", err)
			failing = true
		case err == nil && failing:
			s.cfg.Logger.Info("sweep recovered", "settled", n)
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.kick:
		}
	}
}

// SweepOnce settles every session overdue now and returns how many it
// settled. Shards are swept concurrently, Concurrency at a time: on a Redis
// Cluster they live on different masters, and one master that is down or
// failing over must not hold up the shards of the others. A shard that
// fails does not stop the others; the errors are joined.
func (s *Sweeper) SweepOnce(ctx context.Context) (int, error) {
	shards := s.target.Shards()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		errs  []error
	)
	sem := make(chan struct{}, s.cfg.Concurrency)
	for shard := 0; shard < shards; shard++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n, err := s.sweepShard(ctx, shard)
			mu.Lock()
			total += n
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return total, errors.Join(errs...)
}

// sweepShard settles the shard's overdue sessions, a batch per call until
// none is left, then runs a slice of its idle scan.
func (s *Sweeper) sweepShard(ctx context.Context, shard int) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
		res, err := s.target.SweepShard(cctx, shard, s.cfg.Batch)
		cancel()
		if err != nil {
			return total, fmt.Errorf("sweeper: shard %d: %w", shard, err)
		}
		now := s.cfg.Now()
		s.mu.Lock()
		for _, e := range res.Expired {
			s.cfg.OnExpired(e, now.Sub(e.Deadline))
		}
		s.mu.Unlock()
		total += len(res.Expired)
		if res.Examined < s.cfg.Batch {
			break
		}
	}
	if idle, ok := s.target.(IdleScanner); ok {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
		_, err := idle.ScanIdle(cctx, shard)
		cancel()
		if err != nil {
			return total, fmt.Errorf("sweeper: idle scan of shard %d: %w", shard, err)
		}
	}
	return total, nil
}
