// Package httpapi is presenced's HTTP API: the router (every route is listed
// in routes.go), the middleware chain (middleware.go), one file of handlers
// per resource, and the one table that turns errors into responses
// (errors.go).
//
// Handlers are methods on server, which holds the dependencies. Each decodes
// the request, validates it, calls the presence.Store and encodes the answer;
// nothing else. Authentication is declared per route (public, authRefresh,
// authCheck, plus a role requirement) and done by middleware before the
// handler runs, so a handler that needs the caller finds them in the request
// state.
//
// The hot path is POST heartbeat/: its one Store call (Touch) is made by the
// authentication middleware, whose result the handler reuses, so a heartbeat
// costs one Redis round trip.
package httpapi
