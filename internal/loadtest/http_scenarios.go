package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
)

// httpEnv is the small dataset of the HTTP scenarios: one redis-server
// with Users users, one session and one access token each, a presenced
// child (sweeper and listener running, as in production) and a floor child.
type httpEnv struct {
	srv       *RedisServer
	rdb       *redis.Client
	st        *redisstore.Store
	refs      []presence.SessionRef
	access    []string
	presenced *Child
	floor     *Child
}

func (s *suite) httpScenarios(ctx context.Context, record func(ScenarioReport, error)) error {
	cfg := s.cfg
	env := &httpEnv{}
	srv, err := StartRedis(ctx, RedisOptions{Notifications: true, MaxMemory: 2 << 30})
	if err != nil {
		return err
	}
	defer srv.Stop()
	env.srv = srv
	rdb, st, err := newStore(srv, 120*time.Second)
	if err != nil {
		return err
	}
	defer rdb.Close()
	env.rdb, env.st = rdb, st
	t0 := time.Now()
	ids, err := createUsers(ctx, st, "user", 0, cfg.Users, presence.RoleUser, s.pwHash)
	if err != nil {
		return err
	}
	if env.refs, err = startSessions(ctx, st, s.tokens, ids); err != nil {
		return err
	}
	if env.access, err = accessTokens(s.tokens, env.refs); err != nil {
		return err
	}
	s.logf("http dataset: %d users with a session and a token in %.1fs", cfg.Users, time.Since(t0).Seconds())
	if env.presenced, err = StartChild(ctx, cfg.Self, ChildConfig{Mode: ModePresenced, RedisURL: srv.URL(),
		Env: s.childEnv(120*time.Second, time.Second), Workers: true, Notifications: true}); err != nil {
		return err
	}
	defer env.presenced.Stop()
	if env.floor, err = StartChild(ctx, cfg.Self, ChildConfig{Mode: ModeFloor}); err != nil {
		return err
	}
	defer env.floor.Stop()

	if cfg.wants(ScenarioHeartbeat) || cfg.wants(ScenarioRedisCost) {
		hb, cost, err := s.heartbeatScenarios(ctx, env)
		if cfg.wants(ScenarioHeartbeat) {
			record(hb, err)
		}
		if cfg.wants(ScenarioRedisCost) {
			record(cost, err)
		}
	}
	if ctx.Err() == nil && cfg.wants(ScenarioMiddleware) {
		record(s.middlewareScenario(ctx, env))
	}
	if ctx.Err() == nil && cfg.wants(ScenarioBatch) {
		record(s.batchScenario(ctx, env))
	}
	if ctx.Err() == nil && cfg.wants(ScenarioBulk) {
		record(s.bulkScenario(ctx, env))
	}
	return ctx.Err()
}

// profile runs l for a few seconds while taking a CPU profile of child
// into Out/<name>.cpu.pprof, and returns the path.
func (s *suite) profile(ctx context.Context, child *Child, l Load, name string) (string, error) {
	path := filepath.Join(s.cfg.Out, name+".cpu.pprof")
	pd := max(s.cfg.Duration, time.Second).Truncate(time.Second)
	var perr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(l.Warmup)
		perr = child.CPUProfile(ctx, pd, path)
	}()
	l.Duration = pd + time.Second
	_, err := l.Run(ctx)
	wg.Wait()
	if err == nil {
		err = perr
	}
	if err != nil {
		return "", fmt.Errorf("profile: %w", err)
	}
	s.logf("CPU profile of presenced under the %s load: %s", name, path)
	return path, nil
}

// profileWhile repeats fn for a few seconds while taking a CPU profile of
// child into Out/<name>.cpu.pprof, and returns the path.
func (s *suite) profileWhile(ctx context.Context, child *Child, name string, fn func() error) (string, error) {
	path := filepath.Join(s.cfg.Out, name+".cpu.pprof")
	pd := max(s.cfg.Duration, time.Second).Truncate(time.Second)
	done := make(chan error, 1)
	go func() { done <- child.CPUProfile(ctx, pd, path) }()
	until := time.Now().Add(pd)
	for time.Now().Before(until) {
		if err := fn(); err != nil {
			<-done
			return "", fmt.Errorf("profile: %w", err)
		}
	}
	if err := <-done; err != nil {
		return "", fmt.Errorf("profile: %w", err)
	}
	s.logf("CPU profile of presenced under the %s load: %s", name, path)
	return path, nil
}

