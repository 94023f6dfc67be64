// Package metrics defines presenced's Prometheus collectors on a registry of
// its own, so that tests can create as many independent sets as they like
// and /metrics shows exactly what presenced registered (plus the Go runtime
// and process collectors).
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/presenced/presenced/internal/presence"
)

// Namespace prefixes every presenced metric name.
const Namespace = "presenced"

// HeartbeatResult is the outcome of one heartbeat (or presence refresh by
// the middleware), the label of HeartbeatsTotal.
type HeartbeatResult string

// Heartbeat results.
const (
	// HeartbeatOK: the session was live and stays live.
	HeartbeatOK HeartbeatResult = "ok"
	// HeartbeatRevived: the session's TTL had run out; it is live again and
	// the user went back online.
	HeartbeatRevived HeartbeatResult = "revived"
	// HeartbeatRevoked: the session was ended or the account is inactive.
	HeartbeatRevoked HeartbeatResult = "revoked"
	// HeartbeatError: the store failed.
	HeartbeatError HeartbeatResult = "error"
)

// unmatchedRoute is the route label of requests that matched no route, so
// that scanners probing random paths cannot create new series.
const unmatchedRoute = "unmatched"

// Metrics holds every presenced collector. The fields are exported for code
// that needs more than the helper methods; the helpers keep label values to
// the documented sets.
type Metrics struct {
	// HeartbeatsTotal counts heartbeats by result (ok, revived, revoked,
	// error).
	HeartbeatsTotal *prometheus.CounterVec
	// TransitionsTotal counts user transitions by status (online, offline,
	// away) and reason (login, heartbeat, logout, expired, admin).
	TransitionsTotal *prometheus.CounterVec
	// OnlineUsers is the number of users online or away, set by a poller.
	OnlineUsers prometheus.Gauge
	// SweepLagSeconds observes, for each session the sweep expired, how long
	// after its deadline the sweep found it: the delay the backup path adds.
	SweepLagSeconds prometheus.Histogram
	// SweepRunsTotal counts sweep passes.
	SweepRunsTotal prometheus.Counter
	// SweptSessionsTotal counts sessions the sweep expired (those whose
	// keyspace event was lost or late).
	SweptSessionsTotal prometheus.Counter
	// SweepErrorsTotal counts sweep passes that failed.
	SweepErrorsTotal prometheus.Counter
	// ListenerReconnectsTotal counts re-subscriptions of the keyspace event
	// listener after a lost connection.
	ListenerReconnectsTotal prometheus.Counter
	// ListenerEventsTotal counts expiry events the listener received.
	ListenerEventsTotal prometheus.Counter
	// ListenerConnected is 1 while the listener is subscribed, else 0.
	ListenerConnected prometheus.Gauge
	// HTTPRequestDuration observes request latency by route template,
	// method and status code.
	HTTPRequestDuration *prometheus.HistogramVec
	// HTTPRequestsInFlight is the number of requests being served.
	HTTPRequestsInFlight prometheus.Gauge

	registry *prometheus.Registry
}

