package httpapi

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/presence"
)

// testServiceKey is the API key of the gateway the batch tests configure.
const testServiceKey = "gateway-key-0123456789abcdef"

func withServiceKey(c *Config) {
	c.ServiceKeys = []ServiceKey{
		{Name: "other", SHA256: sha256.Sum256([]byte("some-other-service-key"))},
		{Name: "gateway", SHA256: sha256.Sum256([]byte(testServiceKey))},
	}
}

// batch posts body to heartbeat/batch/ with authorization as the
// Authorization header (none when empty).
func (h *harness) batch(authorization string, body any) result {
	h.t.Helper()
	req, err := http.NewRequest("POST", h.url+"/api/users/heartbeat/batch/", strings.NewReader(fmt.Sprint(body)))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return h.send(req)
}

// sessionOf returns the user and session IDs of an access token.
func (h *harness) sessionOf(access string) presence.SessionRef {
	h.t.Helper()
	c, err := h.tokens.ParseAccess(access)
	if err != nil {
		h.t.Fatalf("ParseAccess: %v", err)
	}
	return c.SessionRef
}

func TestHeartbeatBatch(t *testing.T) {
	h := newHarness(t, withServiceKey)
	_, alice := h.userWithLogin("alice", presence.RoleUser)
	_, bob := h.userWithLogin("bob", presence.RoleUser)
	a, b := h.sessionOf(alice.Access), h.sessionOf(bob.Access)
	h.do("POST", "/api/users/logout/", bob.Access, nil).wantStatus(t, http.StatusOK)

	liveKey := fmt.Sprintf("presence:{0}:live:%d:%s", a.UserID, a.SessionID)
	h.mr.FastForward(40 * time.Second)
	if ttl := h.mr.TTL(liveKey); ttl > 21*time.Second {
		t.Fatalf("bad test: TTL of alice's session is %s before the batch", ttl)
	}
	body := fmt.Sprintf(`{"sessions": [{"user_id": %d, "session_id": %q}, {"user_id": %d, "session_id": %q}, {"user_id": 9999, "session_id": "1"}]}`,
		a.UserID, a.SessionID, b.UserID, b.SessionID)
	for _, auth := range []string{"ApiKey " + testServiceKey, "apikey   " + testServiceKey + " "} {
		h.batch(auth, body).want(t, http.StatusOK, fmt.Sprintf(
			`{"refreshed": 1, "unknown": [{"user_id": 9999, "session_id": "1"}], "revoked": [{"user_id": %d, "session_id": %q}]}`,
			b.UserID, b.SessionID))
	}
	if ttl := h.mr.TTL(liveKey); ttl != time.Minute {
		t.Errorf("TTL of alice's session after the batch: got %s, want the full %s", ttl, time.Minute)
	}
	if m := string(h.do("GET", "/metrics", "", nil).body); !strings.Contains(m, `presenced_heartbeats_total{result="revoked"} 4`) || !strings.Contains(m, `presenced_heartbeats_total{result="ok"} 2`) {
		t.Errorf("metrics do not count the unknown and revoked sessions of both batches:\n%s", grepLines(m, "heartbeats_total"))
	}
	// Bob's ended session stays ended: his token still gets 401.
	h.do("POST", "/api/users/heartbeat/", bob.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
}

func TestHeartbeatBatchAuthentication(t *testing.T) {
	body := `{"sessions": [{"user_id": 1, "session_id": "1"}]}`
	h := newHarness(t, withServiceKey)
	_, alice := h.userWithLogin("alice", presence.RoleUser)
	for _, tc := range []struct {
		name, auth, want string
	}{
		{"no header", "", bodyNotAuth},
		{"a user's bearer token", "Bearer " + alice.Access, bodyNotAuth},
		{"wrong key", "ApiKey wrong-key", bodyTokenNotValid},
		{"empty key", "ApiKey ", bodyTokenNotValid},
		{"key as bearer", "Bearer " + testServiceKey, bodyNotAuth},
		{"oversized key", "ApiKey " + strings.Repeat("k", 300), bodyTokenNotValid},
		{"key prefix", "ApiKey " + testServiceKey[:10], bodyTokenNotValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.batch(tc.auth, body).want(t, http.StatusUnauthorized, tc.want)
		})
	}
	t.Run("no keys configured", func(t *testing.T) {
		h := newHarness(t)
		h.batch("ApiKey "+testServiceKey, body).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	})
}