// slicesOf is how many alternating slices a run of d is cut into: about
// half a second each.
func slicesOf(d time.Duration) int { return max(1, int(d/(500*time.Millisecond))) }

// heartbeatRequest builds POST heartbeat/ requests spread over the users:
// worker w sends as users w, w+conns, w+2*conns...
func heartbeatRequest(base string, access []string, conns int) func(w, seq int) (*http.Request, error) {
	url := base + "/api/users/heartbeat/"
	return func(w, seq int) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+access[(w+seq*conns)%len(access)])
		return req, nil
	}
}

// loadStats is one measured load run.
type loadStats struct {
	rps, p50, p99 float64 // req/s, ms, ms
}

func statsOf(r LoadResult) loadStats {
	return loadStats{rps: r.RPS(), p50: ms(r.Latency.Quantile(0.5)), p99: ms(r.Latency.Quantile(0.99))}
}

// heartbeatScenarios measures POST heartbeat/ against the HTTP floor, and
// what each steady-state heartbeat costs Redis against SET k v EX 120.
func (s *suite) heartbeatScenarios(ctx context.Context, env *httpEnv) (ScenarioReport, ScenarioReport, error) {
	cfg := s.cfg
	start := time.Now()
	hb := ScenarioReport{Name: ScenarioHeartbeat, Title: "Heartbeat throughput and latency",
		Params: map[string]any{"users": cfg.Users, "conns": cfg.Conns, "runs": cfg.Runs,
			"duration_s": cfg.Duration.Seconds(), "warmup_s": cfg.Warmup.Seconds(), "ttl_s": 120}}
	cost := ScenarioReport{Name: ScenarioRedisCost, Title: "Redis cost per steady-state heartbeat",
		Params: map[string]any{"users": cfg.Users, "conns": cfg.Conns, "runs": cfg.Runs, "duration_s": cfg.Duration.Seconds()}}
	load := func(url string, status int) Load {
		return Load{Conns: cfg.Conns, Warmup: cfg.Warmup, Duration: cfg.Duration, Status: status,
			Request: heartbeatRequest(url, env.access, cfg.Conns)}
	}
	if cfg.Profile {
		path, err := s.profile(ctx, env.presenced, load(env.presenced.URL, http.StatusOK), "heartbeat")
		if err != nil {
			return hb, cost, err
		}
		hb.note("CPU profile of presenced under this load (extra run, not counted): %s", path)
	}

	var floor, beat []loadStats
	var cmdsPer, usecPer, cpuPer, tripsPer, presCPUPer, floorCPUPer []float64
	breakdown := map[string][]float64{}
	for run := 0; run < cfg.Runs; run++ {
		// Throughput and latency: the floor and the heartbeat in
		// alternating slices, so machine noise hits both alike.
		fr, hr, err := Interleave(ctx, load(env.floor.URL, http.StatusNoContent), load(env.presenced.URL, http.StatusOK), slicesOf(cfg.Duration))
		if err != nil {
			return hb, cost, err
		}
		if hr.Errors > 0 {
			hb.note("run %d: %d failed heartbeats (first: %s)", run+1, hr.Errors, hr.FirstError)
		}
		floor, beat = append(floor, statsOf(fr)), append(beat, statsOf(hr))

		// Costs: the floor's CPU per request, then the heartbeat's Redis
		// commands, round trips and CPU, counters read around each run.
		fl := load(env.floor.URL, http.StatusNoContent)
		fl.Warmup = 0
		fcpu0, _ := env.floor.CPU()
		fc, err := fl.Run(ctx)
		if err != nil {
			return hb, cost, fmt.Errorf("floor: %w", err)
		}
		fcpu1, _ := env.floor.CPU()
		floorCPUPer = append(floorCPUPer, us(fcpu1-fcpu0)/float64(fc.Requests))
		warm := load(env.presenced.URL, http.StatusOK)
		warm.Duration, warm.Warmup = cfg.Warmup, 0
		if _, err := warm.Run(ctx); err != nil {
			return hb, cost, fmt.Errorf("heartbeat warm-up: %w", err)
		}
		before, err := TakeSnapshot(ctx, env.rdb)
		if err != nil {
			return hb, cost, err
		}
		trips0, _, err := env.presenced.RoundTrips(ctx)
		if err != nil {
			return hb, cost, err
		}
		served0, err := env.presenced.Heartbeats(ctx)
		if err != nil {
			return hb, cost, err
		}
		pcpu0, _ := env.presenced.CPU()
		l := load(env.presenced.URL, http.StatusOK)
		l.Warmup = 0
		if _, err := l.Run(ctx); err != nil {
			return hb, cost, fmt.Errorf("heartbeat: %w", err)
		}
		pcpu1, _ := env.presenced.CPU()
		served1, err := env.presenced.Heartbeats(ctx)
		if err != nil {
			return hb, cost, err
		}
		trips1, _, err := env.presenced.RoundTrips(ctx)
		if err != nil {
			return hb, cost, err
		}
		after, err := TakeSnapshot(ctx, env.rdb)
		if err != nil {
			return hb, cost, err
		}
		// Per heartbeat the server served between the counter reads
		// (presenced_heartbeats_total): every Redis command, round trip
		// and CPU second in the window, background work included.
		n := served1 - served0
		if n <= 0 {
			return hb, cost, errors.New("heartbeat: the server counted no heartbeats")
		}
		d := after.Sub(before)
		cmdsPer = append(cmdsPer, float64(d.Calls)/n)
		usecPer = append(usecPer, float64(d.Usec)/n)
		cpuPer = append(cpuPer, us(d.CPU)/n)
		tripsPer = append(tripsPer, float64(trips1-trips0)/n)
		presCPUPer = append(presCPUPer, us(pcpu1-pcpu0)/n)
		for name, c := range d.Commands {
			for len(breakdown[name]) < run {
				breakdown[name] = append(breakdown[name], 0)
			}
			breakdown[name] = append(breakdown[name], float64(c.Calls)/n)
		}
		s.logf("run %d: floor %.0f req/s p99 %.2fms; heartbeat %.0f req/s p99 %.2fms; %.2f cmds, %.2f round trips, %.2fµs Redis (commandstats), %.2fµs Redis CPU, %.1fµs presenced CPU per heartbeat (floor %.1fµs)",
			run+1, floor[run].rps, floor[run].p99, beat[run].rps, beat[run].p99, cmdsPer[run], tripsPer[run], usecPer[run], cpuPer[run], presCPUPer[run], floorCPUPer[run])
	}
	col := func(xs []loadStats, f func(loadStats) float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = f(x)
		}
		return out
	}
	rps := func(x loadStats) float64 { return x.rps }
	p50 := func(x loadStats) float64 { return x.p50 }
	p99 := func(x loadStats) float64 { return x.p99 }
	ratio := make([]float64, cfg.Runs)
	p99ratio := make([]float64, cfg.Runs)
	for i := range ratio {
		ratio[i] = beat[i].rps / floor[i].rps
		p99ratio[i] = beat[i].p99 / floor[i].p99
	}
	hb.row(Row{Name: "heartbeat throughput", Unit: "req/s", Value: median(col(beat, rps)), Runs: col(beat, rps),
		Baseline: median(col(floor, rps)), BaselineName: "HTTP floor"})
	hb.row(Row{Name: "heartbeat p50", Unit: "ms", Value: median(col(beat, p50)), Runs: col(beat, p50),
		Baseline: median(col(floor, p50)), BaselineName: "HTTP floor"})
	hb.row(Row{Name: "heartbeat p99", Unit: "ms", Value: median(col(beat, p99)), Runs: col(beat, p99),
		Baseline: median(col(floor, p99)), BaselineName: "HTTP floor"})
	r := median(ratio)
	hb.row(Row{Name: "throughput ÷ floor", Unit: "ratio", Value: r, Runs: ratio, Baseline: nan, Target: "≥ 0.6", Met: atLeast(r, 0.6)})
	pr := median(p99ratio)
	hb.row(Row{Name: "p99 ÷ floor p99", Unit: "ratio", Value: pr, Runs: p99ratio, Baseline: nan, Target: "≤ 2", Met: atMost(pr, 2)})
	hb.row(Row{Name: "server CPU per request", Unit: "µs", Value: median(presCPUPer), Runs: presCPUPer,
		Baseline: median(floorCPUPer), BaselineName: "HTTP floor", Note: "user+system CPU of the server process (/proc), per request served"})
	hb.note("floor: a Go net/http handler answering 204 to the same requests (same headers), in its own process like presenced; load: %d keep-alive connections, closed loop, Go net/http client, on the same machine", cfg.Conns)
	hb.note("each run alternates floor and heartbeat in %d slices of %s, so that noise from other processes hits both alike; CPU per request from separate runs", slicesOf(cfg.Duration), cfg.Duration/time.Duration(slicesOf(cfg.Duration)))
	hb.note("presenced: sweeper and expiry listener running, access log off (LOG_LEVEL=warn)")
	hb.Seconds = time.Since(start).Seconds()

	// The baseline of the Redis cost: SET k v EX 120 from as many
	// connections, each command its own round trip.
	var setUsec, setCPU []float64
	for run := 0; run < cfg.Runs; run++ {
		u, c, err := setEXBaseline(ctx, env.srv, cfg.Conns, cfg.Duration)
		if err != nil {
			return hb, cost, err
		}
		setUsec, setCPU = append(setUsec, u), append(setCPU, c)
	}
	trips := median(tripsPer)
	cost.row(Row{Name: "round trips per heartbeat", Unit: "", Value: trips, Runs: tripsPer, Baseline: 1, BaselineName: "SET EX", Target: "1", Met: atMost(trips, 1.001)})
	cost.row(Row{Name: "Redis commands per heartbeat", Unit: "", Value: median(cmdsPer), Runs: cmdsPer, Baseline: 1, BaselineName: "SET EX"})
	u := median(usecPer)
	cost.row(Row{Name: "Redis CPU per heartbeat (commandstats usec)", Unit: "µs", Value: u, Runs: usecPer,
		Baseline: median(setUsec), BaselineName: "SET EX", Target: "≤ 5", Met: atMost(u, 5)})
	cost.row(Row{Name: "Redis process CPU per heartbeat (used_cpu_user+sys)", Unit: "µs", Value: median(cpuPer), Runs: cpuPer,
		Baseline: median(setCPU), BaselineName: "SET EX"})
	for _, name := range sortedKeys(breakdown) {
		v := breakdown[name]
		for len(v) < cfg.Runs {
			v = append(v, 0)
		}
		if m := median(v); m >= 0.0005 {
			cost.row(Row{Name: "  " + strings.ToUpper(name) + " per heartbeat", Value: m, Runs: v, Baseline: nan})
		}
	}
	cost.note("commandstats usec is the time Redis spent executing the commands; used_cpu is the whole server process (network reads and writes included), during the heartbeat load")
	cost.note("counted over every command Redis ran during the measured window (sweeper and listener included), divided by the heartbeats presenced served in it (its presenced_heartbeats_total); round trips from a go-redis hook on presenced's client")
	cost.note("baseline: SET k v EX 120 from %d go-redis connections, one round trip each, measured the same way", cfg.Conns)
	cost.Seconds = time.Since(start).Seconds() - hb.Seconds
	return hb, cost, nil
}

