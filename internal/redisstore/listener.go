package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// DB is the Redis database number whose expiry events to follow.
	DB int
	// OnConnect is called each time the subscription is (re)established,
	// with true after a reconnect. The wiring uses it to count reconnects
	// and to sweep at once, since events in the gap are lost for good.
	OnConnect func(reconnect bool)
	// OnDisconnect is called when the subscription is lost.
	OnDisconnect func()
	// OnEvent is called with the number of expiry events of live keys handled.
	OnEvent func(n int)
	// OnExpired is called for each session the listener settled.
	OnExpired func(Expired)
	// Logger. Default: the store's logger.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between subscription
	// attempts. Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
}

// Listener turns Redis keyspace "expired" events for live keys into offline
// transitions as soon as Redis deletes the key.
//
// It is the fast path only. Keyspace notifications are fire-and-forget: they
// fire when Redis gets round to deleting a key (which, with many live keys,
// can be minutes after the TTL), they are lost while the subscriber is
// disconnected, and they are never replayed. SweepShard, run by the sweeper,
// is what guarantees the offline bound; the listener only makes it faster
// when Redis is prompt.
type Listener struct {
	store *Store
	cfg   ListenerConfig
	log   *slog.Logger
}

// NewListener returns a Listener for the store's keys.
func (s *Store) NewListener(cfg ListenerConfig) *Listener {
	if cfg.Logger == nil {
		cfg.Logger = s.log
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = 5 * time.Second
	}
	noop := func() {}
	if cfg.OnConnect == nil {
		cfg.OnConnect = func(bool) {}
	}
	if cfg.OnDisconnect == nil {
		cfg.OnDisconnect = noop
	}
	if cfg.OnEvent == nil {
		cfg.OnEvent = func(int) {}
	}
	if cfg.OnExpired == nil {
		cfg.OnExpired = func(Expired) {}
	}
	return &Listener{store: s, cfg: cfg, log: cfg.Logger}
}

// EnableNotifications makes sure notify-keyspace-events includes expired
// events (E and x). It returns an error when CONFIG is not allowed (managed
// Redis, miniredis); presenced then relies on the sweep alone.
func (s *Store) EnableNotifications(ctx context.Context) error {
	cur, err := s.rdb.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		return fmt.Errorf("redisstore: CONFIG GET notify-keyspace-events: %w", err)
	}
	flags := cur["notify-keyspace-events"]
	hasE := strings.Contains(flags, "E")
	hasX := strings.Contains(flags, "x") || strings.Contains(flags, "A")
	if hasE && hasX {
		return nil
	}
	want := flags
	if !hasE {
		want += "E"
	}
	if !hasX {
		want += "x"
	}
	if err := s.rdb.ConfigSet(ctx, "notify-keyspace-events", want).Err(); err != nil {
		return fmt.Errorf("redisstore: CONFIG SET notify-keyspace-events %s: %w", want, err)
	}
	return nil
}

// Run follows expiry events until ctx ends. It subscribes through go-redis
// (which re-subscribes by itself after a dropped connection; each new
// subscription confirmation is reported through OnConnect), and retries the
// initial subscription with exponential backoff.
func (l *Listener) Run(ctx context.Context) error {
	channel := fmt.Sprintf("__keyevent@%d__:expired", l.cfg.DB)
	backoff := l.cfg.MinBackoff
	connectedBefore := false
	for {
		ps := l.store.rdb.Subscribe(ctx, channel)
		if _, err := ps.Receive(ctx); err != nil {
			_ = ps.Close()
			if ctx.Err() != nil {
				return nil
			}
			l.log.Warn("expiry listener: subscribe failed; retrying", "error", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, l.cfg.MaxBackoff)
			continue
		}
		backoff = l.cfg.MinBackoff
		l.cfg.OnConnect(connectedBefore)
		connectedBefore = true
		err := l.consume(ctx, ps)
		_ = ps.Close()
		if ctx.Err() != nil {
			return nil
		}
		l.cfg.OnDisconnect()
		l.log.Warn("expiry listener: subscription ended; resubscribing", "error", err)
	}
}

// consume handles messages until the channel closes or ctx ends. Events that
// arrive together are settled in one script call per shard.
func (l *Listener) consume(ctx context.Context, ps *redis.PubSub) error {
	ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(4096))
	const maxBatch = 256
	batch := make(map[int64][]string)
	n := 0
	flush := func() {
		if n == 0 {
			return
		}
		l.cfg.OnEvent(n)
		for shard, members := range batch {
			res, err := l.store.ExpireSessions(ctx, int(shard), members)
			if err != nil {
				// The sweep will settle these; nothing is lost but time.
				l.log.Warn("expiry listener: settle failed; the sweep will retry", "error", err, "sessions", len(members))
				continue
			}
			for _, e := range res.Expired {
				l.cfg.OnExpired(e)
			}
		}
		clear(batch)
		n = 0
	}
	for {
		var msg any
		var ok bool
		if n == 0 {
			select {
			case <-ctx.Done():
				return nil
			case msg, ok = <-ch:
			}
		} else {
			select {
			case msg, ok = <-ch:
			default:
				flush()
				continue
			}
		}
		if !ok {
			flush()
			return errors.New("subscription channel closed")
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				// go-redis re-subscribed after losing the connection.
				l.cfg.OnConnect(true)
			}
		case *redis.Message:
			id, sid, ok := l.store.k.parseLive(m.Payload)
			if !ok {
				continue
			}
			shard := l.store.k.shardOfID(id)
			batch[shard] = append(batch[shard], member(id, sid))
			if n++; n >= maxBatch {
				flush()
			}
		}
	}
}
