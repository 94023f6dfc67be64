package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/config"
	"github.com/presenced/presenced/internal/dashboard"
	"github.com/presenced/presenced/internal/httpapi"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
	"github.com/presenced/presenced/internal/sweeper"
)

// run is the whole program; main only supplies the process's context,
// arguments, environment and streams, so tests can call it too.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "createuser":
			return createUser(ctx, args[1:], getenv, stdin, stdout, stderr)
		case "serve":
			args = args[1:]
		case "-h", "--help", "help":
			fmt.Fprint(stdout, usage)
			return nil
		default:
			return fmt.Errorf("unknown command %q\n%s", args[0], usage)
		}
	}
	if len(args) > 0 {
		return fmt.Errorf("serve takes no arguments (configuration is in the environment)\n%s", usage)
	}
	a, err := start(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	return a.wait()
}

const usage = `usage:
  presenced                 serve the HTTP API (configuration from the environment)
  presenced createuser -username NAME [-role admin|moderator|user] [-email E] [-password-file F]
                            create a user; the password is read from -password-file or stdin
`

// app is a running presenced.
type app struct {
	addr     string
	log      *slog.Logger
	cfg      config.Config
	srv      *http.Server
	serveErr chan error
	ctx      context.Context
	stop     func() error

	// draining is closed when the drain phase begins (httpapi.Config);
	// conns counts the open client connections, which can end it early.
	draining chan struct{}
	conns    atomic.Int64
}

// start builds everything in order (config, logger, Redis, store, auth,
// handler, workers) and starts serving. wait stops it in reverse.
func start(ctx context.Context, getenv func(string) string, stderr io.Writer) (*app, error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(cfg, stderr)

	var closers []func() error
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}
	rdb, embedded, err := connectRedis(cfg, log)
	if err != nil {
		return nil, err
	}
	if embedded != nil {
		closers = append(closers, func() error { embedded.Close(); return nil })
	}
	closers = append(closers, rdb.Close)

	m := metrics.New()
	store, err := redisstore.New(rdb, redisstore.Config{
		Prefix: cfg.KeyPrefix, Shards: cfg.Shards, TTL: cfg.TTL, EventsMaxLen: cfg.EventsMaxLen, Logger: log,
		AwayAfter: cfg.AwayAfter, SweepInterval: cfg.SweepInterval,
		OnTransition: func(s presence.OnlineStatus, r presence.Reason) { m.ObserveTransition(s, r) },
	})
	if err != nil {
		cleanup()
		return nil, err
	}
	if err := prepare(ctx, store, log); err != nil {
		cleanup()
		return nil, err
	}
	if _, ok := rdb.(*redis.ClusterClient); ok {
		logClusterLayout(ctx, store, log)
	}
	if err := store.Announce(ctx); err != nil {
		cleanup()
		return nil, fmt.Errorf("redis: %w", err)
	}

	secret := cfg.JWTSecret
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
		log.Warn("DEV MODE: generated a random JWT secret; tokens stop working when presenced restarts (set PRESENCE_JWT_SECRET)")
	}
	tokens, err := auth.NewTokens(auth.TokenConfig{Secret: secret, AccessTTL: cfg.AccessTokenTTL, RefreshTTL: cfg.RefreshTokenTTL})
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("tokens: %w", err)
	}
	hasher := auth.NewHasher(cfg.BcryptCost)
	if err := bootstrapAdmin(ctx, cfg, store, hasher, log); err != nil {
		cleanup()
		return nil, err
	}

	serviceKeys := make([]httpapi.ServiceKey, len(cfg.ServiceKeys))
	for i, k := range cfg.ServiceKeys {
		serviceKeys[i] = httpapi.ServiceKey(k) // same fields: name and SHA-256
	}
	var limiter httpapi.LoginLimiter // nil (no limit) unless one is on
	if !cfg.LoginLimitUser.Off() || !cfg.LoginLimitIP.Off() {
		l, err := store.NewLoginLimiter(redisstore.LoginLimits{
			PerUser: redisstore.Limit(cfg.LoginLimitUser), PerIP: redisstore.Limit(cfg.LoginLimitIP), // same fields
		})
		if err != nil {
			cleanup()
			return nil, err
		}
		limiter = l
	}
	dash, err := dashboard.New(dashboard.Config{SessionTTL: cfg.TTL})
	if err != nil {
		cleanup()
		return nil, err
	}
	// Closed when shutdown begins: http.Server.Shutdown waits for handlers
	// but never cancels them, and event streams would otherwise hold it
	// until its timeout.
	streamsDone := make(chan struct{})
	draining := make(chan struct{})
	handler, err := httpapi.New(httpapi.Config{
		Store: store, Tokens: tokens, Hasher: hasher, Metrics: m, Logger: log,
		Dashboard: dash, StreamsDone: streamsDone, Draining: draining, EventPing: cfg.SSEPingInterval, MaxEventStreams: cfg.SSEMaxStreams,
		Registration: string(cfg.Registration), CORSOrigins: cfg.CORSOrigins, RequestTimeout: cfg.RequestTimeout,
		ServiceKeys: serviceKeys, LoginLimiter: limiter, TrustedProxies: cfg.TrustedProxies,
	})
	if err != nil {
		cleanup()
		return nil, err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("PRESENCE_ADDR %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(func() { close(streamsDone) })

	// Workers get their own context: on shutdown HTTP drains first, while
	// they still run, and only then are they stopped.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	goWorker := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(workCtx); err != nil {
				log.Error("worker stopped", "worker", name, "error", err)
			}
		}()
	}
	sw := sweeper.New(store, sweeper.Config{
		Interval: cfg.SweepInterval, Logger: log,
		OnExpired: func(_ redisstore.Expired, lag time.Duration) { m.ObserveSweptSession(lag) },
		OnRun:     func(_ int, err error) { m.ObserveSweepRun(err) },
	})
	goWorker("sweeper", sw.Run)
	if embedded == nil {
		if err := store.EnableNotifications(ctx); err != nil {
			log.Warn("keyspace notifications could not be enabled; offline detection relies on the sweep alone (set notify-keyspace-events Ex on the server)", "error", err)
		} else {
			log.Info("keyspace notifications enabled (notify-keyspace-events includes Ex)")
		}
		db := 0
		if c, ok := rdb.(*redis.Client); ok {
			db = c.Options().DB
		}
		l := store.NewListener(redisstore.ListenerConfig{
			DB: db, Logger: log,
			OnConnect: func(reconnect bool) {
				m.SetListenerConnected(true)
				if reconnect {
					m.ListenerReconnectsTotal.Inc()
					sw.Kick()
				}
			},
			OnDisconnect: func() { m.SetListenerConnected(false) },
			OnEvent:      func(n int) { m.ListenerEventsTotal.Add(float64(n)) },
		})
		goWorker("listener", l.Run)
	} else {
		log.Info("embedded Redis sends no keyspace events; offline detection runs on the sweep", "sweep_interval", cfg.SweepInterval)
	}
	goWorker("online-gauge", func(ctx context.Context) error {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			if n, err := store.CountOnline(ctx); err == nil {
				m.OnlineUsers.Set(float64(n))
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	})

	a := &app{addr: ln.Addr().String(), log: log, cfg: cfg, srv: srv, serveErr: make(chan error, 1), ctx: ctx, draining: draining}
	srv.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			a.conns.Add(1)
		case http.StateHijacked, http.StateClosed:
			a.conns.Add(-1)
		}
	}
	go func() { a.serveErr <- srv.Serve(ln) }()
	a.stop = func() error {
		shCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		err := srv.Shutdown(shCtx)
		stopWork()
		wg.Wait()
		cleanup()
		return err
	}
	log.Info("presenced listening", "addr", a.addr, "config", cfg)
	return a, nil
}