// setEXBaseline runs SET k v EX 120 from conns connections for d and
// returns commandstats µs and process CPU µs per command.
func setEXBaseline(ctx context.Context, srv *RedisServer, conns int, d time.Duration) (usec, cpu float64, err error) {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: conns})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		return 0, 0, err
	}
	before, err := TakeSnapshot(ctx, c)
	if err != nil {
		return 0, 0, err
	}
	until := time.Now().Add(d)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(until); i++ {
				if err := c.Set(ctx, "bench:setex:"+strconv.Itoa(w)+":"+strconv.Itoa(i%1000), "1", 120*time.Second).Err(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	after, err := TakeSnapshot(ctx, c)
	if err != nil {
		return 0, 0, err
	}
	delta := after.Sub(before)
	set := delta.Commands["set"]
	if set.Calls == 0 {
		return 0, 0, errors.New("SET EX baseline: no SET counted")
	}
	return float64(set.Usec) / float64(set.Calls), us(delta.CPU) / float64(set.Calls), nil
}

// middlewareScenario measures GET profile/ with the presence refresh and
// with a store whose Touch only checks the session.
func (s *suite) middlewareScenario(ctx context.Context, env *httpEnv) (ScenarioReport, error) {
	cfg := s.cfg
	start := time.Now()
	sr := ScenarioReport{Name: ScenarioMiddleware, Title: "Presence refresh overhead on an authenticated request (GET profile/)",
		Params: map[string]any{"users": cfg.Users, "conns": cfg.Conns, "runs": cfg.Runs, "duration_s": cfg.Duration.Seconds()}}
	plain, err := StartChild(ctx, cfg.Self, ChildConfig{Mode: ModePresenced, RedisURL: env.srv.URL(),
		Env: s.childEnv(120*time.Second, time.Second), Workers: true, Notifications: true, NoRefresh: true})
	if err != nil {
		return sr, err
	}
	defer plain.Stop()
	profile := func(base string) Load {
		url := base + "/api/users/profile/"
		return Load{Conns: cfg.Conns, Warmup: cfg.Warmup, Duration: cfg.Duration, Status: http.StatusOK,
			Request: func(w, seq int) (*http.Request, error) {
				req, err := http.NewRequest(http.MethodGet, url, nil)
				if err != nil {
					return nil, err
				}
				req.Header.Set("Authorization", "Bearer "+env.access[(w+seq*cfg.Conns)%len(env.access)])
				return req, nil
			}}
	}
	var with, without []loadStats
	var ratio, overhead []float64
	for run := 0; run < cfg.Runs; run++ {
		a, b, err := Interleave(ctx, profile(env.presenced.URL), profile(plain.URL), slicesOf(cfg.Duration))
		if err != nil {
			return sr, err
		}
		with, without = append(with, statsOf(a)), append(without, statsOf(b))
		ratio = append(ratio, a.RPS()/b.RPS())
		overhead = append(overhead, 100*(b.RPS()/a.RPS()-1))
		s.logf("run %d: profile/ %.0f req/s with refresh, %.0f without", run+1, a.RPS(), b.RPS())
	}
	get := func(xs []loadStats, f func(loadStats) float64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = f(x)
		}
		return out
	}
	sr.row(Row{Name: "GET profile/ throughput", Unit: "req/s", Value: median(get(with, func(x loadStats) float64 { return x.rps })),
		Runs: get(with, func(x loadStats) float64 { return x.rps }), Baseline: median(get(without, func(x loadStats) float64 { return x.rps })), BaselineName: "without refresh"})
	sr.row(Row{Name: "GET profile/ p50", Unit: "ms", Value: median(get(with, func(x loadStats) float64 { return x.p50 })),
		Runs: get(with, func(x loadStats) float64 { return x.p50 }), Baseline: median(get(without, func(x loadStats) float64 { return x.p50 })), BaselineName: "without refresh"})
	sr.row(Row{Name: "GET profile/ p99", Unit: "ms", Value: median(get(with, func(x loadStats) float64 { return x.p99 })),
		Runs: get(with, func(x loadStats) float64 { return x.p99 }), Baseline: median(get(without, func(x loadStats) float64 { return x.p99 })), BaselineName: "without refresh"})
	sr.row(Row{Name: "with ÷ without refresh", Unit: "ratio", Value: median(ratio), Runs: ratio, Baseline: nan})
	o := median(overhead)
	sr.row(Row{Name: "refresh overhead (time per request)", Unit: "%", Value: o, Runs: overhead, Baseline: nan, Target: "≤ 15", Met: atMost(o, 15)})
	sr.note("without refresh: the same service with a Store whose Touch is CheckSession (the session is still checked for revocation on every request, one round trip, but never extended); bench-only wrapper, no switch in production code")
	sr.note("overhead = throughput without ÷ throughput with − 1 (the extra time per request); each run alternates the two in %d slices", slicesOf(cfg.Duration))
	sr.Seconds = time.Since(start).Seconds()
	return sr, nil
}

