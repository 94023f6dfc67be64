package loadtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/redisstore"
)

// Scenario names, in the order Run runs them.
const (
	ScenarioHeartbeat  = "heartbeat"
	ScenarioRedisCost  = "redis-cost"
	ScenarioMiddleware = "middleware"
	ScenarioBatch      = "batch"
	ScenarioBulk       = "bulk-status"
	ScenarioMemory     = "memory"
	ScenarioListing    = "listing"
	ScenarioOffline    = "offline"
	ScenarioCluster    = "cluster"
)

// AllScenarios lists every scenario.
var AllScenarios = []string{ScenarioHeartbeat, ScenarioRedisCost, ScenarioMiddleware, ScenarioBatch,
	ScenarioBulk, ScenarioMemory, ScenarioListing, ScenarioOffline, ScenarioCluster}

// Config sizes a run of the suite. Zero fields take the defaults of the
// full run (see Full); Short and Tiny return smaller presets.
type Config struct {
	// Self is the binary started for the servers: it must call ChildMain
	// when ChildEnv is set (cmd/presence-bench does; so does this
	// package's test binary).
	Self string
	// Out is the directory the JSON reports (one per scenario, plus
	// summary.json) and profiles go to.
	Out string
	// Command is recorded in the report: how the run was started.
	Command string
	// Scenarios to run (default all).
	Scenarios []string
	// Log receives progress lines and the tables.
	Log io.Writer

	// Users is how many users (each with one session and a valid token)
	// the HTTP scenarios spread their requests over. Default 10000.
	Users int
	// Conns is the load generator's keep-alive connections. Default 64.
	Conns int
	// Runs is how many times each measurement is repeated; figures are
	// medians over the runs. Default 3.
	Runs int
	// Warmup and Duration bound each load run. Defaults 1s and 5s.
	Warmup, Duration time.Duration
	// BatchConns is the connections of the gateway batch load. Default 4.
	BatchConns int
	// MemorySizes are the user counts memory is measured at; the largest
	// is also the dataset of the listing and offline scenarios. Default
	// 100000 and 1000000.
	MemorySizes []int
	// Offline: Stop sessions stop heartbeating, spread evenly over Spread,
	// with a presence TTL of TTL and a sweep every Sweep; Wait bounds how
	// long after the last deadline the scenario waits for transitions.
	// Defaults 10000, 10s, 30s, 1s, 10s.
	OfflineStop                                          int
	OfflineSpread, OfflineTTL, OfflineSweep, OfflineWait time.Duration
	OfflineRuns                                          int
	// Profile takes a CPU profile of presenced under the heartbeat load
	// (into Out/heartbeat.cpu.pprof) in an extra run, before the measured ones.
	Profile bool
}

// Full is the configuration of `make bench-full`.
func Full() Config {
	return Config{Users: 10000, Conns: 64, Runs: 3, Warmup: time.Second, Duration: 5 * time.Second, BatchConns: 4,
		MemorySizes: []int{100000, 1000000}, OfflineStop: 10000, OfflineSpread: 10 * time.Second,
		OfflineTTL: 30 * time.Second, OfflineSweep: time.Second, OfflineWait: 10 * time.Second, OfflineRuns: 1}
}

// Short is the configuration of `make bench`: the same scenarios at small
// sizes, in about two minutes.
func Short() Config {
	return Config{Users: 2000, Conns: 64, Runs: 3, Warmup: 500 * time.Millisecond, Duration: 2 * time.Second, BatchConns: 4,
		MemorySizes: []int{10000, 50000}, OfflineStop: 1000, OfflineSpread: 2 * time.Second,
		OfflineTTL: 5 * time.Second, OfflineSweep: time.Second, OfflineWait: 5 * time.Second, OfflineRuns: 1}
}

// Tiny is the smoke-test configuration: every scenario in seconds.
func Tiny() Config {
	return Config{Users: 100, Conns: 8, Runs: 1, Warmup: 100 * time.Millisecond, Duration: 300 * time.Millisecond, BatchConns: 2,
		MemorySizes: []int{500, 1500}, OfflineStop: 50, OfflineSpread: 300 * time.Millisecond,
		OfflineTTL: 2 * time.Second, OfflineSweep: 200 * time.Millisecond, OfflineWait: 3 * time.Second, OfflineRuns: 1}
}

