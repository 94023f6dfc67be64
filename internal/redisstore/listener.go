package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// DB is the Redis database number whose expiry events to follow.
	DB int
	// OnConnect is called each time the subscription is (re)established,
	// with true after a reconnect. The wiring uses it to count reconnects
	// and to sweep at once, since events in the gap are lost for good. On a
	// cluster it is called when every master is subscribed (see
	// runCluster). It must not block.
	OnConnect func(reconnect bool)
	// OnDisconnect is called when the subscription is lost (on a cluster:
	// when some master is not subscribed any more). It must not block.
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
	// TopologyInterval is how often, on a Redis Cluster, the listener asks
	// which nodes are masters, to subscribe to new ones (a failover, a
	// master added by resharding) and drop those that left. Default 2s.
	TopologyInterval time.Duration
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
//
// On a Redis Cluster every master announces only the expiries of its own
// keys, so the listener keeps one subscription per master, and follows the
// topology: every TopologyInterval it asks the cluster for its masters,
// subscribes to new ones (turning notifications on there too) and closes the
// subscriptions of nodes that no longer serve slots. Events a master sent
// before the listener found it are lost like any other; the sweep settles
// those sessions.
type Listener struct {
	store *Store
	cfg   ListenerConfig
	log   *slog.Logger

	// On a cluster: the masters with a live subscription.
	mu         sync.Mutex
	subscribed map[string]bool
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
	if cfg.TopologyInterval <= 0 {
		cfg.TopologyInterval = 2 * time.Second
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
	return &Listener{store: s, cfg: cfg, log: cfg.Logger, subscribed: map[string]bool{}}
}

// EnableNotifications makes sure notify-keyspace-events includes expired
// events (E and x). It returns an error when CONFIG is not allowed (managed
// Redis, miniredis); presenced then relies on the sweep alone. On a Redis
// Cluster the setting is per node: it is made on every master and replica
// (so that a replica promoted by a failover announces expiries at once),
// and the listener makes it on masters that appear later.
func (s *Store) EnableNotifications(ctx context.Context) error {
	if s.cluster != nil {
		return s.cluster.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
			return enableNotifications(ctx, node)
		})
	}
	return enableNotifications(ctx, s.rdb)
}

func enableNotifications(ctx context.Context, c redis.UniversalClient) error {
	node := ""
	if nc, ok := c.(*redis.Client); ok {
		node = " on " + nc.Options().Addr
	}
	cur, err := c.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		return fmt.Errorf("redisstore: CONFIG GET notify-keyspace-events%s: %w", node, err)
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
	if err := c.ConfigSet(ctx, "notify-keyspace-events", want).Err(); err != nil {
		return fmt.Errorf("redisstore: CONFIG SET notify-keyspace-events %s%s: %w", want, node, err)
	}
	return nil
}

// Run follows expiry events until ctx ends. It subscribes through go-redis
// (which re-subscribes by itself after a dropped connection; each new
// subscription confirmation is reported through OnConnect), and retries the
// initial subscription with exponential backoff. On a Redis Cluster it does
// so on every master (see Listener).
func (l *Listener) Run(ctx context.Context) error {
	if cc := l.store.cluster; cc != nil {
		return l.runCluster(ctx, cc)
	}
	channel := fmt.Sprintf("__keyevent@%d__:expired", l.cfg.DB)
	l.runNode(ctx, l.store.rdb, channel, "", l.cfg.OnConnect, l.cfg.OnDisconnect)
	return nil
}

// runNode keeps one subscription to channel on client until ctx ends.
// node names the server in log lines ("" on a single server).
func (l *Listener) runNode(ctx context.Context, client redis.UniversalClient, channel, node string, onConnect func(reconnect bool), onDisconnect func()) {
	log := l.log
	if node != "" {
		log = log.With("node", node)
	}
	backoff := l.cfg.MinBackoff
	connectedBefore := false
	for {
		ps := client.Subscribe(ctx, channel)
		if _, err := ps.Receive(ctx); err != nil {
			_ = ps.Close()
			if ctx.Err() != nil {
				return
			}
			log.Warn("expiry listener: subscribe failed; retrying", "error", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, l.cfg.MaxBackoff)
			continue
		}
		backoff = l.cfg.MinBackoff
		onConnect(connectedBefore)
		connectedBefore = true
		err := l.consume(ctx, ps, func() { onConnect(true) })
		_ = ps.Close()
		if ctx.Err() != nil {
			return
		}
		onDisconnect()
		log.Warn("expiry listener: subscription ended; resubscribing", "error", err)
	}
}