// batchScenario measures POST heartbeat/batch/ with 1000 sessions per call.
func (s *suite) batchScenario(ctx context.Context, env *httpEnv) (ScenarioReport, error) {
	cfg := s.cfg
	start := time.Now()
	size := min(redisstore.MaxBatch, len(env.refs))
	sr := ScenarioReport{Name: ScenarioBatch, Title: "Gateway batch heartbeats (POST heartbeat/batch/)",
		Params: map[string]any{"sessions": len(env.refs), "batch": size, "conns": cfg.BatchConns, "runs": cfg.Runs, "duration_s": cfg.Duration.Seconds()}}
	// The sessions split into batches; each worker cycles through them.
	var batches [][]presence.SessionRef
	var bodies [][]byte
	for i := 0; i+size <= len(env.refs); i += size {
		b := env.refs[i : i+size]
		batches = append(batches, b)
		var buf bytes.Buffer
		buf.WriteString(`{"sessions":[`)
		for j, r := range b {
			if j > 0 {
				buf.WriteByte(',')
			}
			fmt.Fprintf(&buf, `{"user_id":%d,"session_id":%q}`, r.UserID, r.SessionID)
		}
		buf.WriteString(`]}`)
		bodies = append(bodies, buf.Bytes())
	}
	want := []byte(`{"refreshed":` + strconv.Itoa(size) + `,"unknown":[],"revoked":[]}`)
	url := env.presenced.URL + "/api/users/heartbeat/batch/"
	load := Load{Conns: cfg.BatchConns, Warmup: cfg.Warmup, Duration: cfg.Duration, Status: http.StatusOK,
		Request: func(w, seq int) (*http.Request, error) {
			req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(bodies[(w+seq*cfg.BatchConns)%len(bodies)]))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "ApiKey "+s.svcKey)
			req.Header.Set("Content-Type", "application/json")
			return req, nil
		},
		Check: func(body []byte) error {
			if !bytes.Equal(bytes.TrimSpace(body), want) {
				return fmt.Errorf("unexpected answer %.200s", body)
			}
			return nil
		}}
	if cfg.Profile {
		path, err := s.profile(ctx, env.presenced, load, "batch")
		if err != nil {
			return sr, err
		}
		sr.note("CPU profile of presenced under this load (extra run, not counted): %s", path)
	}
	var http1, direct, p50, p99 []float64
	for run := 0; run < cfg.Runs; run++ {
		res, err := load.Run(ctx)
		if err != nil {
			return sr, err
		}
		http1 = append(http1, res.RPS()*float64(size))
		p50, p99 = append(p50, ms(res.Latency.Quantile(0.5))), append(p99, ms(res.Latency.Quantile(0.99)))
		d, err := directBatches(ctx, env.st, batches, cfg.BatchConns, cfg.Duration)
		if err != nil {
			return sr, err
		}
		direct = append(direct, d)
		s.logf("run %d: %.0f session refreshes/s over HTTP, %.0f straight to Redis", run+1, http1[run], d)
	}
	v := median(http1)
	sr.row(Row{Name: "session refreshes", Unit: "/s", Value: v, Runs: http1, Baseline: median(direct), BaselineName: "Store.TouchSessions, no HTTP",
		Target: "≥ 150000", Met: atLeast(v, 150000)})
	sr.row(Row{Name: "batch call p50", Unit: "ms", Value: median(p50), Runs: p50, Baseline: nan})
	sr.row(Row{Name: "batch call p99", Unit: "ms", Value: median(p99), Runs: p99, Baseline: nan})
	sr.note("each call refreshes %d distinct sessions of %d users (SET XX PX GET + ZADD XX each, one pipeline); baseline: the same batches sent by the bench straight through redisstore.TouchSessions from as many goroutines (Redis + go-redis, no HTTP, no JSON)", size, len(env.refs))
	sr.Seconds = time.Since(start).Seconds()
	return sr, nil
}

