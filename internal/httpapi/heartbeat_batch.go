package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
	req, err := decodeBatch(r)
	if err != nil {
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

// decodeBatch reads a batch request. A body that is exactly what gateways
// send (see scanBatch) is read by a scanner made for it: decodeJSON's
// generic checks (a token-by-token walk for duplicate members, then
// reflection) were half of presenced's CPU under batch load, for 1000
// two-member objects per call. Anything else, and every error, goes
// through decodeJSON, which then decides and words the refusal.
func decodeBatch(r *http.Request) (batchRequest, error) {
	var req batchRequest
	if r.ContentLength == 0 {
		return req, nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, err
		}
		return req, badRequest("Could not read the request body")
	}
	if ct := r.Header.Get("Content-Type"); ct == "" || ct == "application/json" {
		if sessions, ok := scanBatch(body); ok {
			req.Sessions = sessions
			return req, nil
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	err = decodeJSON(r, &req)
	return req, err
}

// scanBatch reads {"sessions":[{"user_id":<int>,"session_id":"<digits>"},...]}
// with optional white space between tokens, the two members of each object
// in either order, once each, and nothing else: no other member, no escape,
// no duplicate. For such a body decodeJSON would find the same sessions and
// nothing to refuse; ok is false for everything else.
func scanBatch(b []byte) (sessions []batchSessionJSON, ok bool) {
	p := batchScanner{b: b}
	if !p.lit('{') || !p.key("sessions") || !p.lit('[') {
		return nil, false
	}
	sessions = make([]batchSessionJSON, 0, 64)
	if !p.lit(']') {
		for {
			var e batchSessionJSON
			if !p.lit('{') {
				return nil, false
			}
			seenID, seenSID := false, false
			for range 2 {
				switch {
				case !seenID && p.key("user_id"):
					v, ok := p.integer()
					if !ok {
						return nil, false
					}
					e.UserID, seenID = v, true
				case !seenSID && p.key("session_id"):
					v, ok := p.digits()
					if !ok {
						return nil, false
					}
					e.SessionID, seenSID = v, true
				default:
					return nil, false
				}
				if !seenID || !seenSID {
					if !p.lit(',') {
						return nil, false
					}
				}
			}
			if !p.lit('}') {
				return nil, false
			}
			sessions = append(sessions, e)
			if p.lit(']') {
				break
			}
			if !p.lit(',') {
				return nil, false
			}
		}
	}
	if !p.lit('}') {
		return nil, false
	}
	p.space()
	return sessions, p.i == len(p.b)
}

// batchScanner walks a batch body; each method skips white space first and
// consumes its token only when it matches.
type batchScanner struct {
	b []byte
	i int
}

func (p *batchScanner) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *batchScanner) lit(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// key consumes "name" and the colon after it.
func (p *batchScanner) key(name string) bool {
	p.space()
	j := p.i
	if j+len(name)+2 > len(p.b) || p.b[j] != '"' || string(p.b[j+1:j+1+len(name)]) != name || p.b[j+1+len(name)] != '"' {
		return false
	}
	p.i = j + len(name) + 2
	if !p.lit(':') {
		p.i = j
		return false
	}
	return true
}

// integer consumes a JSON integer that fits an int64 (no sign, fraction or
// exponent: anything else is left to decodeJSON).
func (p *batchScanner) integer() (int64, bool) {
	p.space()
	j := p.i
	for j < len(p.b) && j-p.i < 18 && p.b[j] >= '0' && p.b[j] <= '9' {
		j++
	}
	if j == p.i || (p.b[p.i] == '0' && j-p.i > 1) || (j < len(p.b) && (p.b[j] >= '0' && p.b[j] <= '9' || p.b[j] == '.' || p.b[j] == 'e' || p.b[j] == 'E')) {
		return 0, false
	}
	v, err := strconv.ParseInt(string(p.b[p.i:j]), 10, 64)
	if err != nil {
		return 0, false
	}
	p.i = j
	return v, true
}

// digits consumes a string of 1 to maxSessionIDLen decimal digits.
func (p *batchScanner) digits() (string, bool) {
	p.space()
	j := p.i
	if j >= len(p.b) || p.b[j] != '"' {
		return "", false
	}
	k := j + 1
	for k < len(p.b) && p.b[k] >= '0' && p.b[k] <= '9' {
		k++
	}
	if k == j+1 || k-j-1 > maxSessionIDLen || k >= len(p.b) || p.b[k] != '"' {
		return "", false
	}
	p.i = k + 1
	return string(p.b[j+1 : k]), true
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