// wait serves until the context ends (SIGTERM/SIGINT) or the server fails,
// then shuts down: HTTP drains first, then the workers stop, then Redis.
func (a *app) wait() error {
	var serveErr error
	select {
	case <-a.ctx.Done():
		a.drain()
		a.log.Info("shutting down", "timeout", a.cfg.ShutdownTimeout)
	case serveErr = <-a.serveErr:
	}
	err := a.stop()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", serveErr)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	a.log.Info("stopped")
	return nil
}

// drain is the phase between SIGTERM and closing the listener: for up to
// PRESENCE_DRAIN_DELAY the instance keeps serving, but /readyz answers 503
// and every response closes its connection. http.Server.Shutdown closes
// idle keep-alive connections at once, and a request already on its way
// over one (sent, not yet read by a busy server) is then lost with a reset;
// after the drain, clients have moved to new connections and the load
// balancer to other replicas. The phase ends early once no client
// connection is open, so an idle instance stops at once.
func (a *app) drain() {
	close(a.draining)
	if a.cfg.DrainDelay <= 0 {
		return
	}
	a.log.Info("draining: /readyz answers 503 and responses close their connections", "drain_delay", a.cfg.DrainDelay, "open_connections", a.conns.Load())
	deadline := time.NewTimer(a.cfg.DrainDelay)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for a.conns.Load() > 0 {
		select {
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// connectRedis returns a client for REDIS_URL, or starts the embedded Redis
// (miniredis on TCP, so redis-cli can look, with TTLs that follow the wall
// clock) when it is unset.
func connectRedis(cfg config.Config, log *slog.Logger) (redis.UniversalClient, *miniredis.Miniredis, error) {
	if !cfg.Embedded() {
		rdb, err := newRedisClient(cfg)
		return rdb, nil, err
	}
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	if err := m.StartAddr(cfg.EmbeddedRedisAddr); err != nil {
		return nil, nil, fmt.Errorf("PRESENCE_EMBEDDED_REDIS_ADDR %s: start embedded Redis: %w", cfg.EmbeddedRedisAddr, err)
	}
	log.Warn("DEV MODE: REDIS_URL is unset, so presenced runs an embedded in-memory Redis (miniredis); data is lost on exit and there are no keyspace events. Set REDIS_URL for anything real.",
		"embedded_redis", m.Addr(), "inspect", "redis-cli -p "+m.Port())
	return redis.NewClient(&redis.Options{Addr: m.Addr()}), m, nil
}

// newRedisClient returns the client of REDIS_URL: a cluster client for a
// redis+cluster:// URL (see config.ClusterOptions), else a client of one
// server. The store works the same on both; only where "every shard" means
// several masters does it read and subscribe per master.
func newRedisClient(cfg config.Config) (redis.UniversalClient, error) {
	// Without ContextTimeoutEnabled go-redis bounds socket reads by
	// ReadTimeout (5s) only, not by the request's context: a hung Redis
	// (frozen, partitioned) held every request for 5s whatever
	// PRESENCE_REQUEST_TIMEOUT said (internal/chaos TestRedisFrozen).
	if cfg.RedisCluster() {
		opts, err := config.ClusterOptions(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		opts.ContextTimeoutEnabled = true
		return redis.NewClusterClient(opts), nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), nil
}

// logClusterLayout says how the shards are spread over the cluster's
// masters, and warns when the spread is uneven: each shard's keys live in the
// one slot of its hash tag, so a master's share of the presence load is its
// share of the shards. Few shards spread badly (16 on 3 masters: 6, 6 and 4);
// 64 on 3 masters give 21, 22 and 21.
func logClusterLayout(ctx context.Context, store *redisstore.Store, log *slog.Logger) {
	byMaster, err := store.ShardsByMaster(ctx)
	if err != nil {
		log.Warn("redis cluster: cannot tell which master serves which shard", "error", err)
		return
	}
	counts := make([]string, 0, len(byMaster))
	most := 0
	for addr, shards := range byMaster {
		counts = append(counts, fmt.Sprintf("%s=%d", addr, len(shards)))
		most = max(most, len(shards))
	}
	slices.Sort(counts)
	mean := float64(store.Shards()) / float64(len(byMaster))
	log.Info("redis cluster", "masters_with_shards", len(byMaster), "shards", store.Shards(), "shards_per_master", strings.Join(counts, " "))
	if store.Shards() < 4*len(byMaster) || float64(most) > 1.25*mean {
		log.Warn("PRESENCE_SHARDS spreads the presence load unevenly over the masters (the busiest serves more than 1.25x its share); use more shards (64 for 3 masters: 21, 22, 21), which is fixed once data exists, or move shard slots between masters (README, Scaling)",
			"shards", store.Shards(), "shards_per_master", strings.Join(counts, " "))
	}
}

// prepare waits (bounded) for Redis and checks the key layout.
func prepare(ctx context.Context, store *redisstore.Store, log *slog.Logger) error {
	deadline := time.Now().Add(30 * time.Second)
	backoff := 100 * time.Millisecond
	for {
		err := store.Prepare(ctx)
		if err == nil || !errors.Is(err, presence.ErrUnavailable) || time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			return nil
		}
		log.Warn("waiting for Redis", "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// bootstrapAdmin creates the first admin from PRESENCE_ADMIN_USERNAME /
// PRESENCE_ADMIN_PASSWORD if that user does not exist; an existing user is
// never overwritten. In dev mode (embedded Redis) an admin "admin" with a
// generated password is created unless one is configured.
func bootstrapAdmin(ctx context.Context, cfg config.Config, store presence.Store, hasher *auth.Hasher, log *slog.Logger) error {
	name, password := cfg.AdminUsername, cfg.AdminPassword
	if name == "" {
		if !cfg.Embedded() {
			return nil
		}
		name = "admin"
	}
	if _, err := store.UserIDByUsername(ctx, name); err == nil {
		log.Info("admin user exists; left unchanged", "username", name)
		return nil
	} else if !errors.Is(err, presence.ErrNotFound) {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	generated := password == ""
	if generated {
		b := make([]byte, 18)
		_, _ = rand.Read(b)
		password = base64.RawURLEncoding.EncodeToString(b)
	}
	hash, err := hasher.Hash(password)
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	_, err = store.CreateUser(ctx, presence.NewUser{Username: name, Role: presence.RoleAdmin, Status: presence.StatusActive, PasswordHash: hash})
	if errors.Is(err, presence.ErrUsernameTaken) {
		return nil // another replica created it at the same moment
	}
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if generated {
		log.Warn("DEV MODE: created admin user with a generated password (shown once; set PRESENCE_ADMIN_PASSWORD to choose it)", "username", name, "password", password)
	} else {
		log.Info("created admin user", "username", name)
	}
	return nil
}