// directBatches calls TouchSessions from conns goroutines for d and
// returns the session refreshes per second.
func directBatches(ctx context.Context, st *redisstore.Store, batches [][]presence.SessionRef, conns int, d time.Duration) (float64, error) {
	until := time.Now().Add(d)
	var mu sync.Mutex
	var total int
	var first error
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for i := w; time.Now().Before(until); i += conns {
				res, err := st.TouchSessions(ctx, batches[i%len(batches)])
				if err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
				n += res.Refreshed
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(total) / d.Seconds(), first
}

// bulkScenario measures POST status/ with 1000 IDs, one call at a time.
func (s *suite) bulkScenario(ctx context.Context, env *httpEnv) (ScenarioReport, error) {
	cfg := s.cfg
	start := time.Now()
	n := min(presence.MaxBulkIDs, len(env.refs))
	sr := ScenarioReport{Name: ScenarioBulk, Title: "Bulk status (POST status/)",
		Params: map[string]any{"ids_per_call": n, "users": len(env.refs), "conns": 1, "runs": cfg.Runs, "duration_s": cfg.Duration.Seconds()}}
	rng := rand.New(rand.NewPCG(1, 2))
	const variants = 64
	var bodies [][]byte
	var idSets [][]int64
	for range variants {
		perm := rng.Perm(len(env.refs))[:n]
		ids := make([]int64, n)
		var b strings.Builder
		b.WriteString(`{"ids":[`)
		for i, p := range perm {
			ids[i] = env.refs[p].UserID
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(ids[i], 10))
		}
		b.WriteString("]}")
		bodies = append(bodies, []byte(b.String()))
		idSets = append(idSets, ids)
	}
	url := env.presenced.URL + "/api/users/status/"
	load := Load{Conns: 1, Warmup: cfg.Warmup, Duration: cfg.Duration, Status: http.StatusOK,
		Request: func(_, seq int) (*http.Request, error) {
			req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(bodies[seq%variants]))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+env.access[seq%len(env.access)])
			req.Header.Set("Content-Type", "application/json")
			return req, nil
		},
		Check: func(body []byte) error {
			if c := bytes.Count(body, []byte(`"online_status"`)); c != n {
				return fmt.Errorf("got %d statuses, want %d", c, n)
			}
			return nil
		}}
	var p50, p99, base50, base99 []float64
	for run := 0; run < cfg.Runs; run++ {
		res, err := load.Run(ctx)
		if err != nil {
			return sr, err
		}
		p50, p99 = append(p50, ms(res.Latency.Quantile(0.5))), append(p99, ms(res.Latency.Quantile(0.99)))
		b, err := directHMGET(ctx, env.rdb, idSets, cfg.Duration)
		if err != nil {
			return sr, err
		}
		base50, base99 = append(base50, ms(b.Quantile(0.5))), append(base99, ms(b.Quantile(0.99)))
		s.logf("run %d: status/ of %d ids p50 %.2fms p99 %.2fms (%d calls)", run+1, n, p50[run], p99[run], res.Requests)
	}
	sr.row(Row{Name: "status/ p50", Unit: "ms", Value: median(p50), Runs: p50, Baseline: median(base50), BaselineName: "pipelined HMGET"})
	v := median(p99)
	sr.row(Row{Name: "status/ p99", Unit: "ms", Value: v, Runs: p99, Baseline: median(base99), BaselineName: "pipelined HMGET", Target: "≤ 10", Met: atMost(v, 10)})
	sr.note("one call at a time, %d distinct IDs per call (random among %d users, each with a live session); baseline: the bench reads the same users' online_status and last_seen with one pipeline of %d HMGET straight from Redis", n, len(env.refs), n)
	sr.Seconds = time.Since(start).Seconds()
	return sr, nil
}

// directHMGET reads each id set's presence fields with one pipeline, back
// to back for d, and returns the latencies.
func directHMGET(ctx context.Context, rdb *redis.Client, idSets [][]int64, d time.Duration) (*Latencies, error) {
	lat := &Latencies{}
	until := time.Now().Add(d)
	for i := 0; time.Now().Before(until); i++ {
		ids := idSets[i%len(idSets)]
		t0 := time.Now()
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range ids {
				p.HMGet(ctx, "presence:{0}:user:"+strconv.FormatInt(id, 10), "online_status", "last_seen")
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		lat.Add(time.Since(t0))
	}
	return lat, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slicesSort(keys)
	return keys
}
