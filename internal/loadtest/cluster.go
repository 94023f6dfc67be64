package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/config"
	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
)

// The cluster scenario's layout: 64 shards on 3 masters whose slots
// redis-cli split evenly fall 21, 22 and 21 per master (16 shards would
// fall 6, 6 and 4: see cmd/presenced's start-up log).
const (
	clusterMasters = 3
	clusterShards  = 64
)

// RedisCluster is a Redis Cluster of redis-server processes this package
// started, each a master (no replicas: the scenario measures cost and
// spread, not failover).
type RedisCluster struct {
	Nodes []*RedisServer
}

// URL is the cluster as a presenced REDIS_URL.
func (c *RedisCluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return config.ClusterScheme + "://" + strings.Join(addrs, ",")
}

// Stop kills every node and removes their directories.
func (c *RedisCluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}

// StartRedisCluster starts masters redis-server processes in cluster mode
// (each like StartRedis with o), joins them with `redis-cli --cluster
// create` and waits until every node reports cluster_state:ok and they agree
// on the slots.
func StartRedisCluster(ctx context.Context, masters int, o RedisOptions) (*RedisCluster, error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("loadtest: redis-cli not on PATH (apt-get install redis-server ships it): %w", err)
	}
	c := &RedisCluster{}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	for range masters {
		// The default bus port (port + 10000) may be taken or past 65535.
		bus, err := freePort()
		if err != nil {
			return nil, err
		}
		no := o
		no.Args = append(slices.Clone(o.Args), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "5000")
		srv, err := StartRedis(ctx, no)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, srv)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-yes")
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(cctx, cli, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("loadtest: redis-cli --cluster create: %w\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.agree(ctx)
		if err == nil {
			ok = true
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("loadtest: cluster not ready: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agree returns nil once every node is ok and all give the same CLUSTER
// SLOTS answer.
func (c *RedisCluster) agree(ctx context.Context) error {
	want := ""
	for _, n := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
		info, err := cl.ClusterInfo(ctx).Result()
		var slots []redis.ClusterSlot
		if err == nil {
			slots, err = cl.ClusterSlots(ctx).Result()
		}
		_ = cl.Close()
		if err != nil {
			return err
		}
		if st := infoValue(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", n.Addr, st)
		}
		var lines []string
		for _, s := range slots {
			if len(s.Nodes) > 0 {
				lines = append(lines, fmt.Sprintf("%d-%d %s", s.Start, s.End, s.Nodes[0].Addr))
			}
		}
		slices.Sort(lines)
		got := strings.Join(lines, ";")
		if want == "" {
			want = got
		} else if got != want {
			return errors.New("nodes disagree on the slots")
		}
	}
	return nil
}

// clusterBackend is one Redis deployment the cluster scenario measures.
type clusterBackend struct {
	name    string
	url     string
	rdb     redis.UniversalClient
	st      *redisstore.Store
	masters map[string]*redis.Client // address → a client of that master
	shards  map[string]int           // address → shards it serves
	child   *Child
	access  []string
	refs    []presence.SessionRef
	// perUser is the Redis memory (every master summed) a registered user
	// with one session takes: everything creating and logging in added.
	perUser float64
}

// clusterFigures is one run's measurements on one backend.
type clusterFigures struct {
	httpRPS, directRPS         float64
	httpCPUPer, directCPUPer   float64            // Redis µs per heartbeat, every master summed
	cpuPerShard, callsPerShard map[string]float64 // per master, during the direct load
}

// clusterScenario measures heartbeats on a local 3-master Redis Cluster
// against the same on one redis-server (the baseline), both with
// PRESENCE_SHARDS=64: throughput through presenced and from store calls
// without HTTP, Redis CPU per heartbeat over every master, and how evenly
// the Redis CPU spreads over the shards.
func (s *suite) clusterScenario(ctx context.Context) (ScenarioReport, error) {
	cfg := s.cfg
	start := time.Now()
	sr := ScenarioReport{Name: ScenarioCluster, Title: "Redis Cluster: heartbeats on 3 masters vs one redis-server",
		Params: map[string]any{"users": cfg.Users, "conns": cfg.Conns, "runs": cfg.Runs, "duration_s": cfg.Duration.Seconds(),
			"masters": clusterMasters, "shards": clusterShards}}
	var figs [2][]clusterFigures
	var perUser [2]float64
	var shardsPerMaster map[string]int
	for i, name := range []string{"single", "cluster"} {
		b, stop, err := s.startClusterBackend(ctx, name)
		if err != nil {
			return sr, err
		}
		for run := 0; run < cfg.Runs; run++ {
			f, err := s.clusterRun(ctx, b)
			if err != nil {
				stop()
				return sr, fmt.Errorf("%s: %w", name, err)
			}
			s.logf("%s run %d: %.0f heartbeats/s through presenced, %.0f/s from store calls; Redis CPU %.2fµs (HTTP) and %.2fµs (direct) per heartbeat",
				name, run+1, f.httpRPS, f.directRPS, f.httpCPUPer, f.directCPUPer)
			figs[i] = append(figs[i], f)
		}
		perUser[i] = b.perUser
		if name == "cluster" {
			shardsPerMaster = b.shards
		}
		stop()
	}
	col := func(fs []clusterFigures, f func(clusterFigures) float64) []float64 {
		out := make([]float64, len(fs))
		for i, x := range fs {
			out[i] = f(x)
		}
		return out
	}
	single, clustered := figs[0], figs[1]
	httpRPS := func(f clusterFigures) float64 { return f.httpRPS }
	directRPS := func(f clusterFigures) float64 { return f.directRPS }
	httpCPU := func(f clusterFigures) float64 { return f.httpCPUPer }
	directCPU := func(f clusterFigures) float64 { return f.directCPUPer }
	sr.row(Row{Name: "heartbeats/s through presenced (HTTP)", Unit: "req/s", Value: median(col(clustered, httpRPS)), Runs: col(clustered, httpRPS),
		Baseline: median(col(single, httpRPS)), BaselineName: "one redis-server"})
	sr.row(Row{Name: "heartbeats/s from store calls (no HTTP)", Unit: "1/s", Value: median(col(clustered, directRPS)), Runs: col(clustered, directRPS),
		Baseline: median(col(single, directRPS)), BaselineName: "one redis-server"})
	sr.row(Row{Name: "Redis CPU per heartbeat, all masters (HTTP load)", Unit: "µs", Value: median(col(clustered, httpCPU)), Runs: col(clustered, httpCPU),
		Baseline: median(col(single, httpCPU)), BaselineName: "one redis-server"})
	sr.row(Row{Name: "Redis CPU per heartbeat, all masters (store calls)", Unit: "µs", Value: median(col(clustered, directCPU)), Runs: col(clustered, directCPU),
		Baseline: median(col(single, directCPU)), BaselineName: "one redis-server"})
	sr.row(Row{Name: "Redis memory per user with a session, all masters", Unit: "B", Value: perUser[1], Baseline: perUser[0], BaselineName: "one redis-server",
		Note: "used_memory growth while creating the users and logging each in once (user hash, credentials, name index, session record, live key, deadline entry, online set, one stream entry), divided by the users"})
	spread := func(f clusterFigures) float64 { return spreadOf(f.cpuPerShard) }
	callSpread := func(f clusterFigures) float64 { return spreadOf(f.callsPerShard) }
	cs := median(col(clustered, spread))
	sr.row(Row{Name: "Redis CPU per shard: (max - min) / mean over the masters", Unit: "%", Value: cs, Runs: col(clustered, spread),
		Baseline: nan, Target: "≤ 10", Met: atMost(cs, 10)})
	sr.row(Row{Name: "Redis commands per shard: (max - min) / mean over the masters", Unit: "%", Value: median(col(clustered, callSpread)), Runs: col(clustered, callSpread), Baseline: nan})
	addrs := make([]string, 0, len(shardsPerMaster))
	for a := range shardsPerMaster {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	for i, a := range addrs {
		perShard := make([]float64, len(clustered))
		calls := make([]float64, len(clustered))
		for r, f := range clustered {
			perShard[r] = f.cpuPerShard[a]
			calls[r] = f.callsPerShard[a]
		}
		sr.row(Row{Name: fmt.Sprintf("  master %d (%d shards): Redis CPU per shard per second", i+1, shardsPerMaster[a]), Unit: "ms/s", Value: median(perShard), Runs: perShard, Baseline: nan})
		sr.row(Row{Name: fmt.Sprintf("  master %d (%d shards): commands per shard per second", i+1, shardsPerMaster[a]), Unit: "1/s", Value: median(calls), Runs: calls, Baseline: nan})
	}
	sr.note("both backends: PRESENCE_SHARDS=%d (one redis-server usually runs with 1; the heartbeat's cost does not depend on it), %d users with a session each, presenced child with sweeper and listener", clusterShards, cfg.Users)
	sr.note("cluster: %d masters on loopback made by redis-cli --cluster create (even slot ranges), no replicas; presenced's REDIS_URL is redis+cluster://...", clusterMasters)
	sr.note("HTTP: %d keep-alive connections to presenced; store calls: %d goroutines calling Store.Touch in the bench process (the heartbeat's Redis work without HTTP or JWT)", cfg.Conns, cfg.Conns)
	sr.note("per shard: a master's Redis CPU (used_cpu_user+sys) and SET/ZADD calls during the store-call load, divided by the shards it serves; users are spread over the shards by id, so equal figures mean the slots spread the load evenly")
	sr.note("every process (bench, presenced, each redis-server) shares this machine's CPUs: with 2 cores more masters cannot raise throughput; a real cluster gives each master its own cores")
	sr.Seconds = time.Since(start).Seconds()
	return sr, nil
}

// spreadOf is (max - min) / mean of the values, in percent.
func spreadOf(m map[string]float64) float64 {
	if len(m) == 0 {
		return nan
	}
	lo, hi, sum := 0.0, 0.0, 0.0
	first := true
	for _, v := range m {
		if first || v < lo {
			lo = v
		}
		if first || v > hi {
			hi = v
		}
		first = false
		sum += v
	}
	mean := sum / float64(len(m))
	if mean == 0 {
		return nan
	}
	return 100 * (hi - lo) / mean
}

// startClusterBackend starts one redis-server ("single") or a 3-master
// cluster ("cluster"), loads Users users with a session and a token each,
// and starts a presenced child on it.
func (s *suite) startClusterBackend(ctx context.Context, name string) (*clusterBackend, func(), error) {
	cfg := s.cfg
	b := &clusterBackend{name: name, masters: map[string]*redis.Client{}, shards: map[string]int{}}
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	o := RedisOptions{Notifications: true, MaxMemory: 2 << 30}
	if name == "single" {
		srv, err := StartRedis(ctx, o)
		if err != nil {
			return nil, stop, err
		}
		stops = append(stops, srv.Stop)
		b.url = srv.URL()
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 2 * loaderConcurrency})
		b.rdb = rdb
		b.masters[srv.Addr] = rdb
	} else {
		c, err := StartRedisCluster(ctx, clusterMasters, o)
		if err != nil {
			return nil, stop, err
		}
		stops = append(stops, c.Stop)
		b.url = c.URL()
		copts, err := config.ClusterOptions(b.url)
		if err != nil {
			stop()
			return nil, nil, err
		}
		copts.PoolSize = 2 * loaderConcurrency
		b.rdb = redis.NewClusterClient(copts)
		for _, n := range c.Nodes {
			cl := redis.NewClient(&redis.Options{Addr: n.Addr})
			b.masters[n.Addr] = cl
			stops = append(stops, func() { _ = cl.Close() })
		}
	}
	stops = append(stops, func() { _ = b.rdb.Close() })
	st, err := redisstore.New(b.rdb, redisstore.Config{Shards: clusterShards, TTL: 120 * time.Second})
	if err != nil {
		stop()
		return nil, nil, err
	}
	if err := st.Prepare(ctx); err != nil {
		stop()
		return nil, nil, err
	}
	b.st = st
	if name == "single" {
		for a := range b.masters {
			b.shards[a] = clusterShards
		}
	} else {
		byMaster, err := st.ShardsByMaster(ctx)
		if err != nil {
			stop()
			return nil, nil, err
		}
		for a, shards := range byMaster {
			b.shards[a] = len(shards)
		}
	}
	mem0, err := b.snapshotMasters(ctx)
	if err != nil {
		stop()
		return nil, nil, err
	}
	t0 := time.Now()
	ids, err := createUsers(ctx, st, "user", 0, cfg.Users, presence.RoleUser, s.pwHash)
	if err == nil {
		b.refs, err = startSessions(ctx, st, s.tokens, ids)
	}
	if err == nil {
		b.access, err = accessTokens(s.tokens, b.refs)
	}
	if err != nil {
		stop()
		return nil, nil, err
	}
	mem1, err := b.snapshotMasters(ctx)
	if err != nil {
		stop()
		return nil, nil, err
	}
	var grew int64
	for a := range b.masters {
		grew += mem1[a].UsedMemory - mem0[a].UsedMemory
	}
	b.perUser = float64(grew) / float64(cfg.Users)
	s.logf("%s: %d users with a session in %.1fs (%.0f B of Redis memory each); shards per master %v", name, cfg.Users, time.Since(t0).Seconds(), b.perUser, b.shards)
	env := s.childEnv(120*time.Second, time.Second)
	env["PRESENCE_SHARDS"] = strconv.Itoa(clusterShards)
	child, err := StartChild(ctx, cfg.Self, ChildConfig{Mode: ModePresenced, RedisURL: b.url, Env: env, Workers: true, Notifications: true})
	if err != nil {
		stop()
		return nil, nil, err
	}
	b.child = child
	stops = append(stops, child.Stop)
	return b, stop, nil
}

// snapshotMasters takes a Snapshot of every master.
func (b *clusterBackend) snapshotMasters(ctx context.Context) (map[string]Snapshot, error) {
	out := map[string]Snapshot{}
	for a, c := range b.masters {
		snap, err := TakeSnapshot(ctx, c)
		if err != nil {
			return nil, err
		}
		out[a] = snap
	}
	return out, nil
}

// clusterRun measures one HTTP load and one store-call load on b.
func (s *suite) clusterRun(ctx context.Context, b *clusterBackend) (clusterFigures, error) {
	cfg := s.cfg
	var f clusterFigures
	l := Load{Conns: cfg.Conns, Warmup: cfg.Warmup, Duration: cfg.Duration, Status: http.StatusOK,
		Request: heartbeatRequest(b.child.URL, b.access, cfg.Conns)}
	warm := l
	warm.Duration, warm.Warmup = cfg.Warmup, 0
	if _, err := warm.Run(ctx); err != nil {
		return f, fmt.Errorf("warm-up: %w", err)
	}
	before, err := b.snapshotMasters(ctx)
	if err != nil {
		return f, err
	}
	served0, err := b.child.Heartbeats(ctx)
	if err != nil {
		return f, err
	}
	l.Warmup = 0
	res, err := l.Run(ctx)
	if err != nil {
		return f, fmt.Errorf("heartbeat load: %w", err)
	}
	served1, err := b.child.Heartbeats(ctx)
	if err != nil {
		return f, err
	}
	after, err := b.snapshotMasters(ctx)
	if err != nil {
		return f, err
	}
	if served1 <= served0 {
		return f, errors.New("presenced counted no heartbeats")
	}
	f.httpRPS = res.RPS()
	var cpu time.Duration
	for a := range b.masters {
		cpu += after[a].Sub(before[a]).CPU
	}
	f.httpCPUPer = us(cpu) / (served1 - served0)

	// The same heartbeats as store calls from this process.
	before, err = b.snapshotMasters(ctx)
	if err != nil {
		return f, err
	}
	n, elapsed, err := directTouches(ctx, b.st, b.refs, cfg.Conns, cfg.Duration)
	if err != nil {
		return f, err
	}
	after, err = b.snapshotMasters(ctx)
	if err != nil {
		return f, err
	}
	f.directRPS = float64(n) / elapsed.Seconds()
	f.cpuPerShard, f.callsPerShard = map[string]float64{}, map[string]float64{}
	cpu = 0
	for a := range b.masters {
		d := after[a].Sub(before[a])
		cpu += d.CPU
		if shards := b.shards[a]; shards > 0 {
			f.cpuPerShard[a] = ms(d.CPU) / elapsed.Seconds() / float64(shards)
			f.callsPerShard[a] = float64(d.Commands["set"].Calls+d.Commands["zadd"].Calls) / elapsed.Seconds() / float64(shards)
		}
	}
	f.directCPUPer = us(cpu) / float64(n)
	return f, nil
}

// directTouches calls Store.Touch on refs in turn from conns goroutines for
// d and returns how many succeeded and how long it took.
func directTouches(ctx context.Context, st *redisstore.Store, refs []presence.SessionRef, conns int, d time.Duration) (int64, time.Duration, error) {
	var done, failed atomic.Int64
	var firstErr atomic.Value
	var next atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				ref := refs[int(next.Add(1))%len(refs)]
				if _, err := st.Touch(ctx, ref); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := failed.Load(); n > 0 {
		return 0, elapsed, fmt.Errorf("%d store heartbeats failed (first: %v)", n, firstErr.Load())
	}
	return done.Load(), elapsed, nil
}
