package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestClusterStartReshardFailover(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3, 1)
	ctx := context.Background()
	if got, want := len(c.Nodes), 6; got != want {
		t.Fatalf("nodes: got %d, want %d", got, want)
	}
	masters := c.Masters(t)
	if len(masters) != 3 {
		t.Fatalf("masters: got %d, want 3", len(masters))
	}
	if !strings.HasPrefix(c.URL(), "redis+cluster://127.0.0.1:") || strings.Count(c.URL(), ",") != 5 {
		t.Errorf("URL: got %q, want redis+cluster:// and 6 addresses", c.URL())
	}
	for _, s := range c.Nodes {
		ev, err := s.Client(t).ConfigGet(ctx, "notify-keyspace-events").Result()
		if err != nil || !strings.Contains(ev["notify-keyspace-events"], "E") {
			t.Errorf("%s notify-keyspace-events: got %q, %v, want Ex", s.Addr, ev, err)
		}
	}

	cc := c.Client(t)
	const keys = 300
	for i := range keys {
		if err := cc.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET through the cluster client: %v", err)
		}
	}
	perMaster := map[string]int64{}
	for _, m := range masters {
		n, err := m.Client(t).DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		perMaster[m.Addr] = n
		if n == 0 {
			t.Errorf("master %s holds no key: the slots are not spread", m.Addr)
		}
	}

	// Reshard: the lowest 100 slots of the first master move to the second,
	// keys and all.
	from, to := masters[0], masters[1]
	moving := c.SlotsOf(t, from)[:100]
	c.Reshard(t, from, to, 100, 0)
	for _, sl := range []int{moving[0], moving[99]} {
		if got := c.MasterOf(t, sl); got != to {
			t.Errorf("slot %d after reshard: served by %v, want %s", sl, got.Addr, to.Addr)
		}
	}
	for i := range keys {
		if v, err := cc.Get(ctx, fmt.Sprintf("k%d", i)).Int(); err != nil || v != i {
			t.Fatalf("k%d after reshard: got %d, %v, want %d", i, v, err, i)
		}
	}

	// Failover: kill a master; its replica takes over its slots.
	victim := masters[2]
	slot := c.SlotsOf(t, victim)[0]
	victim.Kill()
	took := c.WaitFailover(t, victim)
	promoted := c.MasterOf(t, slot)
	if promoted == nil || promoted == victim {
		t.Fatalf("slot %d after killing its master: not served by a promoted replica", slot)
	}
	t.Logf("failover: replica %s serves slot %d %s after its master was killed (node timeout %s)", promoted.Addr, slot, took.Round(time.Millisecond), ClusterNodeTimeout)
	// The client finds the new master once it reloads the slot map.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < keys; {
		err := cc.Get(ctx, fmt.Sprintf("k%d", i)).Err()
		switch {
		case err == nil:
			i++
		case time.Now().After(deadline):
			for _, n := range c.Nodes { // where did the key go?
				if n.running() {
					cl := n.Client(t)
					cl.Do(ctx, "READONLY")
					ex, err := cl.Exists(ctx, fmt.Sprintf("k%d", i)).Result()
					db, _ := cl.DBSize(ctx).Result()
					role, _ := cl.Do(ctx, "ROLE").Slice()
					t.Logf("%s: EXISTS k%d = %d (%v), DBSIZE %d, ROLE %v", n.Addr, i, ex, err, db, role[0])
				}
			}
			t.Fatalf("k%d after failover: %v", i, err)
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The killed node comes back as a replica of the one that replaced it.
	victim.Restart(t)
	c.WaitReady(t)
	role, err := victim.Client(t).Do(ctx, "ROLE").Slice()
	if err != nil || role[0] != "slave" {
		t.Errorf("restarted old master: ROLE %v, %v, want slave", role, err)
	}
}

func TestClusterMissingCLI(t *testing.T) {
	tests := []struct {
		name, require        string
		wantSkip, wantFailed bool
	}{
		{"skips by default", "", true, false},
		{"fails when required", "1", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv(RequireEnv, tt.require)
			r := &recordingTB{TB: t}
			if c := StartCluster(r, 3, 0); c != nil {
				t.Fatalf("StartCluster: got a cluster without redis-cli on PATH")
			}
			if got := r.skipped != ""; got != tt.wantSkip {
				t.Errorf("skipped: got %v (%q), want %v", got, r.skipped, tt.wantSkip)
			}
			if got := r.failed != ""; got != tt.wantFailed {
				t.Errorf("failed: got %v (%q), want %v", got, r.failed, tt.wantFailed)
			}
		})
	}
}
