package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/presence"
)

// Registration modes (PRESENCE_REGISTRATION).
const (
	// RegistrationApproval creates pending accounts that an admin approves.
	RegistrationApproval = "approval"
	// RegistrationOpen creates active accounts and logs them in at once.
	RegistrationOpen = "open"
	// RegistrationClosed refuses every registration with 403.
	RegistrationClosed = "closed"
)

// Config holds what the HTTP API needs. Store, Tokens, Hasher and Metrics are
// required.
type Config struct {
	// Store keeps accounts, sessions and presence.
	Store presence.Store
	// Tokens issues and parses access and refresh tokens.
	Tokens *auth.Tokens
	// Hasher hashes and checks passwords.
	Hasher *auth.Hasher
	// Metrics receives the HTTP metrics and serves /metrics.
	Metrics *metrics.Metrics
	// Logger receives the access log and the causes of errors. Default:
	// discard.
	Logger *slog.Logger
	// Registration is RegistrationApproval, RegistrationOpen or
	// RegistrationClosed. Default RegistrationApproval.
	Registration string
	// CORSOrigins are the origins browsers may call from ("*" for any).
	// Default none: no CORS headers, and preflight requests get 403.
	CORSOrigins []string
	// RequestTimeout bounds the Store work of one request. Default 5s.
	RequestTimeout time.Duration
	// Ready is the readiness probe of /readyz. Default Store.Ping.
	Ready func(ctx context.Context) error
	// Now is the clock. Default time.Now.
	Now func() time.Time

	// EventPing is the interval of the event stream's comment heartbeats,
	// which keep proxies from closing idle streams; each stream also checks
	// its session again at this interval. Default DefaultEventPing (15s).
	EventPing time.Duration
	// MaxEventStreams caps the concurrent event streams of this instance;
	// over it, a new stream gets 503. Default DefaultMaxEventStreams (1000).
	MaxEventStreams int
	// StreamsDone, when closed, ends every event stream. http.Server's
	// Shutdown waits for handlers but does not cancel them, so the wiring
	// closes it when shutdown begins (RegisterOnShutdown). Default: never.
	StreamsDone <-chan struct{}
	// Draining, when closed, says the instance is about to stop: /readyz
	// answers 503 so load balancers route elsewhere, and every response
	// carries Connection: close so keep-alive clients open their next
	// connection (to another replica, or to this one while it still
	// listens) instead of reusing one that shutdown would close under a
	// request already on its way. Default: never.
	Draining <-chan struct{}
	// Dashboard, when set, is served at /admin/ (internal/dashboard).
	// Default: no dashboard.
	Dashboard http.Handler
	// ServiceKeys are the trusted services that may call heartbeat/batch/.
	// Default none: every batch call gets 401.
	ServiceKeys []ServiceKey
	// LoginLimiter bounds failed logins per username and per client
	// address; over a limit, login answers 429 with Retry-After. Default
	// nil: no limit.
	LoginLimiter LoginLimiter
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// address of the per-address login limit. Default none: the client is
	// the TCP peer.
	TrustedProxies []netip.Prefix
}

// isDraining reports whether the Draining channel is closed.
func (s *server) isDraining() bool {
	select {
	case <-s.draining:
		return true
	default:
		return false
	}
}

// server holds the dependencies of the handlers.
type server struct {
	store        presence.Store
	tokens       *auth.Tokens
	hasher       *auth.Hasher
	metrics      *metrics.Metrics
	log          *slog.Logger
	registration string
	cors         corsPolicy
	timeout      time.Duration
	ready        func(ctx context.Context) error
	now          func() time.Time
	dashboard    http.Handler
	serviceKeys  []ServiceKey

	// limiter bounds password guessing (nil: no limit); trustedProxies
	// may name the client address in X-Forwarded-For.
	limiter        LoginLimiter
	trustedProxies []netip.Prefix

	// The event streams: the feed they read through, their ping interval,
	// the instance's cap and how many are open.
	feed        *feed
	eventPing   time.Duration
	maxStreams  int
	streams     atomic.Int64
	streamsDone <-chan struct{}
	draining    <-chan struct{}

	// Request IDs are idPrefix + "-" + a counter: unique per process run
	// without a random read per request.
	idPrefix string
	idSeq    atomic.Uint64
}

// New validates cfg, fills its defaults and returns the HTTP handler of the
// whole API, middleware included.
func New(cfg Config) (http.Handler, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("httpapi: Store is required")
	case cfg.Tokens == nil:
		return nil, errors.New("httpapi: Tokens is required")
	case cfg.Hasher == nil:
		return nil, errors.New("httpapi: Hasher is required")
	case cfg.Metrics == nil:
		return nil, errors.New("httpapi: Metrics is required")
	}
	switch cfg.Registration {
	case "":
		cfg.Registration = RegistrationApproval
	case RegistrationApproval, RegistrationOpen, RegistrationClosed:
	default:
		return nil, fmt.Errorf("httpapi: registration mode %q: want %s, %s or %s",
			cfg.Registration, RegistrationApproval, RegistrationOpen, RegistrationClosed)
	}
	if cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("httpapi: request timeout %v is negative", cfg.RequestTimeout)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Ready == nil {
		cfg.Ready = cfg.Store.Ping
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.EventPing < 0 || cfg.MaxEventStreams < 0 {
		return nil, fmt.Errorf("httpapi: event ping %v and max event streams %d must not be negative", cfg.EventPing, cfg.MaxEventStreams)
	}
	if cfg.EventPing == 0 {
		cfg.EventPing = DefaultEventPing
	}
	if cfg.MaxEventStreams == 0 {
		cfg.MaxEventStreams = DefaultMaxEventStreams
	}
	cors, err := newCORSPolicy(cfg.CORSOrigins)
	if err != nil {
		return nil, err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("httpapi: request id prefix: %w", err)
	}
	s := &server{
		store:        cfg.Store,
		tokens:       cfg.Tokens,
		hasher:       cfg.Hasher,
		metrics:      cfg.Metrics,
		log:          cfg.Logger,
		registration: cfg.Registration,
		cors:         cors,
		timeout:      cfg.RequestTimeout,
		ready:        cfg.Ready,
		now:          cfg.Now,
		idPrefix:     hex.EncodeToString(b[:]),
		serviceKeys:  cfg.ServiceKeys,
		dashboard:    cfg.Dashboard,
		eventPing:    cfg.EventPing,
		maxStreams:   cfg.MaxEventStreams,
		streamsDone:  cfg.StreamsDone,
		draining:     cfg.Draining,
	}
	s.limiter, s.trustedProxies = cfg.LoginLimiter, cfg.TrustedProxies
	// The feed's read waits at most a second (or the ping interval, if
	// shorter), so it stops soon after its last stream.
	s.feed = newFeed(cfg.Store, cfg.Logger, min(time.Second, cfg.EventPing), cfg.RequestTimeout)
	return s.middleware(s.router()), nil
}
