package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
)

// ServiceKey is the credential of a trusted service (role "service"): a
// websocket gateway that holds its clients' connections and heartbeats for
// them with POST heartbeat/batch/. Only the SHA-256 of the key is kept.
type ServiceKey struct {
	// Name identifies the service in logs.
	Name string
	// SHA256 is the digest of the key the service sends as
	// "Authorization: ApiKey <key>".
	SHA256 [sha256.Size]byte
}

// Limits of a batch request.
const (
	// maxServiceKeyLen bounds the presented key, so hashing it is cheap.
	maxServiceKeyLen = 256
	// maxSessionIDLen: session IDs are decimal counters (HINCRBY).
	maxSessionIDLen = 20
)

// sessionBatcher is the Store side of heartbeat/batch/;
// *redisstore.Store implements it.
type sessionBatcher interface {
	TouchSessions(ctx context.Context, refs []presence.SessionRef) (redisstore.BatchResult, error)
}

type batchSessionJSON struct {
	UserID    int64  `json:"user_id"`
	SessionID string `json:"session_id"`
}

type batchRequest struct {
	Sessions []batchSessionJSON `json:"sessions"`
}

type batchResponse struct {
	Refreshed int                `json:"refreshed"`
	Unknown   []batchSessionJSON `json:"unknown"`
	Revoked   []batchSessionJSON `json:"revoked"`
}

// heartbeatBatch refreshes up to redisstore.MaxBatch sessions for a trusted
// service in one Redis pipeline (see Store.TouchSessions), and answers which
// sessions are unknown (no such user) or revoked (ended, never existed, or
// the account is not active), so the gateway can close those connections.
// It authenticates with a service key, never a user token; the route is
// public to the middleware for that reason.
func (s *server) heartbeatBatch(w http.ResponseWriter, r *http.Request) {
	if _, err := s.serviceCaller(r); err != nil {
		s.respondError(w, r, err)
		return
	}
	batcher, ok := s.store.(sessionBatcher)
	if !ok {
		// Only a Store without batches (none in production) gets here.
		s.notFound(w, r)
		return
	}
	var req batchRequest
	if err := decodeJSON(r, &req); err != nil {
		s.respondError(w, r, err)
		return
	}
	switch {
	case len(req.Sessions) == 0:
		s.respondError(w, r, badRequest("sessions must be a non-empty array of {user_id, session_id}"))
		return
	case len(req.Sessions) > redisstore.MaxBatch:
		s.respondError(w, r, badRequest(fmt.Sprintf("sessions may hold at most %d entries", redisstore.MaxBatch)))
		return
	}
	refs := make([]presence.SessionRef, len(req.Sessions))
	for i, e := range req.Sessions {
		if e.UserID <= 0 || !validSessionID(e.SessionID) {
			s.respondError(w, r, badRequest(fmt.Sprintf(
				"sessions[%d]: user_id must be a positive integer and session_id a string of 1 to %d digits", i, maxSessionIDLen)))
			return
		}
		refs[i] = presence.SessionRef{UserID: e.UserID, SessionID: e.SessionID}
	}
	res, err := batcher.TouchSessions(r.Context(), refs)
	if err != nil {
		s.metrics.HeartbeatsTotal.WithLabelValues(string(metrics.HeartbeatError)).Add(float64(len(refs)))
		s.respondError(w, r, err)
		return
	}
	s.metrics.HeartbeatsTotal.WithLabelValues(string(metrics.HeartbeatOK)).Add(float64(res.Refreshed))
	s.metrics.HeartbeatsTotal.WithLabelValues(string(metrics.HeartbeatRevoked)).Add(float64(len(res.Unknown) + len(res.Revoked)))
	writeJSON(w, http.StatusOK, batchResponse{
		Refreshed: res.Refreshed, Unknown: batchRefsJSON(res.Unknown), Revoked: batchRefsJSON(res.Revoked),
	})
}

// serviceCaller authenticates r by its "Authorization: ApiKey <key>" header
// (scheme case-insensitive) and returns the service's name. The key's
// SHA-256 is compared with every configured digest in constant time, all of
// them, so the time taken says nothing about which one nearly matched.
// errNotAuthenticated without an ApiKey header (a bearer token is not a
// service credential); an invalid-token error for an unknown key.
func (s *server) serviceCaller(r *http.Request) (string, error) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, key, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "ApiKey") {
		return "", errNotAuthenticated
	}
	key = strings.TrimSpace(key)
	if key == "" || len(key) > maxServiceKeyLen {
		return "", fmt.Errorf("service key: %w", auth.ErrInvalidToken)
	}
	sum := sha256.Sum256([]byte(key))
	match := -1
	for i, k := range s.serviceKeys {
		if subtle.ConstantTimeCompare(sum[:], k.SHA256[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", fmt.Errorf("service key: %w", auth.ErrInvalidToken)
	}
	return s.serviceKeys[match].Name, nil
}

func validSessionID(sid string) bool {
	if sid == "" || len(sid) > maxSessionIDLen {
		return false
	}
	for i := 0; i < len(sid); i++ {
		if sid[i] < '0' || sid[i] > '9' {
			return false
		}
	}
	return true
}

// batchRefsJSON encodes refs as a JSON array, [] when empty (never null).
func batchRefsJSON(refs []presence.SessionRef) []batchSessionJSON {
	out := make([]batchSessionJSON, len(refs))
	for i, ref := range refs {
		out[i] = batchSessionJSON{UserID: ref.UserID, SessionID: ref.SessionID}
	}
	return out
}
