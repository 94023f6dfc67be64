package httpapi

import (
	"net/http"
	"strings"

	"github.com/gorilla/mux"
)

// authMode is how a route authenticates its caller.
type authMode int

const (
	// public routes need no token and ignore any Authorization header.
	public authMode = iota
	// authRefresh verifies the access token and refreshes the session's
	// presence with Store.Touch: the one Store call of the heartbeat.
	authRefresh
	// authCheck verifies the access token and checks with Store.CheckSession
	// that its session is open, without refreshing presence.
	authCheck
	// authToken verifies the access token only: the handler makes the one
	// Store call that both checks the session and does the work (the
	// heartbeat, whose body says whether to Touch, TouchIdle or end the
	// session). Only for routes of anyRole.
	authToken
	// authTicket is authCheck with, for browsers' EventSource (which cannot
	// send headers), a single-use `?ticket=` accepted instead of the bearer
	// header.
	authTicket
)

// roleNeed is the role a route requires once the caller is authenticated.
type roleNeed int

const (
	anyRole   roleNeed = iota
	staffRole          // admin or moderator
	adminRole
)

// route is one operation of the API.
type route struct {
	method string
	// path is relative to the route's prefix (none for the operations
	// routes); API paths end with "/".
	path string
	auth authMode
	role roleNeed
	// stream routes run without the per-request timeout: they bound each
	// Store call themselves (authorize bounds the authentication).
	stream  bool
	handler http.HandlerFunc
}

// idPattern is the mux form of {id}: digits only, so that "online" and
// other words are never taken for an ID.
const idPattern = "{id:[0-9]+}"

// apiPrefixes are the prefixes every API route is served under: the OffChat
// frontend uses both.
var apiPrefixes = [...]string{"/api/users", "/api/auth"}

// apiRoutes lists every operation served under the API prefixes, in match
// order: mux tries routes one by one, so the hot path comes first.
func (s *server) apiRoutes() []route {
	return []route{
		{method: http.MethodPost, path: "/heartbeat/", auth: authToken, handler: s.heartbeat},
		{method: http.MethodGet, path: "/heartbeat/", auth: authCheck, handler: s.heartbeatStatus},
		{method: http.MethodPost, path: "/heartbeat/batch/", auth: public, handler: s.heartbeatBatch}, // service key: see heartbeatBatch
		{method: http.MethodPost, path: "/status/", auth: authRefresh, handler: s.statuses},
		{method: http.MethodPost, path: "/me/status/", auth: authRefresh, handler: s.setMyStatus},

		{method: http.MethodPost, path: "/register/", auth: public, handler: s.register},
		{method: http.MethodPost, path: "/login/", auth: public, handler: s.login},
		// logout authenticates in the handler: a bad access token falls back
		// to the refresh token of the body (see logout).
		{method: http.MethodPost, path: "/logout/", auth: public, handler: s.logout},
		{method: http.MethodPost, path: "/logout-all-devices/", auth: authCheck, handler: s.logoutAll},
		{method: http.MethodPost, path: "/refresh/", auth: public, handler: s.refresh},
		{method: http.MethodPost, path: "/verify/", auth: public, handler: s.verify},
		{method: http.MethodGet, path: "/profile/", auth: authRefresh, handler: s.profile},

		{method: http.MethodGet, path: "/admin/users/", auth: authRefresh, role: staffRole, handler: s.listUsers},
		{method: http.MethodPost, path: "/admin/users/", auth: authRefresh, role: adminRole, handler: s.createUser},
		// online/ is its own route: {id} takes digits only (see idPattern).
		{method: http.MethodGet, path: "/admin/users/online/", auth: authRefresh, role: staffRole, handler: s.onlineUsers},
		{method: http.MethodGet, path: "/admin/users/{id}/", auth: authRefresh, role: staffRole, handler: s.getUser},
		{method: http.MethodPut, path: "/admin/users/{id}/", auth: authRefresh, role: adminRole, handler: s.updateUser},
		{method: http.MethodDelete, path: "/admin/users/{id}/", auth: authRefresh, role: adminRole, handler: s.deleteUser},
		{method: http.MethodPost, path: "/admin/users/{id}/approve/", auth: authRefresh, role: adminRole, handler: s.approveUser},
		{method: http.MethodPost, path: "/admin/users/{id}/suspend/", auth: authRefresh, role: adminRole, handler: s.suspendUser},
		{method: http.MethodPost, path: "/admin/users/{id}/ban/", auth: authRefresh, role: adminRole, handler: s.banUser},
		{method: http.MethodPost, path: "/admin/users/{id}/activate/", auth: authRefresh, role: adminRole, handler: s.activateUser},
		{method: http.MethodPost, path: "/admin/users/{id}/force-logout/", auth: authRefresh, role: adminRole, handler: s.forceLogout},
		{method: http.MethodGet, path: "/admin/users/{id}/online-status/", auth: authRefresh, role: staffRole, handler: s.onlineStatus},
		{method: http.MethodPost, path: "/admin/users/{id}/set-online-status/", auth: authRefresh, role: adminRole, handler: s.setOnlineStatus},
		{method: http.MethodGet, path: "/admin/events/", auth: authTicket, role: staffRole, stream: true, handler: s.events},
		{method: http.MethodPost, path: "/admin/events/ticket/", auth: authRefresh, role: staffRole, handler: s.eventTicket},
		{method: http.MethodGet, path: "/all-users/", auth: authRefresh, role: staffRole, stream: true, handler: s.allUsers},
	}
}