func (c Config) withDefaults() Config {
	f := Full()
	if c.Users <= 0 {
		c.Users = f.Users
	}
	if c.Conns <= 0 {
		c.Conns = f.Conns
	}
	if c.Runs <= 0 {
		c.Runs = f.Runs
	}
	if c.Warmup <= 0 {
		c.Warmup = f.Warmup
	}
	if c.Duration <= 0 {
		c.Duration = f.Duration
	}
	if c.BatchConns <= 0 {
		c.BatchConns = f.BatchConns
	}
	if len(c.MemorySizes) == 0 {
		c.MemorySizes = f.MemorySizes
	}
	if c.OfflineStop <= 0 {
		c.OfflineStop = f.OfflineStop
	}
	if c.OfflineSpread <= 0 {
		c.OfflineSpread = f.OfflineSpread
	}
	if c.OfflineTTL <= 0 {
		c.OfflineTTL = f.OfflineTTL
	}
	if c.OfflineSweep <= 0 {
		c.OfflineSweep = f.OfflineSweep
	}
	if c.OfflineWait <= 0 {
		c.OfflineWait = f.OfflineWait
	}
	if c.OfflineRuns <= 0 {
		c.OfflineRuns = f.OfflineRuns
	}
	if len(c.Scenarios) == 0 {
		c.Scenarios = AllScenarios
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.Out == "" {
		c.Out = "artifacts/bench"
	}
	return c
}

func (c Config) wants(name string) bool { return slices.Contains(c.Scenarios, name) }

// suite is one run's shared state.
type suite struct {
	cfg     Config
	log     io.Writer
	secret  []byte
	tokens  *auth.Tokens
	svcKey  string
	pwHash  string
	report  *Report
	cleanup []func()
}

// Run runs the configured scenarios, prints each table to cfg.Log as it
// completes, writes Out/<scenario>.json and Out/summary.json, and returns
// the report. Everything it starts is stopped before it returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	for _, n := range cfg.Scenarios {
		if !slices.Contains(AllScenarios, n) {
			return nil, fmt.Errorf("loadtest: unknown scenario %q (have %s)", n, strings.Join(AllScenarios, ", "))
		}
	}
	if cfg.Self == "" {
		return nil, errors.New("loadtest: Config.Self is required (the binary that serves as the benchmark servers)")
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("loadtest: output directory: %w", err)
	}
	s := &suite{cfg: cfg, log: cfg.Log}
	defer func() {
		for i := len(s.cleanup) - 1; i >= 0; i-- {
			s.cleanup[i]()
		}
	}()
	// Text, not raw bytes: it travels to the servers in their environment.
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	s.secret = []byte(hex.EncodeToString(raw))
	tokens, err := auth.NewTokens(auth.TokenConfig{Secret: s.secret, AccessTTL: 2 * time.Hour})
	if err != nil {
		return nil, err
	}
	s.tokens = tokens
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	s.svcKey = hex.EncodeToString(key)
	// One real bcrypt hash (cost 10, presenced's default) for every user:
	// credentials get their real size without hashing a million times.
	h, err := bcrypt.GenerateFromPassword([]byte("bench-password"), 10)
	if err != nil {
		return nil, err
	}
	s.pwHash = string(h)

	start := time.Now()
	s.report = &Report{Started: start.UTC(), Command: cfg.Command}
	version := "unknown"
	if srv, err := StartRedis(ctx, RedisOptions{}); err == nil {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr})
		if info, err := c.Info(ctx, "server").Result(); err == nil {
			version = infoValue(info, "redis_version")
		}
		_ = c.Close()
		srv.Stop()
	} else {
		return nil, err
	}
	s.report.Machine = machine(version)
	s.report.LoadAvg[0] = loadAvg()
	fmt.Fprintf(s.log, "presence-bench: %d CPUs (%s), %s RAM, Go %s, Redis %s; load average %s; scenarios %s\n",
		s.report.Machine.CPUs, s.report.Machine.CPUModel, s.report.Machine.MemTotal, s.report.Machine.Go, version,
		s.report.LoadAvg[0], strings.Join(cfg.Scenarios, ","))

	var errs []error
	record := func(sr ScenarioReport, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sr.Name, err))
			if sr.Skipped == "" {
				sr.Skipped = "failed: " + err.Error()
			}
		}
		sr.PrintTable(s.log)
		s.report.Scenarios = append(s.report.Scenarios, sr)
		if err := writeJSON(filepath.Join(cfg.Out, sr.Name+".json"), sr); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.wants(ScenarioHeartbeat) || cfg.wants(ScenarioRedisCost) || cfg.wants(ScenarioMiddleware) ||
		cfg.wants(ScenarioBatch) || cfg.wants(ScenarioBulk) {
		if err := s.httpScenarios(ctx, record); err != nil {
			errs = append(errs, err)
		}
	}
	if ctx.Err() == nil && (cfg.wants(ScenarioMemory) || cfg.wants(ScenarioListing) || cfg.wants(ScenarioOffline)) {
		if err := s.bigScenarios(ctx, record); err != nil {
			errs = append(errs, err)
		}
	}
	if ctx.Err() == nil && cfg.wants(ScenarioCluster) {
		record(s.clusterScenario(ctx)) // cluster.go
	}
	s.report.Seconds = time.Since(start).Seconds()
	s.report.LoadAvg[1] = loadAvg()
	if err := writeJSON(filepath.Join(cfg.Out, "summary.json"), s.report); err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintf(s.log, "\npresence-bench: done in %.0fs (load average at the end %s); JSON in %s\n", s.report.Seconds, s.report.LoadAvg[1], cfg.Out)
	return s.report, errors.Join(errs...)
}

// logf prints a progress line.
func (s *suite) logf(format string, args ...any) {
	fmt.Fprintf(s.log, "  "+format+"\n", args...)
}

// childEnv is presenced's environment for the children.
func (s *suite) childEnv(ttl, sweep time.Duration) map[string]string {
	sum := sha256.Sum256([]byte(s.svcKey))
	return map[string]string{
		"PRESENCE_JWT_SECRET":       string(s.secret),
		"PRESENCE_TTL":              ttl.String(),
		"PRESENCE_SWEEP_INTERVAL":   sweep.String(),
		"PRESENCE_ACCESS_TOKEN_TTL": "2h",
		"PRESENCE_SERVICE_KEYS":     "bench:" + hex.EncodeToString(sum[:]),
	}
}

// newStore returns a client (pool sized for the loader) and a store on srv
// with presenced's key prefix.
func newStore(srv *RedisServer, ttl time.Duration) (*redis.Client, *redisstore.Store, error) {
	return newStoreSized(srv, ttl, 2*loaderConcurrency)
}

// newStoreSized is newStore with a pool of pool connections.
func newStoreSized(srv *RedisServer, ttl time.Duration, pool int) (*redis.Client, *redisstore.Store, error) {
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: pool, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	st, err := redisstore.New(rdb, redisstore.Config{TTL: ttl, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	if err := st.Prepare(context.Background()); err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	return rdb, st, nil
}

// nan is the "no baseline" value of a Row.
var nan = math.NaN()
