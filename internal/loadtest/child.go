package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/config"
	"github.com/presenced/presenced/internal/httpapi"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
	"github.com/presenced/presenced/internal/sweeper"
)

// ChildEnv is the environment variable that makes a binary built with this
// package (cmd/presence-bench, or the package's test binary) run as a
// benchmark server: its value is the JSON of a ChildConfig. Servers run in
// their own process so that their CPU, GC and profile are theirs alone, as
// in production, and the baseline server runs the same way.
const ChildEnv = "PRESENCE_BENCH_CHILD"

// Child modes.
const (
	// ModeFloor serves 204 No Content to everything: the HTTP floor.
	ModeFloor = "floor"
	// ModePresenced serves presenced's API, wired like cmd/presenced.
	ModePresenced = "presenced"
)

// ChildConfig configures a benchmark server process.
type ChildConfig struct {
	Mode     string `json:"mode"`
	RedisURL string `json:"redis_url,omitempty"`
	// Env is presenced's environment (PRESENCE_TTL, PRESENCE_JWT_SECRET...),
	// parsed by internal/config exactly as presenced parses it.
	Env map[string]string `json:"env,omitempty"`
	// NoRefresh serves with a Store whose Touch only checks the session
	// (CheckSession), to measure what the presence refresh costs. Bench
	// only: production code has no such switch.
	NoRefresh bool `json:"no_refresh,omitempty"`
	// Workers runs the sweeper and, when notifications are on, the expiry
	// listener, as presenced does.
	Workers bool `json:"workers,omitempty"`
	// Notifications makes the child enable keyspace notifications and run
	// the listener (with Workers).
	Notifications bool `json:"notifications,omitempty"`
}

// ChildRequested reports whether this process was started as a benchmark
// server (ChildEnv is set).
func ChildRequested() bool { return os.Getenv(ChildEnv) != "" }

