package httpapi

import (
	"fmt"
	"net/http"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/internal/presence"
)

type healthResponse struct {
	Status string `json:"status"`
}

// healthz answers 200 while the process runs; it never touches the store.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, healthResponse{Status: "ok"})
}

// readyz answers 200 when the readiness probe (by default a store PING)
// succeeds within the request timeout, 503 otherwise, and 503 from the
// moment the instance starts draining for shutdown.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.isDraining() {
		s.respondError(w, r, fmt.Errorf("shutting down: %w", errDraining))
		return
	}
	if err := s.ready(r.Context()); err != nil {
		// Whatever the probe says, not ready means 503 (and a warning with
		// the cause), never a 500.
		s.respondError(w, r, fmt.Errorf("readiness probe: %w: %w", presence.ErrUnavailable, err))
		return
	}
	writeJSON(w, http.StatusOK, healthResponse{Status: "ok"})
}

// openAPI serves the OpenAPI document the API is built from.
func (s *server) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(api.OpenAPI())
}
