package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// hungAfter is how long the test client waits for any answer: past it, a
// request counts as hung, which fails every scenario.
const hungAfter = 15 * time.Second

// httpClient is shared by the scenarios' clients: keep-alive connections,
// enough of them for the load goroutines.
var httpClient = &http.Client{
	Timeout: hungAfter,
	Transport: &http.Transport{
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	},
}

// reply is one HTTP exchange as a client saw it.
type reply struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
	err    error // transport error: no status
}

// call sends one request to base+path. body is nil or a value encoded as
// JSON; token, when set, goes in a bearer header.
func call(method, url, token string, body any) reply {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		panic(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := httpClient.Do(req)
	if err != nil {
		return reply{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, body: b, took: time.Since(start), err: err}
	return r
}

// json decodes the body as an object (nil when it is not one).
func (r reply) json() map[string]any {
	var m map[string]any
	if json.Unmarshal(r.body, &m) != nil {
		return nil
	}
	return m
}

func (r reply) String() string {
	if r.err != nil {
		return fmt.Sprintf("error %v after %v", r.err, r.took)
	}
	return fmt.Sprintf("%d %s after %v", r.status, strings.TrimSpace(string(r.body)), r.took.Round(time.Millisecond))
}

// jsonError reports what is wrong with an error reply, "" when it is a JSON
// object with an "error" or "detail" string, as every error of the API must
// be.
func (r reply) jsonError() string {
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		return fmt.Sprintf("Content-Type %q, want application/json", ct)
	}
	m := r.json()
	if m == nil {
		return "body is not a JSON object"
	}
	if s, _ := m["error"].(string); s != "" {
		return ""
	}
	if s, _ := m["detail"].(string); s != "" {
		return ""
	}
	return `body has neither "error" nor "detail"`
}

// account is a user the scenario created, with the tokens of its current
// session.
type account struct {
	id      int64
	name    string
	access  string
	refresh string
}

// admin is the bootstrap admin's session on a node.
func adminToken(t *testing.T, base string) string {
	t.Helper()
	a, _ := login(t, base, adminName, adminPassword)
	return a
}

// login logs name in and returns the tokens; it fails the test on anything
// but 200.
func login(t *testing.T, base, name, password string) (access, refresh string) {
	t.Helper()
	r := call("POST", base+"/api/users/login/", "", map[string]string{"username": name, "password": password})
	if r.status != http.StatusOK {
		t.Fatalf("login %s: %v", name, r)
	}
	var out struct {
		Tokens struct{ Access, Refresh string } `json:"tokens"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.Tokens.Access == "" {
		t.Fatalf("login %s: no tokens in %s", name, r.body)
	}
	return out.Tokens.Access, out.Tokens.Refresh
}

// createUsers creates n active users named prefix0..prefixN-1 through the
// admin API.
func createUsers(t *testing.T, base, admin, prefix string, n int) []*account {
	t.Helper()
	out := make([]*account, n)
	for i := range out {
		name := fmt.Sprintf("%s%d", prefix, i)
		r := call("POST", base+"/api/users/admin/users/", admin, map[string]any{
			"username": name, "password": userPassword, "status": "active", "email": name + "@example.com",
		})
		if r.status != http.StatusCreated {
			t.Fatalf("create %s: %v", name, r)
		}
		out[i] = &account{id: int64(r.json()["id"].(float64)), name: name}
	}
	return out
}

// serverTime parses a time of the API.
func serverTime(v any) time.Time {
	s, _ := v.(string)
	tm, _ := time.Parse(time.RFC3339Nano, s)
	return tm
}