// ChildMain runs the benchmark server described by ChildEnv until its
// standard input closes (the parent exited) or it gets SIGTERM, and returns
// the exit code. It prints "READY <api addr> <debug addr>" once serving.
func ChildMain() int {
	var cfg ChildConfig
	if err := json.Unmarshal([]byte(os.Getenv(ChildEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "presence-bench child: bad", ChildEnv, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// The parent holds our stdin: EOF means it is gone.
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	if err := serveChild(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "presence-bench child:", err)
		return 1
	}
	return 0
}

func serveChild(ctx context.Context, cfg ChildConfig, ready io.Writer) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	debug := http.NewServeMux()
	debug.HandleFunc("/debug/pprof/", pprof.Index)
	debug.HandleFunc("/debug/pprof/profile", pprof.Profile)
	var handler http.Handler
	var cleanup []func()
	defer func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}()
	switch cfg.Mode {
	case ModeFloor:
		handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	case ModePresenced:
		h, stopWorkers, err := presencedHandler(ctx, cfg, log, debug)
		if err != nil {
			return err
		}
		cleanup = append(cleanup, stopWorkers)
		handler = h
	default:
		return fmt.Errorf("unknown mode %q", cfg.Mode)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	dln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The same server settings as cmd/presenced.
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 120 * time.Second, MaxHeaderBytes: 32 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	dsrv := &http.Server{Handler: debug, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() { _ = dsrv.Serve(dln) }()
	fmt.Fprintf(ready, "READY %s %s\n", ln.Addr(), dln.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = dsrv.Close()
	return nil
}

// presencedHandler wires presenced as cmd/presenced does (config from the
// environment, go-redis client, store, tokens, API, sweeper, listener), with
// the access log off (LOG_LEVEL=warn) and a round-trip counter on the Redis
// client served at /debug/roundtrips of the debug mux.
func presencedHandler(ctx context.Context, cc ChildConfig, log *slog.Logger, debug *http.ServeMux) (http.Handler, func(), error) {
	env := map[string]string{"REDIS_URL": cc.RedisURL, "LOG_LEVEL": "warn"}
	for k, v := range cc.Env {
		env[k] = v
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	// A redis+cluster:// URL gets a cluster client, as in cmd/presenced.
	var rdb redis.UniversalClient
	db := 0
	if cfg.RedisCluster() {
		copts, err := config.ClusterOptions(cfg.RedisURL)
		if err != nil {
			return nil, nil, err
		}
		rdb = redis.NewClusterClient(copts)
	} else {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, nil, err
		}
		rdb, db = redis.NewClient(opts), opts.DB
	}
	counter := &RoundTrips{}
	rdb.AddHook(counter)
	debug.HandleFunc("/debug/roundtrips", func(w http.ResponseWriter, _ *http.Request) {
		trips, cmds := counter.Counts()
		fmt.Fprintf(w, "%d %d\n", trips, cmds)
	})
	m := metrics.New()
	store, err := redisstore.New(rdb, redisstore.Config{
		Prefix: cfg.KeyPrefix, Shards: cfg.Shards, TTL: cfg.TTL, EventsMaxLen: cfg.EventsMaxLen, Logger: log,
		OnTransition: func(s presence.OnlineStatus, r presence.Reason) { m.ObserveTransition(s, r) },
	})
	if err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	if err := store.Prepare(ctx); err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	tokens, err := auth.NewTokens(auth.TokenConfig{Secret: cfg.JWTSecret, AccessTTL: cfg.AccessTokenTTL, RefreshTTL: cfg.RefreshTokenTTL})
	if err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	var api presence.Store = store
	if cc.NoRefresh {
		api = noRefreshStore{store}
	}
	keys := make([]httpapi.ServiceKey, len(cfg.ServiceKeys))
	for i, k := range cfg.ServiceKeys {
		keys[i] = httpapi.ServiceKey(k)
	}
	handler, err := httpapi.New(httpapi.Config{
		Store: api, Tokens: tokens, Hasher: auth.NewHasher(bcrypt.MinCost), Metrics: m, Logger: log,
		Registration: string(cfg.Registration), RequestTimeout: cfg.RequestTimeout, ServiceKeys: keys,
	})
	if err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	if cc.Workers {
		sw := sweeper.New(store, sweeper.Config{Interval: cfg.SweepInterval, Logger: log,
			OnExpired: func(_ redisstore.Expired, lag time.Duration) { m.ObserveSweptSession(lag) }})
		wg.Add(1)
		go func() { defer wg.Done(); _ = sw.Run(wctx) }()
		if cc.Notifications {
			if err := store.EnableNotifications(ctx); err != nil {
				log.Warn("keyspace notifications could not be enabled", "error", err)
			}
			l := store.NewListener(redisstore.ListenerConfig{DB: db, Logger: log,
				OnConnect: func(reconnect bool) {
					if reconnect {
						sw.Kick()
					}
				}})
			wg.Add(1)
			go func() { defer wg.Done(); _ = l.Run(wctx) }()
		}
	}
	stop := func() {
		cancel()
		wg.Wait()
		_ = rdb.Close()
	}
	return handler, stop, nil
}

// noRefreshStore is the store of the "without refresh" side of the
// middleware scenario: every authenticated request still proves its session
// is open (CheckSession, one round trip), but never extends it.
type noRefreshStore struct{ *redisstore.Store }

// Touch checks the session without refreshing it.
func (s noRefreshStore) Touch(ctx context.Context, ref presence.SessionRef) (presence.Status, error) {
	return s.CheckSession(ctx, ref)
}

// Child is a running benchmark server process.
type Child struct {
	// URL is the API's base URL, DebugURL the debug server's.
	URL, DebugURL string
	cmd           *exec.Cmd
	stdin         io.WriteCloser
	done          chan struct{}
	stderr        *tailBuffer
}

// StartChild runs self (a binary that calls ChildMain when ChildEnv is set)
// as a benchmark server and waits until it serves.
func StartChild(ctx context.Context, self string, cfg ChildConfig) (*Child, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), ChildEnv+"="+string(b))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c := &Child{cmd: cmd, stdin: stdin, done: make(chan struct{}), stderr: &tailBuffer{max: 8192}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: start %s: %w", cfg.Mode, err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(c.done) }()
	select {
	case line := <-lines:
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "READY" {
			c.Stop()
			return nil, fmt.Errorf("loadtest: %s server said %q", cfg.Mode, line)
		}
		c.URL, c.DebugURL = "http://"+f[1], "http://"+f[2]
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("loadtest: %s server exited: %s", cfg.Mode, c.stderr.String())
	case <-time.After(30 * time.Second):
		c.Stop()
		return nil, fmt.Errorf("loadtest: %s server not ready within 30s: %s", cfg.Mode, c.stderr.String())
	case <-ctx.Done():
		c.Stop()
		return nil, ctx.Err()
	}
}

// Stop ends the server (stdin closed, then SIGKILL after 10s).
func (c *Child) Stop() {
	_ = c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// CPU returns the user+system CPU time the server process has used.
func (c *Child) CPU() (time.Duration, error) { return procCPU(c.cmd.Process.Pid) }

// RoundTrips returns the Redis round trips and commands the server's
// client has sent (ModePresenced only).
func (c *Child) RoundTrips(ctx context.Context) (trips, cmds int64, err error) {
	body, err := httpGet(ctx, c.DebugURL+"/debug/roundtrips")
	if err != nil {
		return 0, 0, err
	}
	_, err = fmt.Sscan(string(body), &trips, &cmds)
	return trips, cmds, err
}

// CPUProfile fetches a CPU profile of the server over d into path.
func (c *Child) CPUProfile(ctx context.Context, d time.Duration, path string) error {
	body, err := httpGet(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", c.DebugURL, int(d.Seconds())))
	if err != nil {
		return err
	}
	return os.WriteFile(path, body, 0o644)
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return body, nil
}

// procCPU reads utime+stime of pid from /proc (Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from its closing parenthesis.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("unparsable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// Heartbeats returns the server's presenced_heartbeats_total, all results
// summed: the heartbeats and presence refreshes it has served
// (ModePresenced only).
func (c *Child) Heartbeats(ctx context.Context) (float64, error) {
	body, err := httpGet(ctx, c.URL+"/metrics")
	if err != nil {
		return 0, err
	}
	var total float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "presenced_heartbeats_total{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics line %q: %w", line, err)
		}
		total += v
	}
	return total, nil
}
