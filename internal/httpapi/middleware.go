package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/presence"
)

// maxBodyBytes is the largest request body accepted (64 KiB).
const maxBodyBytes = 64 << 10

// middleware wraps the router in the middleware chain, outermost first:
// request id → recover → metrics and access log → CORS → body limit. The
// per-request timeout and authentication are per route (see wrapRoute),
// because they depend on the route.
func (s *server) middleware(h http.Handler) http.Handler {
	return s.requestID(s.recoverPanics(s.observe(s.corsHeaders(limitBody(h)))))
}

// requestState is what the middleware learns about a request, shared with
// the handlers through the context. It also records the response status. It
// is one allocation per request, on purpose: the heartbeat path is hot.
type requestState struct {
	sw statusWriter
	id string
	// route is the mux template of the matched route ("" when none).
	route string
	// userID is the caller's, as soon as a token names them (for the
	// logs); ref and presence are set once the session was checked.
	userID   int64
	ref      presence.SessionRef
	presence presence.Status
}

type stateKey struct{}

// stateOf returns the state of a request that went through requestID.
func stateOf(r *http.Request) *requestState {
	st, _ := r.Context().Value(stateKey{}).(*requestState)
	if st == nil {
		// Only a handler called without the middleware chain gets here;
		// a throwaway state keeps it working.
		st = &requestState{}
	}
	return st
}

// statusWriter remembers the status of the response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// requestID gives the request an ID (a sane incoming X-Request-ID, else a new
// one), echoes it in the response and creates the request state.
func (s *server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &requestState{sw: statusWriter{ResponseWriter: w}}
		st.id = r.Header.Get("X-Request-ID")
		if !validRequestID(st.id) {
			st.id = s.idPrefix + "-" + strconv.FormatUint(s.idSeq.Add(1), 10)
		}
		w.Header().Set("X-Request-ID", st.id)
		if s.isDraining() {
			// net/http closes the connection after this response.
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(&st.sw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	})
}

// validRequestID accepts 1 to 64 characters of [A-Za-z0-9-_.]: enough for
// UUIDs and the IDs of common proxies, and nothing that could forge a log
// line.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// recoverPanics turns a panic into a logged 500. A panic is a bug: no input
// may cause one. http.ErrAbortHandler is passed on, so that net/http breaks
// the connection as the handler asked.
func (s *server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			st := stateOf(r)
			s.log.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
				slog.String("request_id", st.id),
				slog.String("error", fmt.Sprint(p)),
				slog.String("stack", string(debug.Stack())))
			if st.sw.status != 0 {
				// Part of the response is out: break it rather than let it
				// end looking complete.
				panic(http.ErrAbortHandler)
			}
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: msgInternal})
		}()
		next.ServeHTTP(w, r)
	})
}

// observe records the request metrics and writes the access log line.
func (s *server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateOf(r)
		start := time.Now()
		s.metrics.HTTPRequestsInFlight.Inc()
		completed := false
		// Deferred without recover, so that a panic is measured here and
		// still reaches recoverPanics with its stack intact.
		defer func() {
			s.metrics.HTTPRequestsInFlight.Dec()
			elapsed := time.Since(start)
			status := st.sw.status
			switch {
			case status == 0 && !completed:
				status = http.StatusInternalServerError // panicked before answering
			case status == 0:
				status = http.StatusOK // net/http answers 200 for an empty reply
			}
			s.metrics.ObserveHTTP(st.route, r.Method, status, elapsed)
			if !s.log.Enabled(r.Context(), slog.LevelInfo) {
				return
			}
			route := st.route
			if route == "" {
				route = "unmatched" // as the metrics label it
			}
			attrs := make([]slog.Attr, 0, 6)
			attrs = append(attrs,
				slog.String("request_id", st.id),
				slog.String("method", r.Method),
				slog.String("route", route),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000))
			if st.userID != 0 {
				attrs = append(attrs, slog.Int64("user_id", st.userID))
			}
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "http request", attrs...)
		}()
		next.ServeHTTP(w, r)
		completed = true
	})
}

// corsPolicy is the set of origins allowed to call the API from a browser.
type corsPolicy struct {
	any     bool
	origins map[string]bool
}

func newCORSPolicy(origins []string) (corsPolicy, error) {
	p := corsPolicy{origins: map[string]bool{}}
	for _, o := range origins {
		o = strings.TrimSpace(o)
		switch {
		case o == "":
		case o == "*":
			p.any = true
		case strings.HasSuffix(o, "/") || !strings.Contains(o, "://"):
			// An Origin header is scheme://host[:port], never a path: an
			// entry that cannot match anything is a configuration mistake.
			return corsPolicy{}, fmt.Errorf("httpapi: CORS origin %q: want scheme://host[:port] or *", o)
		default:
			p.origins[strings.ToLower(o)] = true
		}
	}
	return p, nil
}