// opsRoutes lists the operations routes, served without prefix or
// authentication.
func (s *server) opsRoutes() []route {
	return []route{
		{method: http.MethodGet, path: "/healthz", handler: s.healthz},
		{method: http.MethodGet, path: "/readyz", handler: s.readyz},
		{method: http.MethodGet, path: "/metrics", handler: s.metrics.Handler().ServeHTTP},
		{method: http.MethodGet, path: "/api/openapi.yaml", handler: s.openAPI},
	}
}

// router builds the router of every route.
func (s *server) router() *mux.Router {
	r := mux.NewRouter()
	// No redirects: a client that is redirected after a POST loses its
	// body, so paths with and without the trailing slash are both
	// registered, and unclean paths ("//", "..") simply do not match.
	r.StrictSlash(false)
	r.SkipClean(true)
	r.NotFoundHandler = http.HandlerFunc(s.notFound)

	// One subrouter per prefix: a request under the other prefix is turned
	// away by one prefix check instead of by every route of the table.
	for _, prefix := range apiPrefixes {
		sub := r.PathPrefix(prefix).Subrouter()
		s.addRoutes(sub, prefix, s.apiRoutes())
	}
	s.addRoutes(r, "", s.opsRoutes())
	if s.dashboard != nil {
		// The dashboard serves its own files, methods and headers.
		r.PathPrefix("/admin").Handler(s.labelled("/admin/", s.dashboard))
	}
	return r
}

// addRoutes adds rts to r, whose routes live under prefix, each path with
// and without its trailing slash. After a path's methods comes a catch-all
// route for the same path that answers 405 with an Allow header (mux's own
// 405 handler does not know which methods the path has, so it is never used).
func (s *server) addRoutes(r *mux.Router, prefix string, rts []route) {
	var paths []string
	byPath := map[string][]route{}
	for _, rt := range rts {
		if _, ok := byPath[rt.path]; !ok {
			paths = append(paths, rt.path)
		}
		byPath[rt.path] = append(byPath[rt.path], rt)
	}
	for _, p := range paths {
		// The metric label is the template of the slash form, as the
		// OpenAPI document spells it, so both forms count as one route.
		label := prefix + p
		full := strings.ReplaceAll(p, "{id}", idPattern) // relative to r's prefix
		forms := []string{full}
		if trimmed := strings.TrimSuffix(full, "/"); trimmed != full {
			forms = append(forms, trimmed)
		}
		allow := make([]string, 0, len(byPath[p]))
		for _, rt := range byPath[p] {
			allow = append(allow, rt.method)
		}
		notAllowed := s.labelled(label, methodNotAllowed(strings.Join(allow, ", ")))
		for _, form := range forms {
			for _, rt := range byPath[p] {
				r.Handle(form, s.wrapRoute(label, rt)).Methods(rt.method)
			}
			r.Handle(form, notAllowed)
		}
	}
}

// wrapRoute applies the route-level middleware: the route label, the
// per-request timeout, then authentication and role.
func (s *server) wrapRoute(label string, rt route) http.Handler {
	var h http.Handler = s.authenticate(rt.auth, rt.role, rt.handler)
	if !rt.stream {
		h = s.withTimeout(h)
	}
	return s.labelled(label, h)
}
