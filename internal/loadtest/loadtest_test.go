package loadtest

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/redistest"
)

// TestMain lets the test binary serve as the suite's servers: Run starts
// os.Args[0] with ChildEnv set, as cmd/presence-bench re-executes itself.
func TestMain(m *testing.M) {
	if ChildRequested() {
		os.Exit(ChildMain())
	}
	os.Exit(m.Run())
}

func requireRedis(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(redistest.RequireEnv) == "1" {
			t.Fatalf("redis-server not on PATH and %s=1", redistest.RequireEnv)
		}
		t.Skip("redis-server not on PATH")
	}
}

// TestSuiteSmoke runs every scenario at a tiny size: the tool works end to
// end, each scenario reports its figures with a baseline, and the JSON is
// written. The numbers themselves mean nothing at this size.
func TestSuiteSmoke(t *testing.T) {
	requireRedis(t)
	cfg := Tiny()
	cfg.Self = os.Args[0]
	cfg.Out = t.TempDir()
	cfg.Duration = 200 * time.Millisecond
	cfg.MemorySizes = []int{300, 800}
	cfg.OfflineTTL, cfg.OfflineSpread, cfg.OfflineSweep, cfg.OfflineWait = time.Second, 200*time.Millisecond, 100*time.Millisecond, 3*time.Second
	cfg.Profile = true
	var log strings.Builder
	cfg.Log = &log
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	got := map[string]ScenarioReport{}
	for _, sc := range rep.Scenarios {
		got[sc.Name] = sc
		t.Logf("%s: %.1fs", sc.Name, sc.Seconds)
	}
	for _, name := range AllScenarios {
		sc, ok := got[name]
		if !ok {
			t.Errorf("scenario %s missing from the report", name)
			continue
		}
		if sc.Skipped != "" || len(sc.Rows) == 0 {
			t.Errorf("scenario %s: skipped %q with %d rows", name, sc.Skipped, len(sc.Rows))
		}
		baselines := 0
		for _, r := range sc.Rows {
			if !math.IsNaN(r.Baseline) {
				baselines++
			}
		}
		if baselines == 0 {
			t.Errorf("scenario %s has no baseline", name)
		}
		b, err := os.ReadFile(filepath.Join(cfg.Out, name+".json"))
		if err != nil {
			t.Errorf("scenario %s: %v", name, err)
			continue
		}
		var back ScenarioReport
		if err := json.Unmarshal(b, &back); err != nil || back.Name != name {
			t.Errorf("scenario %s: JSON %s does not read back (%v)", name, b, err)
		}
		if !strings.Contains(log.String(), "("+name+") ==") {
			t.Errorf("scenario %s: no table printed", name)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.Out, "summary.json")); err != nil {
		t.Errorf("summary: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(cfg.Out, "heartbeat.cpu.pprof")); err != nil || fi.Size() == 0 {
		t.Errorf("CPU profile: %v", err)
	}
	// The figures that do not depend on the size: a heartbeat is at most
	// one round trip (concurrent ones share pipelines) of two commands.
	for _, r := range got[ScenarioRedisCost].Rows {
		switch r.Name {
		case "round trips per heartbeat":
			if r.Value <= 0 || r.Value > 1.01 {
				t.Errorf("round trips per heartbeat: got %v, want (0, 1]", r.Value)
			}
		case "Redis commands per heartbeat":
			if r.Value < 1.99 || r.Value > 2.02 {
				t.Errorf("commands per heartbeat: got %v, want 2", r.Value)
			}
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", log.String())
	}
}

func TestScanPage(t *testing.T) {
	tests := []struct {
		name, body string
		ids        []int64
		next       string
		wantErr    bool
	}{
		{"last page", `{"count":2,"next":null,"previous":null,"results":[{"id":1,"username":"a"},{"id":22,"username":"b"}]}`, []int64{1, 22}, "", false},
		{"with next", `{"count":9,"next":"http://h/api/users/admin/users/?cursor=a%2Bb\u0026per_page=2","previous":null,"results":[{"id":3}]}`,
			[]int64{3}, "http://h/api/users/admin/users/?cursor=a%2Bb&per_page=2", false},
		{"no next", `{"results":[]}`, nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids, next, err := scanPage([]byte(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if next != tt.next || len(ids) != len(tt.ids) {
				t.Fatalf("got %v %q, want %v %q", ids, next, tt.ids, tt.next)
			}
			for i := range ids {
				if ids[i] != tt.ids[i] {
					t.Errorf("id %d: got %d, want %d", i, ids[i], tt.ids[i])
				}
			}
		})
	}
}

func TestQuantilesAndMedian(t *testing.T) {
	inf := math.Inf(1)
	q := quantiles([]float64{0.3, 0.1, inf, 0.2})
	if q.p50 != 0.2 || !math.IsInf(q.p99, 1) || q.delivered != 0.75 {
		t.Errorf("quantiles: got %+v, want p50 0.2, p99 inf, delivered 0.75", q)
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median: got %v, want 2.5", m)
	}
	var l Latencies
	for i := 1; i <= 100; i++ {
		l.Add(time.Duration(i) * time.Millisecond)
	}
	if p := l.Quantile(0.99); p != 99*time.Millisecond {
		t.Errorf("p99: got %v, want 99ms", p)
	}
}