func (p corsPolicy) allows(origin string) bool {
	return p.any || p.origins[strings.ToLower(origin)]
}

// CORS answers.
const (
	corsMethods = "GET, POST, PUT, DELETE, OPTIONS"
	corsHeaders = "Authorization, Content-Type, X-Request-ID"
	corsExpose  = "X-Request-ID, Retry-After"
	corsMaxAge  = "600"
)

// corsHeaders answers preflight requests and marks the responses to allowed
// origins. The allowed origin is echoed (never "*"), with Vary: Origin, so
// caches keep one answer per origin. No credentials are involved: the API
// uses bearer tokens, not cookies.
func (s *server) corsHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		allowed := s.cors.allows(origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			stateOf(r).route = "preflight"
			if !allowed {
				writeJSON(w, http.StatusForbidden, errorBody{Error: "Origin not allowed"})
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", corsMethods)
			h.Set("Access-Control-Allow-Headers", corsHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", corsExpose)
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody caps request bodies at maxBodyBytes. A declared length over the
// limit is refused before anything is read; a body that grows past it fails
// the read with *http.MaxBytesError, which the error table answers with 413.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: msgTooLarge})
			return
		}
		if r.ContentLength != 0 {
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// withTimeout bounds the Store work of a request.
func (s *server) withTimeout(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// labelled records the matched route's template in the request state, for
// the metrics and the access log.
func (s *server) labelled(label string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stateOf(r).route = label
		next.ServeHTTP(w, r)
	})
}

// authenticate checks the caller of a route by mode and role before the
// handler runs.
func (s *server) authenticate(mode authMode, role roleNeed, next http.HandlerFunc) http.HandlerFunc {
	if mode == public {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r, stateOf(r), mode, role); err != nil {
			s.respondError(w, r, err)
			return
		}
		next(w, r)
	}
}

// authorize verifies the bearer access token of r (or, for authTicket, its
// event-stream ticket) and its session (with Touch for authRefresh,
// CheckSession for authCheck and authTicket, not at all for authToken, whose
// handler does it), then the caller's role, and fills st.
func (s *server) authorize(r *http.Request, st *requestState, mode authMode, role roleNeed) error {
	ctx := r.Context()
	if _, ok := ctx.Deadline(); !ok {
		// A streaming route has no overall deadline; its authentication
		// still gets one.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	var ref presence.SessionRef
	fromTicket := false
	if mode == authTicket {
		var err error
		if ref, fromTicket, err = s.ticketSession(ctx, r); err != nil {
			return err
		}
	}
	if !fromTicket {
		token, err := bearerToken(r)
		if err != nil {
			return err
		}
		claims, err := s.tokens.ParseAccess(token)
		if err != nil {
			return err
		}
		ref = claims.SessionRef
	}
	st.userID = ref.UserID
	var status presence.Status
	var err error
	switch mode {
	case authRefresh:
		status, err = s.store.Touch(ctx, ref)
		s.metrics.ObserveHeartbeat(heartbeatResult(status, err))
	case authCheck, authTicket:
		status, err = s.store.CheckSession(ctx, ref)
	case authToken:
		// The handler makes the Store call.
	}
	if err != nil {
		return err
	}
	if role != anyRole {
		// Only routes with a role pay for loading the user; the role comes
		// from the store, not the token, because roles change.
		u, err := s.store.User(ctx, st.userID)
		if errors.Is(err, presence.ErrNotFound) {
			// Deleted since the session check.
			err = fmt.Errorf("user %d: %w", st.userID, presence.ErrSessionRevoked)
		}
		if err != nil {
			return err
		}
		if !(u.Role == presence.RoleAdmin || role == staffRole && u.Role.CanList()) {
			return errPermissionDenied
		}
	}
	st.ref, st.presence = ref, status
	return nil
}

// heartbeatResult classifies the outcome of a Touch for the metrics. A
// revived session counts as ok: Touch does not tell it apart.
func heartbeatResult(st presence.Status, err error) metrics.HeartbeatResult {
	switch {
	case err == nil && st.Revived:
		return metrics.HeartbeatRevived
	case err == nil:
		return metrics.HeartbeatOK
	case errors.Is(err, presence.ErrSessionRevoked), errors.Is(err, presence.ErrAccountInactive):
		return metrics.HeartbeatRevoked
	}
	return metrics.HeartbeatError
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header
// (the scheme is case-insensitive), errNotAuthenticated when there is no
// bearer header, or an invalid-token error when the header is malformed.
func bearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(strings.TrimSpace(h), " ")
	if h == "" || !strings.EqualFold(scheme, "Bearer") {
		return "", errNotAuthenticated
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", errMalformedAuthHeader
	}
	return token, nil
}