// New creates the collectors and registers them, with the Go runtime and
// process collectors, on a new registry.
func New() *Metrics {
	m := &Metrics{
		HeartbeatsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "heartbeats_total",
			Help: "Heartbeats and presence refreshes, by result (ok, revived, revoked, error).",
		}, []string{"result"}),
		TransitionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "transitions_total",
			Help: "User presence transitions, by new status and reason.",
		}, []string{"status", "reason"}),
		OnlineUsers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "online_users",
			Help: "Users currently online or away.",
		}),
		SweepLagSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "sweep_lag_seconds",
			Help: "For each session expired by the sweep, seconds between its deadline and its expiry.",
			// From the sweep interval's order (10ms) up to a minute, where
			// something is clearly wrong.
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		SweepRunsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "sweep_runs_total",
			Help: "Sweep passes run.",
		}),
		SweptSessionsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "swept_sessions_total",
			Help: "Sessions expired by the sweep rather than by a keyspace event.",
		}),
		SweepErrorsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "sweep_errors_total",
			Help: "Sweep passes that failed.",
		}),
		ListenerReconnectsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "listener_reconnects_total",
			Help: "Reconnections of the keyspace expiry listener.",
		}),
		ListenerEventsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "listener_events_total",
			Help: "Keyspace expiry events received.",
		}),
		ListenerConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "listener_connected",
			Help: "1 while the keyspace expiry listener is subscribed, else 0.",
		}),
		HTTPRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "http_request_duration_seconds",
			Help:    "HTTP request latency, by route template, method and status code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method", "code"}),
		HTTPRequestsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
		registry: prometheus.NewRegistry(),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.HeartbeatsTotal, m.TransitionsTotal, m.OnlineUsers,
		m.SweepLagSeconds, m.SweepRunsTotal, m.SweptSessionsTotal, m.SweepErrorsTotal,
		m.ListenerReconnectsTotal, m.ListenerEventsTotal, m.ListenerConnected,
		m.HTTPRequestDuration, m.HTTPRequestsInFlight,
	)
	// Create the labelled series up front so that they read 0 rather than
	// being absent until the first event: rate() and alerts on an absent
	// series silently see nothing.
	for _, r := range []HeartbeatResult{HeartbeatOK, HeartbeatRevived, HeartbeatRevoked, HeartbeatError} {
		m.HeartbeatsTotal.WithLabelValues(string(r))
	}
	for _, s := range []presence.OnlineStatus{presence.Online, presence.Away, presence.Offline} {
		for _, r := range []presence.Reason{presence.ReasonLogin, presence.ReasonHeartbeat, presence.ReasonLogout, presence.ReasonExpired, presence.ReasonAdmin} {
			m.TransitionsTotal.WithLabelValues(string(s), string(r))
		}
	}
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Registerer is the registry, for collectors defined elsewhere (for example
// Redis connection pool statistics).
func (m *Metrics) Registerer() prometheus.Registerer { return m.registry }

// ObserveHeartbeat counts one heartbeat with its result.
func (m *Metrics) ObserveHeartbeat(result HeartbeatResult) {
	m.HeartbeatsTotal.WithLabelValues(string(result)).Inc()
}

// ObserveTransition counts one user transition.
func (m *Metrics) ObserveTransition(status presence.OnlineStatus, reason presence.Reason) {
	m.TransitionsTotal.WithLabelValues(string(status), string(reason)).Inc()
}

// ObserveSweepRun counts one sweep pass, and an error when err is not nil.
func (m *Metrics) ObserveSweepRun(err error) {
	m.SweepRunsTotal.Inc()
	if err != nil {
		m.SweepErrorsTotal.Inc()
	}
}

// ObserveSweptSession counts one session expired by the sweep, lag after
// its deadline. A negative lag (clock skew between hosts) counts as zero.
func (m *Metrics) ObserveSweptSession(lag time.Duration) {
	m.SweptSessionsTotal.Inc()
	m.SweepLagSeconds.Observe(max(lag, 0).Seconds())
}

// SetListenerConnected records whether the expiry listener is subscribed.
func (m *Metrics) SetListenerConnected(connected bool) {
	v := 0.0
	if connected {
		v = 1
	}
	m.ListenerConnected.Set(v)
}

// ObserveHTTP records one served request. route is the route template the
// request matched ("/api/users/login/"), never the raw path, which would
// create a series per user ID; "" records it as "unmatched". Methods outside
// the standard set are recorded as "OTHER" for the same reason.
func (m *Metrics) ObserveHTTP(route, method string, code int, d time.Duration) {
	if route == "" {
		route = unmatchedRoute
	}
	m.HTTPRequestDuration.WithLabelValues(route, normalizeMethod(method), strconv.Itoa(code)).Observe(d.Seconds())
}

func normalizeMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "OTHER"
}
