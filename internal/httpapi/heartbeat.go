package httpapi

import (
	"net/http"

	"github.com/presenced/presenced/internal/presence"
)

type heartbeatRequest struct {
	// Logout ends this session instead of extending it.
	Logout bool `json:"logout"`
	// Active is false when the client reports no user activity (its tab is
	// hidden, its user idle): the session stays live, but the user becomes
	// away once none of their sessions has shown activity for the away
	// period. Absent means true.
	Active *bool `json:"active"`
}

// heartbeat keeps the caller's session live. The hot path: the route
// authenticates the token only (authToken), and the handler makes exactly
// one Store call, chosen by the body: Touch, TouchIdle or EndSession, each of
// which also proves the session is still open. A plain heartbeat is one
// Redis round trip.
func (s *server) heartbeat(w http.ResponseWriter, r *http.Request) {
	st := stateOf(r)
	ctx := r.Context()
	var req heartbeatRequest
	if err := decodeJSON(r, &req); err != nil {
		// Authentication answers before the body does: a revoked session
		// gets its 401 even with a bad body.
		if _, cerr := s.store.CheckSession(ctx, st.ref); cerr != nil {
			err = cerr
		}
		s.respondError(w, r, err)
		return
	}
	if req.Logout {
		if err := s.store.EndSession(ctx, st.ref, presence.ReasonLogout); err != nil {
			s.respondError(w, r, err)
			return
		}
		// The user may still be online through another session: answer
		// their presence after the logout, not this session's.
		statuses, err := s.store.Statuses(ctx, []int64{st.userID})
		if err != nil {
			s.respondError(w, r, err)
			return
		}
		writeHeartbeat(w, true, statuses[st.userID]) // absent (deleted meanwhile): offline
		return
	}
	var status presence.Status
	var err error
	if req.Active != nil && !*req.Active {
		status, err = s.store.TouchIdle(ctx, st.ref)
	} else {
		status, err = s.store.Touch(ctx, st.ref)
	}
	s.metrics.ObserveHeartbeat(heartbeatResult(status, err))
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	writeHeartbeat(w, true, status)
}

// heartbeatStatus answers the caller's presence without refreshing it (the
// route authenticates with CheckSession, whose result this is).
func (s *server) heartbeatStatus(w http.ResponseWriter, r *http.Request) {
	writeHeartbeat(w, false, stateOf(r).presence)
}

// writeHeartbeat answers {"message": "Heartbeat recorded", "online_status",
// "last_seen"} (message only when withMessage). It appends the JSON by hand
// into a stack buffer: this is every client's most frequent request, and
// encoding/json would reflect over a struct for each.
func writeHeartbeat(w http.ResponseWriter, withMessage bool, st presence.Status) {
	online := onlineStatus(st.OnlineStatus)
	if !online.Valid() {
		// Never expected; the general encoder escapes whatever it is.
		writeJSON(w, http.StatusOK, newStatusJSON(st))
		return
	}
	var buf [128]byte
	b := buf[:0]
	if withMessage {
		b = append(b, `{"message":"Heartbeat recorded","online_status":"`...)
	} else {
		b = append(b, `{"online_status":"`...)
	}
	b = append(b, online...)
	b = append(b, `","last_seen":`...)
	b = appendTime(b, st.LastSeen)
	b = append(b, '}')
	writeJSONBytes(w, http.StatusOK, b)
}
