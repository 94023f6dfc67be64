package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/presenced/presenced/internal/presence"
)

// fuzzContentTypes are the Content-Type headers the fuzzer picks from.
var fuzzContentTypes = []string{"application/json", "", "text/plain", "application/json; charset=utf-8", "application/problem+json", "multipart/form-data; boundary=x"}

// sessionEnders are the routes after which the fuzzing admin may have lost
// their session (or the target user), so the fixture is rebuilt.
var sessionEnders = map[string]bool{
	"/logout/": true, "/logout-all-devices/": true, "/heartbeat/": true,
	"/admin/users/{id}/": true, "/admin/users/{id}/suspend/": true, "/admin/users/{id}/ban/": true, "/admin/users/{id}/force-logout/": true,
}

// FuzzAPIBodies sends arbitrary bodies, with various Content-Types, to every
// route of the real router (except the endless event stream), as an admin,
// on the real store (miniredis). Whatever the body: never a 5xx, always a
// JSON answer, and every refusal a JSON object with "error" or "detail".
func FuzzAPIBodies(f *testing.F) {
	handler, d := newTestAPI(f)
	ctx := context.Background()
	hash, err := d.hasher.Hash(testPassword)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := d.store.CreateUser(ctx, presence.NewUser{Username: "fuzzadmin", Role: presence.RoleAdmin, Status: presence.StatusActive, PasswordHash: hash}); err != nil {
		f.Fatal(err)
	}
	login := func(tb testing.TB) string {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/api/users/login/", strings.NewReader(`{"username":"fuzzadmin","password":"`+testPassword+`"}`))
		handler.ServeHTTP(rec, req)
		var out struct{ Tokens struct{ Access string } }
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
			tb.Fatalf("fuzz fixture login: %d %s", rec.Code, rec.Body)
		}
		return out.Tokens.Access
	}
	var targetID int64
	made := 0
	target := func(tb testing.TB) {
		for {
			made++
			u, err := d.store.CreateUser(ctx, presence.NewUser{Username: "target-" + strconv.Itoa(made), Role: presence.RoleUser, Status: presence.StatusActive, PasswordHash: hash})
			if err == nil {
				targetID = u.ID
				return
			}
			if !errors.Is(err, presence.ErrUsernameTaken) {
				tb.Fatal(err)
			}
		}
	}
	token := login(f)
	target(f)

	var routes []route
	for _, rt := range (&server{}).apiRoutes() {
		if rt.path == "/admin/events/" {
			continue // an event stream never ends by itself
		}
		routes = append(routes, rt)
	}
	bodies := map[string]string{
		"/register/":                           `{"username":"newuser","password":"long-password","email":"a@b.c"}`,
		"/login/":                              `{"username":"fuzzadmin","password":"wrong-password"}`,
		"/refresh/":                            `{"refresh":"eyJhbGciOiJIUzI1NiJ9.e30.x"}`,
		"/verify/":                             `{"token":"x"}`,
		"/status/":                             `{"ids":[1,2,3]}`,
		"/me/status/":                          `{"status":"away","until":"2030-01-01T00:00:00Z"}`,
		"/heartbeat/":                          `{"active":false}`,
		"/heartbeat/batch/":                    `{"sessions":[{"user_id":1,"session_id":"1"}]}`,
		"/admin/users/":                        `{"username":"made","password":"long-password","role":"moderator"}`,
		"/admin/users/{id}/":                   `{"first_name":"F","role":"moderator","status":"active"}`,
		"/admin/users/{id}/set-online-status/": `{"status":"offline"}`,
		"/logout/":                             `{"refresh":"x"}`,
	}
	for i, rt := range routes {
		f.Add(uint8(i), []byte(bodies[rt.path]), uint8(0))
		f.Add(uint8(i), []byte(`{"a":1,"a":2}`), uint8(0))
		f.Add(uint8(i), []byte(`[]`), uint8(1))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte, ct uint8) {
		rt := routes[int(which)%len(routes)]
		path := "/api/users" + strings.ReplaceAll(rt.path, "{id}", strconv.FormatInt(targetID, 10))
		req := httptest.NewRequest(rt.method, path, bytes.NewReader(body))
		if c := fuzzContentTypes[int(ct)%len(fuzzContentTypes)]; c != "" {
			req.Header.Set("Content-Type", c)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)

		if rec.Code >= 500 {
			t.Fatalf("%s %s with body %q: %d %s", rt.method, path, body, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusNoContent {
			if got := rec.Header().Get("Content-Type"); got != "application/json" {
				t.Fatalf("%s %s with body %q: Content-Type %q", rt.method, path, body, got)
			}
			var v any
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatalf("%s %s with body %q: answer is not JSON: %s", rt.method, path, body, rec.Body)
			}
			if rec.Code >= 400 {
				m, _ := v.(map[string]any)
				e, _ := m["error"].(string)
				dt, _ := m["detail"].(string)
				if e == "" && dt == "" {
					t.Fatalf("%s %s with body %q: %d without a message: %s", rt.method, path, body, rec.Code, rec.Body)
				}
			}
		}
		if sessionEnders[rt.path] {
			ref, err := d.tokens.ParseAccess(token)
			if err == nil {
				_, err = d.store.CheckSession(ctx, ref.SessionRef)
			}
			if err != nil {
				token = login(t)
			}
			if _, err := d.store.User(ctx, targetID); err != nil {
				target(t)
			}
		}
	})
}