func TestHeartbeatBatchValidation(t *testing.T) {
	h := newHarness(t, withServiceKey)
	entry := `{"user_id": 1, "session_id": "1"}`
	for _, tc := range []struct {
		name, body, want string
	}{
		{"not JSON", `{"sessions": [`, "not valid JSON"},
		{"no sessions", `{}`, "sessions must be a non-empty array"},
		{"empty sessions", `{"sessions": []}`, "sessions must be a non-empty array"},
		{"too many", `{"sessions": [` + strings.Repeat(entry+",", 1000) + entry + `]}`, "at most 1000"},
		{"zero user", `{"sessions": [{"user_id": 0, "session_id": "1"}]}`, "sessions[0]: user_id must be a positive integer"},
		{"session not digits", `{"sessions": [` + entry + `, {"user_id": 2, "session_id": "1:2"}]}`, "sessions[1]"},
		{"session missing", `{"sessions": [{"user_id": 2}]}`, "sessions[0]"},
		{"session as number", `{"sessions": [{"user_id": 2, "session_id": 1}]}`, "want a string"},
		{"session too long", `{"sessions": [{"user_id": 2, "session_id": "` + strings.Repeat("1", 21) + `"}]}`, "sessions[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := h.batch("ApiKey "+testServiceKey, tc.body)
			res.wantStatus(t, http.StatusBadRequest)
			if msg, _ := res.json(t)["error"].(string); !strings.Contains(msg, tc.want) {
				t.Errorf("error: got %q, want it to contain %q", msg, tc.want)
			}
		})
	}
	// Authentication answers before the body is looked at.
	h.batch("ApiKey nope", `{"sessions": [`).want(t, http.StatusUnauthorized, bodyTokenNotValid)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// agreeBatch checks scanBatch against decodeJSON on body: whatever
// scanBatch accepts, decodeJSON accepts with the same sessions.
func agreeBatch(t *testing.T, body string) bool {
	t.Helper()
	fast, ok := scanBatch([]byte(body))
	if !ok {
		return false
	}
	req, _ := http.NewRequest("POST", "/", strings.NewReader(body))
	var slow batchRequest
	if err := decodeJSON(req, &slow); err != nil {
		t.Fatalf("scanBatch accepted %q, decodeJSON refuses it: %v", body, err)
	}
	if fmt.Sprint(fast) != fmt.Sprint(slow.Sessions) || len(fast) != len(slow.Sessions) {
		t.Fatalf("body %q: scanBatch %v, decodeJSON %v", body, fast, slow.Sessions)
	}
	return true
}

func TestScanBatchAgreesWithDecodeJSON(t *testing.T) {
	for _, tc := range []struct {
		body     string
		wantFast bool
	}{
		{`{"sessions":[{"user_id":1,"session_id":"3"},{"user_id":22,"session_id":"10"}]}`, true},
		{" {\n \"sessions\" : [ { \"session_id\" : \"3\" , \"user_id\" : 1 } ] }\n", true},
		{`{"sessions":[]}`, true},
		{`{"sessions":[{"user_id":0,"session_id":"3"}]}`, true}, // refused later, by validation
		{`{"sessions":[{"user_id":1,"user_id":2,"session_id":"3"}]}`, false},
		{`{"sessions":[{"user_id":1,"session_id":"3","x":1}]}`, false},
		{`{"sessions":[{"user_id":1}]}`, false},
		{`{"sessions":[{"user_id":-1,"session_id":"3"}]}`, false},
		{`{"sessions":[{"user_id":1.0,"session_id":"3"}]}`, false},
		{`{"sessions":[{"user_id":1e2,"session_id":"3"}]}`, false},
		{`{"sessions":[{"user_id":01,"session_id":"3"}]}`, false},
		{`{"sessions":[{"user_id":99999999999999999999,"session_id":"3"}]}`, false},
		{`{"sessions":[{"user_id":1,"session_id":"\u0033"}]}`, false},
		{`{"sessions":[{"user_id":1,"session_id":3}]}`, false},
		{`{"sessions":[{"user_id":1,"session_id":"3"}],"sessions":[]}`, false},
		{`{"Sessions":[{"user_id":1,"session_id":"3"}]}`, false},
		{`{"sessions":[{"user_id":1,"session_id":"3"},]}`, false},
		{`{"sessions":[{"user_id":1,"session_id":"3"}]}x`, false},
		{`{"sessions":[{"user_id":1,"session_id":"3"}]`, false},
	} {
		if got := agreeBatch(t, tc.body); got != tc.wantFast {
			t.Errorf("%q: fast path %v, want %v", tc.body, got, tc.wantFast)
		}
	}
	// Mutations of a real body: whatever the scanner takes, decodeJSON
	// takes the same way.
	base := `{"sessions":[{"user_id":12,"session_id":"3"},{"session_id":"45","user_id":6}]}`
	const alphabet = `{}[]":, 0123456789_aeinoudsr\`
	rng := rand.New(rand.NewPCG(3, 5))
	for range 50000 {
		b := []byte(base)
		for range 1 + rng.IntN(3) {
			j := rng.IntN(len(b))
			switch rng.IntN(3) {
			case 0:
				b[j] = alphabet[rng.IntN(len(alphabet))]
			case 1:
				b = append(b[:j], b[j+1:]...)
			default:
				b = append(b[:j], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[j:]...)...)
			}
		}
		agreeBatch(t, string(b))
	}
}

func FuzzScanBatch(f *testing.F) {
	f.Add(`{"sessions":[{"user_id":1,"session_id":"3"}]}`)
	f.Add(` {"sessions": [{"session_id": "3", "user_id": 1}, {"user_id": 2, "session_id": "1"}]} `)
	f.Fuzz(func(t *testing.T, body string) { agreeBatch(t, body) })
}
