package httpapi

import (
	"net/http"
	"time"

	"github.com/presenced/presenced/internal/presence"
)

// setStatusRequest sets or clears a manual status override.
type setStatusRequest struct {
	// Status is away or offline (invisible) to set an override, online to
	// clear it.
	Status presence.OnlineStatus `json:"status"`
	// Until, when given (RFC 3339, in the future), is when the override
	// clears itself; null or absent: no expiry.
	Until *string `json:"until"`
}

// parse validates the request: the status, and the optional expiry.
func (req setStatusRequest) parse(now time.Time) (presence.OnlineStatus, time.Time, error) {
	if req.Status == "" {
		return "", time.Time{}, badRequest("status is required: online, away or offline")
	}
	if !req.Status.Valid() {
		return "", time.Time{}, badRequest("status must be one of online, away, offline")
	}
	if req.Until == nil {
		return req.Status, time.Time{}, nil
	}
	if req.Status == presence.Online {
		return "", time.Time{}, badRequest("until applies to away and offline only (online clears the override)")
	}
	until, err := time.Parse(time.RFC3339Nano, *req.Until)
	if err != nil {
		return "", time.Time{}, badRequest("until must be an RFC 3339 time, like 2026-11-26T18:00:00Z")
	}
	if !until.After(now) {
		return "", time.Time{}, badRequest("until must be in the future")
	}
	return req.Status, until, nil
}

// setMyStatus sets or clears the caller's own manual status.
func (s *server) setMyStatus(w http.ResponseWriter, r *http.Request) {
	s.applyStatus(w, r, stateOf(r).userID, presence.ReasonManual)
}

// setOnlineStatus sets or clears the manual status of the {id} user
// (admin).
func (s *server) setOnlineStatus(w http.ResponseWriter, r *http.Request) {
	id, err := pathUserID(r)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	s.applyStatus(w, r, id, presence.ReasonAdmin)
}

// applyStatus decodes a setStatusRequest, applies it to user id and answers
// the user as of after the change.
func (s *server) applyStatus(w http.ResponseWriter, r *http.Request, id int64, reason presence.Reason) {
	var req setStatusRequest
	if err := decodeJSON(r, &req); err != nil {
		s.respondError(w, r, err)
		return
	}
	status, until, err := req.parse(s.now())
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	u, err := s.store.SetOnlineStatus(r.Context(), id, status, until, reason)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newUserJSON(u))
}
