package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterNodeTimeout is the cluster-node-timeout of the nodes StartCluster
// starts: a master that stops answering for this long is marked failed and
// its replica takes over soon after. Production clusters use more (15 s by
// default); tests want a failover within a few seconds.
const ClusterNodeTimeout = 2 * time.Second

const (
	// clusterReadyTimeout bounds how long a new cluster may take to agree
	// on its slots, and a reshard or failover to settle.
	clusterReadyTimeout = 30 * time.Second
	// cliTimeout bounds one redis-cli run (a reshard of a few thousand
	// slots takes a few seconds).
	cliTimeout = 2 * time.Minute
)

// Cluster is a Redis Cluster of redis-server processes owned by one test,
// all on loopback. The Servers are ordinary: Stop, Kill and Restart work on
// them and the cluster reacts as it would to a lost or returning machine.
type Cluster struct {
	// Nodes are every node, in the order they were started; which of them
	// are masters changes with failovers (see Masters).
	Nodes []*Server

	cli string
}

// StartCluster starts masters × (1 + replicasPerMaster) redis-server
// processes in cluster mode on free loopback ports, joins them with
// `redis-cli --cluster create` (the slots split evenly over the masters,
// each master with replicasPerMaster replicas) and waits until every node
// reports cluster_state:ok and all agree on who serves which slot. The nodes
// run with keyspace expiry notifications on (like Start; opts can change
// that) and a cluster-node-timeout of ClusterNodeTimeout. Everything is
// stopped when the test ends.
//
// Like Start, it skips the test when redis-server or redis-cli is missing,
// and fails it instead when PRESENCE_REQUIRE_REDIS=1.
func StartCluster(tb testing.TB, masters, replicasPerMaster int, opts ...Option) *Cluster {
	tb.Helper()
	if masters < 3 {
		tb.Fatalf("redistest: a Redis Cluster needs at least 3 masters, got %d", masters)
		return nil
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		msg := "redis-cli not found on PATH; install it (apt-get install redis-server, which ships it) or run make test, which does"
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("%s, and %s=1 forbids skipping", msg, RequireEnv)
		} else {
			tb.Skip(msg)
		}
		return nil
	}
	opts = append([]Option{func(o *options) { o.clusterNodeTimeout = ClusterNodeTimeout }}, opts...)
	c := &Cluster{cli: cli}
	total := masters * (1 + replicasPerMaster)
	for range total {
		s := Start(tb, opts...)
		if s == nil {
			return nil // skipped (no redis-server)
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.addrs(c.Nodes)...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	if out, err := c.run(args...); err != nil {
		tb.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
		return nil
	}
	c.WaitReady(tb)
	c.waitReplicas(tb, masters*replicasPerMaster)
	if got := len(c.Masters(tb)); got != masters {
		tb.Fatalf("redistest: cluster created with %d masters, want %d", got, masters)
	}
	return c
}

// URL is the cluster as a presenced REDIS_URL: redis+cluster:// followed by
// every node's address, comma separated (see internal/config).
func (c *Cluster) URL() string {
	return "redis+cluster://" + strings.Join(c.addrs(c.Nodes), ",")
}

// Client returns a new go-redis cluster client that knows every node, closed
// when the test ends. It reloads the slot map every second: go-redis's
// default (60 s) would keep sending a killed master's slots to it for up to
// a minute after its replica took over.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.addrs(c.Nodes), ClusterStateReloadInterval: time.Second})
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Node returns the server listening on addr, or nil.
func (c *Cluster) Node(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// Masters returns the running nodes that are masters serving slots now,
// ordered by their first slot.
func (c *Cluster) Masters(tb testing.TB) []*Server {
	tb.Helper()
	shards, err := c.slotOwners()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	var out []*Server
	for _, o := range shards {
		if s := c.Node(o.addr); s != nil && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// MasterOf returns the node that serves slot now.
func (c *Cluster) MasterOf(tb testing.TB, slot int) *Server {
	tb.Helper()
	owners, err := c.slotOwners()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	for _, o := range owners {
		if slot >= o.start && slot <= o.end {
			return c.Node(o.addr)
		}
	}
	tb.Fatalf("redistest: no node serves slot %d", slot)
	return nil
}

// ID returns the cluster node ID of s.
func (c *Cluster) ID(tb testing.TB, s *Server) string {
	tb.Helper()
	id, err := s.Client(tb).ClusterMyID(context.Background()).Result()
	if err != nil {
		tb.Fatalf("redistest: CLUSTER MYID on %s: %v", s.Addr, err)
	}
	return id
}

// Reshard moves the n lowest slots of from to the master to, keys included,
// with `redis-cli --cluster reshard` (which migrates keys with MIGRATE,
// pipeline keys at a time, slot after slot, while clients keep working), and
// waits until the cluster agrees on the new layout.
func (c *Cluster) Reshard(tb testing.TB, from, to *Server, n, pipeline int) {
	tb.Helper()
	args := []string{"--cluster", "reshard", from.Addr,
		"--cluster-from", c.ID(tb, from), "--cluster-to", c.ID(tb, to),
		"--cluster-slots", strconv.Itoa(n), "--cluster-yes"}
	if pipeline > 0 {
		args = append(args, "--cluster-pipeline", strconv.Itoa(pipeline))
	}
	if out, err := c.run(args...); err != nil {
		tb.Fatalf("redistest: redis-cli --cluster reshard: %v\n%s", err, out)
	}
	c.WaitReady(tb)
}

// AddMaster starts one more node, joins it to the cluster as an empty master
// (`redis-cli --cluster add-node`: it serves no slot until a reshard gives it
// some) and waits until every node knows it.
func (c *Cluster) AddMaster(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	opts = append([]Option{func(o *options) { o.clusterNodeTimeout = ClusterNodeTimeout }}, opts...)
	s := Start(tb, opts...)
	var seed *Server
	for _, n := range c.Nodes {
		if n.running() {
			seed = n
			break
		}
	}
	if seed == nil {
		tb.Fatalf("redistest: no running node to join")
		return nil
	}
	if out, err := c.run("--cluster", "add-node", s.Addr, seed.Addr); err != nil {
		tb.Fatalf("redistest: redis-cli --cluster add-node: %v\n%s", err, out)
		return nil
	}
	c.Nodes = append(c.Nodes, s)
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		known, running := 0, 0
		for _, n := range c.Nodes {
			if !n.running() {
				continue
			}
			running++
			cl := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, DialTimeout: time.Second})
			info, err := cl.ClusterInfo(context.Background()).Result()
			_ = cl.Close()
			if n, _ := strconv.Atoi(infoField(info, "cluster_known_nodes")); err == nil && n >= len(c.Nodes) {
				known++
			}
		}
		if known == running {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: %s not known to every node after %s", s.Addr, clusterReadyTimeout)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.WaitReady(tb)
	return s
}

// SlotsOf returns the slots s serves now, in ascending order.
func (c *Cluster) SlotsOf(tb testing.TB, s *Server) []int {
	tb.Helper()
	owners, err := c.slotOwners()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	var out []int
	for _, o := range owners {
		if o.addr == s.Addr {
			for sl := o.start; sl <= o.end; sl++ {
				out = append(out, sl)
			}
		}
	}
	slices.Sort(out)
	return out
}

// WaitReady waits until every running node reports cluster_state:ok and
// they all give the same answer to CLUSTER SLOTS (which master serves which
// slots), which is what a reshard or failover leaves once it has settled.
// It fails the test after 30 s.
func (c *Cluster) WaitReady(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if last = c.agree(); last == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("redistest: cluster not ready after %s: %v", clusterReadyTimeout, last)
}

// waitReplicas waits until n nodes are replicas in sync with their master:
// redis-cli returns before every replica has attached, and a replica that
// never synced could not take over.
func (c *Cluster) waitReplicas(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	info := func(addr string) string {
		cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
		defer cl.Close()
		repl, _ := cl.Info(context.Background(), "replication").Result()
		return repl
	}
	for {
		// Masters' offsets first, then each replica's: a replica counts
		// once it has caught up with what its master had sent before, which
		// a replica left "online" but receiving nothing never does.
		offsets := map[string]int64{}
		for _, s := range c.Nodes {
			if repl := info(s.Addr); infoField(repl, "role") == "master" {
				offsets[s.Addr], _ = strconv.ParseInt(infoField(repl, "master_repl_offset"), 10, 64)
			}
		}
		synced := 0
		for _, s := range c.Nodes {
			repl := info(s.Addr)
			master := net.JoinHostPort(infoField(repl, "master_host"), infoField(repl, "master_port"))
			got, _ := strconv.ParseInt(infoField(repl, "slave_repl_offset"), 10, 64)
			if infoField(repl, "role") == "slave" && infoField(repl, "master_link_status") == "up" &&
				infoField(repl, "master_sync_in_progress") == "0" && got >= offsets[master] {
				synced++
			}
		}
		if synced == n {
			c.WaitReady(tb)
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: %d of %d replicas in sync after %s", synced, n, clusterReadyTimeout)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitFailover waits until the master old (killed or stopped by the test)
// serves no slot any more, because its replicas took over, and the cluster
// is ready again. It returns how long that took from the call. It fails the
// test after 30 s.
func (c *Cluster) WaitFailover(tb testing.TB, old *Server) time.Duration {
	tb.Helper()
	start := time.Now()
	deadline := start.Add(clusterReadyTimeout)
	for {
		owners, err := c.slotOwners()
		if err == nil && !slices.ContainsFunc(owners, func(o slotOwner) bool { return o.addr == old.Addr }) {
			if err = c.agree(); err == nil {
				return time.Since(start)
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: no failover of %s after %s: %v", old.Addr, clusterReadyTimeout, err)
			return 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// agree returns nil when every running node is ok and they agree on which
// master serves which slots.
func (c *Cluster) agree() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var want string
	running := 0
	for _, s := range c.Nodes {
		if !s.running() {
			continue
		}
		running++
		cl := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second})
		info, err := cl.ClusterInfo(ctx).Result()
		var slots []redis.ClusterSlot
		var repl string
		if err == nil {
			slots, err = cl.ClusterSlots(ctx).Result()
		}
		if err == nil {
			repl, err = cl.Info(ctx, "replication").Result()
		}
		_ = cl.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", s.Addr, err)
		}
		if st := infoField(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", s.Addr, st)
		}
		// A replica counts once it has synced: only then can it take over.
		if infoField(repl, "role") == "slave" && infoField(repl, "master_link_status") != "up" {
			return fmt.Errorf("%s: replica not in sync with its master", s.Addr)
		}
		got := layout(slots)
		if want == "" {
			want = got
		} else if got != want {
			return fmt.Errorf("nodes disagree on the slots:\n%s\n%s", want, got)
		}
	}
	if running == 0 {
		return errors.New("no node is running")
	}
	return nil
}

// layout renders CLUSTER SLOTS canonically: ranges in order, each with its
// master. Replicas are left out: a node that briefly flagged a replica as
// failing (CPU-starved test machines) lists it later than the others, and
// waitReplicas checks them where it matters.
func layout(slots []redis.ClusterSlot) string {
	lines := make([]string, 0, len(slots))
	for _, sl := range slots {
		master := ""
		if len(sl.Nodes) > 0 {
			master = sl.Nodes[0].Addr
		}
		lines = append(lines, fmt.Sprintf("%05d-%05d master=%s", sl.Start, sl.End, master))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// slotOwner is one slot range and the address of the master serving it.
type slotOwner struct {
	start, end int
	addr       string
}

// slotOwners asks the first running node for CLUSTER SLOTS.
func (c *Cluster) slotOwners() ([]slotOwner, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var errs []error
	for _, s := range c.Nodes {
		if !s.running() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second})
		slots, err := cl.ClusterSlots(ctx).Result()
		_ = cl.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("CLUSTER SLOTS on %s: %w", s.Addr, err))
			continue
		}
		out := make([]slotOwner, 0, len(slots))
		for _, sl := range slots {
			if len(sl.Nodes) > 0 {
				out = append(out, slotOwner{start: int(sl.Start), end: int(sl.End), addr: sl.Nodes[0].Addr})
			}
		}
		slices.SortFunc(out, func(a, b slotOwner) int { return a.start - b.start })
		return out, nil
	}
	return nil, fmt.Errorf("no node answers: %w", errors.Join(errs...))
}

// run runs redis-cli with args and returns its combined output.
func (c *Cluster) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.cli, args...)
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *Cluster) addrs(nodes []*Server) []string {
	out := make([]string, len(nodes))
	for i, s := range nodes {
		out[i] = s.Addr
	}
	return out
}

// running reports whether the server's process is up (not stopped or
// killed by the test).
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.done:
		return false
	default:
		return true
	}
}
