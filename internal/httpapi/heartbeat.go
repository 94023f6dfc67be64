package httpapi

import (
	"net/http"

	"github.com/presenced/presenced/internal/presence"
)

type heartbeatRequest struct {
	// Logout ends this session instead of extending it.
	Logout bool `json:"logout"`
}

// heartbeat keeps the caller's session live. The hot path: the
// authentication middleware already refreshed the session with Store.Touch
// (one round trip) and left its result in the request state, so a plain
// heartbeat makes no other Store call.
func (s *server) heartbeat(w http.ResponseWriter, r *http.Request) {
	var req heartbeatRequest
	if err := decodeJSON(r, &req); err != nil {
		s.respondError(w, r, err)
		return
	}
	st := stateOf(r)
	status := st.presence
	if req.Logout {
		ctx := r.Context()
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
		status = statuses[st.userID] // absent (deleted meanwhile): offline
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
