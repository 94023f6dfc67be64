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
	"log/slog"
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
	// deadline it was settled.
	OnExpired func(e redisstore.Expired, lag time.Duration)
	// OnRun is called after each sweep with the number of sessions settled
	// and the error, if any.
	OnRun func(settled int, err error)
}

// Sweeper periodically settles overdue sessions.
type Sweeper struct {
	target Target
	cfg    Config
	kick   chan struct{}
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

// SweepOnce settles every session overdue now, shard by shard, and returns how
// many it settled.
func (s *Sweeper) SweepOnce(ctx context.Context) (int, error) {
	total := 0
	for shard := 0; shard < s.target.Shards(); shard++ {
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			res, err := s.target.SweepShard(ctx, shard, s.cfg.Batch)
			if err != nil {
				return total, err
			}
			now := s.cfg.Now()
			for _, e := range res.Expired {
				s.cfg.OnExpired(e, now.Sub(e.Deadline))
			}
			total += len(res.Expired)
			if res.Examined < s.cfg.Batch {
				break
			}
		}
		if idle, ok := s.target.(IdleScanner); ok {
			if _, err := idle.ScanIdle(ctx, shard); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}
