package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/internal/presence"
)

// scrape fetches the handler's output.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: got status %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics: got Content-Type %q, want text/plain", ct)
	}
	b, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestScrape(t *testing.T) {
	m := New()
	m.ObserveHeartbeat(HeartbeatOK)
	m.ObserveHeartbeat(HeartbeatOK)
	m.ObserveHeartbeat(HeartbeatRevived)
	m.ObserveTransition(presence.Online, presence.ReasonLogin)
	m.ObserveTransition(presence.Offline, presence.ReasonExpired)
	m.ObserveTransition(presence.Offline, presence.ReasonExpired)
	m.OnlineUsers.Set(42)
	m.ObserveSweepRun(nil)
	m.ObserveSweepRun(errors.New("redis down"))
	m.ObserveSweptSession(30 * time.Millisecond)
	m.ObserveSweptSession(-time.Second) // clock skew: counted as no lag
	m.ListenerReconnectsTotal.Inc()
	m.ListenerEventsTotal.Add(5)
	m.SetListenerConnected(true)
	m.ObserveHTTP("/api/users/login/", http.MethodPost, 200, 20*time.Millisecond)
	m.ObserveHTTP("", http.MethodGet, 404, time.Millisecond)
	m.ObserveHTTP("/api/users/heartbeat/", "BREW", 405, time.Millisecond)
	m.HTTPRequestsInFlight.Inc()

	out := scrape(t, m)
	want := []string{
		`presenced_heartbeats_total{result="ok"} 2`,
		`presenced_heartbeats_total{result="revived"} 1`,
		`presenced_heartbeats_total{result="revoked"} 0`,
		`presenced_heartbeats_total{result="error"} 0`,
		`presenced_transitions_total{reason="login",status="online"} 1`,
		`presenced_transitions_total{reason="expired",status="offline"} 2`,
		`presenced_transitions_total{reason="admin",status="away"} 0`,
		`presenced_online_users 42`,
		`presenced_sweep_runs_total 2`,
		`presenced_sweep_errors_total 1`,
		`presenced_swept_sessions_total 2`,
		`presenced_sweep_lag_seconds_bucket{le="0.01"} 1`,
		`presenced_sweep_lag_seconds_bucket{le="0.05"} 2`,
		`presenced_sweep_lag_seconds_bucket{le="60"} 2`,
		`presenced_sweep_lag_seconds_count 2`,
		`presenced_sweep_lag_seconds_sum 0.03`,
		`presenced_listener_reconnects_total 1`,
		`presenced_listener_events_total 5`,
		`presenced_listener_connected 1`,
		`presenced_http_request_duration_seconds_count{code="200",method="POST",route="/api/users/login/"} 1`,
		`presenced_http_request_duration_seconds_bucket{code="200",method="POST",route="/api/users/login/",le="0.025"} 1`,
		`presenced_http_request_duration_seconds_bucket{code="200",method="POST",route="/api/users/login/",le="0.01"} 0`,
		`presenced_http_request_duration_seconds_count{code="404",method="GET",route="unmatched"} 1`,
		`presenced_http_request_duration_seconds_count{code="405",method="OTHER",route="/api/users/heartbeat/"} 1`,
		`presenced_http_requests_in_flight 1`,
		// The Go and process collectors are registered too.
		`go_goroutines `,
		`process_cpu_seconds_total `,
	}
	for _, line := range want {
		if !strings.Contains(out, "\n"+line) {
			t.Errorf("scrape: missing %q", line)
		}
	}
	if t.Failed() {
		t.Logf("scrape output:\n%s", out)
	}

	m.SetListenerConnected(false)
	if out := scrape(t, m); !strings.Contains(out, "\npresenced_listener_connected 0") {
		t.Errorf("after SetListenerConnected(false): got no presenced_listener_connected 0 in\n%s", out)
	}
}

// TestIndependentRegistries checks that two Metrics do not share state or
// panic on duplicate registration, which tests running many servers rely on.
func TestIndependentRegistries(t *testing.T) {
	a, b := New(), New()
	a.ObserveHeartbeat(HeartbeatError)
	if out := scrape(t, b); !strings.Contains(out, `presenced_heartbeats_total{result="error"} 0`) {
		t.Errorf("second registry: got a shared counter, want error=0 in\n%s", out)
	}
	if out := scrape(t, a); !strings.Contains(out, `presenced_heartbeats_total{result="error"} 1`) {
		t.Errorf("first registry: want error=1 in\n%s", out)
	}
}

func TestNormalizeMethod(t *testing.T) {
	tests := []struct{ in, want string }{
		{"GET", "GET"}, {"POST", "POST"}, {"OPTIONS", "OPTIONS"}, {"get", "OTHER"}, {"PROPFIND", "OTHER"}, {"", "OTHER"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := normalizeMethod(tt.in); got != tt.want {
				t.Errorf("normalizeMethod(%q): got %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRegisterer(t *testing.T) {
	m := New()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "extra_gauge", Help: "test"})
	if err := m.Registerer().Register(g); err != nil {
		t.Fatalf("Register: %v", err)
	}
	g.Set(7)
	if out := scrape(t, m); !strings.Contains(out, "\nextra_gauge 7") {
		t.Errorf("scrape: got no extra_gauge 7 in\n%s", out)
	}
}