// Masters returns, on a Redis Cluster, the addresses of the masters the
// listener holds a live subscription to, sorted; nil on a single server.
func (l *Listener) Masters() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for addr, up := range l.subscribed {
		if up {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out
}

// runCluster keeps one subscription per master of the cluster, re-reading
// the set of masters every TopologyInterval. OnConnect and OnDisconnect
// report the listener as a whole: connected while every current master is
// subscribed. OnConnect's reconnect is false only for the first time, so
// any later subscription (a master back, a new one, a failover) kicks a
// sweep for the events that were lost meanwhile.
func (l *Listener) runCluster(ctx context.Context, cc *redis.ClusterClient) error {
	const channel = "__keyevent@0__:expired" // a cluster has database 0 only
	type nodeSub struct {
		client *redis.Client
		cancel context.CancelFunc
	}
	subs := map[string]*nodeSub{}
	var wg sync.WaitGroup
	defer func() {
		for _, n := range subs {
			n.cancel()
		}
		wg.Wait()
	}()

	var allUp, everUp bool
	// update recomputes whether every master is subscribed and reports a
	// change. Called with l.mu held.
	update := func() {
		up := len(subs) > 0
		for addr := range subs {
			up = up && l.subscribed[addr]
		}
		switch {
		case up && !allUp:
			allUp = true
			l.cfg.OnConnect(everUp)
			everUp = true
		case !up && allUp:
			allUp = false
			l.cfg.OnDisconnect()
		}
	}

	failing := false
	t := time.NewTicker(l.cfg.TopologyInterval)
	defer t.Stop()
	for {
		masters, err := clusterMasters(ctx, cc)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			if !failing {
				l.log.Warn("expiry listener: cannot read the cluster's masters; retrying", "error", err)
				failing = true
			}
		default:
			failing = false
			l.mu.Lock()
			for addr, n := range subs {
				if masters[addr] != n.client {
					// No longer a master (failed over, emptied by a
					// reshard), or go-redis replaced its client.
					n.cancel()
					delete(subs, addr)
					delete(l.subscribed, addr)
					l.log.Info("expiry listener: node is no longer a master; unsubscribed", "node", addr)
				}
			}
			for addr, client := range masters {
				if subs[addr] != nil {
					continue
				}
				nctx, cancel := context.WithCancel(ctx)
				subs[addr] = &nodeSub{client: client, cancel: cancel}
				l.subscribed[addr] = false
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := enableNotifications(nctx, client); err != nil && nctx.Err() == nil {
						l.log.Warn("keyspace notifications could not be enabled on a master; the sweep covers its sessions", "node", addr, "error", err)
					}
					l.runNode(nctx, client, channel, addr,
						func(reconnect bool) {
							l.mu.Lock()
							defer l.mu.Unlock()
							if nctx.Err() != nil {
								return
							}
							was := allUp
							l.subscribed[addr] = true
							update()
							if was && reconnect {
								// go-redis re-subscribed on its own after a
								// dropped connection: report it like a
								// single server's, so the sweep runs now.
								l.cfg.OnConnect(true)
							}
						},
						func() {
							l.mu.Lock()
							defer l.mu.Unlock()
							if nctx.Err() == nil {
								l.subscribed[addr] = false
								update()
							}
						})
				}()
			}
			update()
			l.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// clusterMasters returns the masters that serve slots now, by address, with
// go-redis's client of each (ForEachMaster reloads the slot map first).
func clusterMasters(ctx context.Context, cc *redis.ClusterClient) (map[string]*redis.Client, error) {
	var mu sync.Mutex
	out := map[string]*redis.Client{}
	err := cc.ForEachMaster(ctx, func(_ context.Context, node *redis.Client) error {
		mu.Lock()
		out[node.Options().Addr] = node
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: cluster masters: %w", err)
	}
	return out, nil
}

// consume handles messages until the channel closes or ctx ends. Events that
// arrive together are settled in one script call per shard.
func (l *Listener) consume(ctx context.Context, ps *redis.PubSub, onResubscribe func()) error {
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
				onResubscribe()
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
