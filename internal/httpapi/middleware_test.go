package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/presence"
)

func TestPrefixesAndTrailingSlash(t *testing.T) {
	h := newHarness(t)
	u, tok := h.userWithLogin("alice", presence.RoleAdmin)
	for _, prefix := range []string{"/api/users/", "/api/auth/"} {
		for _, slash := range []string{"/", ""} {
			t.Run(prefix+slash, func(t *testing.T) {
				h.do("POST", prefix+"login"+slash, "", map[string]string{"username": "alice", "password": testPassword}).wantStatus(t, http.StatusOK)
				h.do("POST", prefix+"heartbeat"+slash, tok.Access, nil).wantStatus(t, http.StatusOK)
				h.do("GET", prefix+"profile"+slash, tok.Access, nil).wantStatus(t, http.StatusOK)
				h.do("GET", fmt.Sprintf("%sadmin/users/%d%s", prefix, u.ID, slash), tok.Access, nil).wantStatus(t, http.StatusOK)
				h.do("GET", prefix+"admin/users/online"+slash, tok.Access, nil).wantStatus(t, http.StatusOK)
			})
		}
	}
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/", "/nowhere", "/api/users/nowhere/", "/api/users/admin/users/abc/", "/api/usersx/login/",
		"/api/users//login/", "/api/users/login//", "/api/users/admin/users/-1/", "/healthz/"} {
		t.Run("GET "+path, func(t *testing.T) {
			h.do("GET", path, "", nil).want(t, http.StatusNotFound, `{"error":"Not found"}`)
		})
	}
	for _, tc := range []struct{ method, path, allow string }{
		{"DELETE", "/api/users/login/", "POST"},
		{"GET", "/api/auth/login", "POST"},
		{"PUT", "/api/users/heartbeat", "POST, GET"},
		{"OPTIONS", "/api/users/heartbeat/", "POST, GET"},
		{"PATCH", "/api/users/admin/users/5/", "GET, PUT, DELETE"},
		{"GET", "/api/users/admin/users/5/approve/", "POST"},
		{"POST", "/healthz", "GET"},
		{"BREW", "/metrics", "GET"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			res := h.do(tc.method, tc.path, "", nil)
			res.want(t, http.StatusMethodNotAllowed, `{"error":"Method not allowed"}`)
			if got := res.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow: got %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	h := newHarness(t)
	generated := regexp.MustCompile(`^[0-9a-f]{8}-[0-9]+$`)
	ids := map[string]bool{}
	for _, tc := range []struct{ sent, want string }{
		{"abc-123_X.y", "abc-123_X.y"},
		{"", ""},
		{strings.Repeat("a", 65), ""},
		{"has space", ""},
		{"new\\line", ""},
	} {
		req, _ := http.NewRequest("GET", h.url+"/healthz", nil)
		if tc.sent != "" {
			req.Header.Set("X-Request-ID", tc.sent)
		}
		got := h.send(req).header.Get("X-Request-ID")
		switch {
		case tc.want != "" && got != tc.want:
			t.Errorf("sent %q: got %q, want it echoed", tc.sent, got)
		case tc.want == "" && !generated.MatchString(got):
			t.Errorf("sent %q: got %q, want a generated id", tc.sent, got)
		}
		if ids[got] && tc.want == "" {
			t.Errorf("generated id %q twice", got)
		}
		ids[got] = true
	}
}

func TestCORS(t *testing.T) {
	preflight := func(h *harness, origin string) result {
		req, _ := http.NewRequest("OPTIONS", h.url+"/api/users/heartbeat/", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		return h.send(req)
	}
	simple := func(h *harness, origin string) result {
		req, _ := http.NewRequest("GET", h.url+"/healthz", nil)
		req.Header.Set("Origin", origin)
		return h.send(req)
	}

	t.Run("allowed origin", func(t *testing.T) {
		h := newHarness(t)
		res := preflight(h, "https://app.example")
		if res.status != http.StatusNoContent {
			t.Fatalf("preflight: got %d %s, want 204", res.status, res.body)
		}
		for k, want := range map[string]string{
			"Access-Control-Allow-Origin":  "https://app.example",
			"Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
			"Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-ID",
			"Access-Control-Max-Age":       "600",
			"Vary":                         "Origin",
		} {
			if got := res.header.Get(k); got != want {
				t.Errorf("%s: got %q, want %q", k, got, want)
			}
		}
		res = simple(h, "https://app.example")
		if got := res.header.Get("Access-Control-Allow-Origin"); got != "https://app.example" || res.status != http.StatusOK {
			t.Errorf("simple request: status %d, Access-Control-Allow-Origin %q", res.status, got)
		}
	})

	t.Run("disallowed origin", func(t *testing.T) {
		h := newHarness(t)
		res := preflight(h, "https://evil.example")
		res.want(t, http.StatusForbidden, `{"error":"Origin not allowed"}`)
		if got := res.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Access-Control-Allow-Origin: got %q, want none", got)
		}
		res = simple(h, "https://evil.example")
		if got := res.header.Get("Access-Control-Allow-Origin"); got != "" || res.status != http.StatusOK {
			t.Errorf("simple request: status %d, Access-Control-Allow-Origin %q; want 200 and none", res.status, got)
		}
	})

	t.Run("any origin", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.CORSOrigins = []string{"*"} })
		res := preflight(h, "http://localhost:3000")
		if got := res.header.Get("Access-Control-Allow-Origin"); res.status != http.StatusNoContent || got != "http://localhost:3000" {
			t.Errorf("preflight: status %d, Access-Control-Allow-Origin %q", res.status, got)
		}
	})

	t.Run("bad configuration", func(t *testing.T) {
		_, d := newTestAPI(t)
		for _, o := range []string{"app.example", "https://app.example/"} {
			if _, err := New(Config{Store: d.store, Tokens: d.tokens, Hasher: d.hasher, Metrics: d.metrics, CORSOrigins: []string{o}}); err == nil {
				t.Errorf("CORS origin %q: got no error", o)
			}
		}
	})
}

// bodyRoute is a POST or PUT route and the token it needs.
type bodyRoute struct {
	method, path, token string
}

// bodyRoutes lists every route that takes a body.
func bodyRoutes(t *testing.T, h *harness) []bodyRoute {
	t.Helper()
	_, admin := h.userWithLogin("admin", presence.RoleAdmin)
	target := h.user("target", presence.RoleUser, presence.StatusActive)
	id := fmt.Sprintf("/api/users/admin/users/%d/", target.ID)
	var out []bodyRoute
	for _, p := range []string{"register/", "login/", "refresh/", "verify/"} {
		out = append(out, bodyRoute{"POST", "/api/users/" + p, ""})
	}
	for _, p := range []string{"logout/", "logout-all-devices/", "heartbeat/", "status/", "admin/users/"} {
		out = append(out, bodyRoute{"POST", "/api/users/" + p, admin.Access})
	}
	out = append(out, bodyRoute{"PUT", id, admin.Access})
	for _, a := range []string{"approve/", "suspend/", "ban/", "activate/", "force-logout/"} {
		out = append(out, bodyRoute{"POST", id + a, admin.Access})
	}
	return out
}

func TestBadBodies(t *testing.T) {
	h := newHarness(t)
	routes := bodyRoutes(t, h)
	big := `{"pad":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	for _, tc := range []struct {
		name, body, contentType string
		chunked                 bool
		status                  int
		want                    string
	}{
		{"malformed", `{"a":`, "", false, 400, `{"error":"Request body is not valid JSON"}`},
		{"array", `[{"a":1}]`, "", false, 400, `{"error":"Request body must be a JSON object"}`},
		{"null", `null`, "", false, 400, `{"error":"Request body must be a JSON object"}`},
		{"string", `"x"`, "", false, 400, `{"error":"Request body must be a JSON object"}`},
		{"number", ` 1`, "", false, 400, `{"error":"Request body must be a JSON object"}`},
		{"two objects", `{} {}`, "", false, 400, `{"error":"Request body must hold a single JSON object"}`},
		{"trailing garbage", `{}x`, "", false, 400, `{"error":"Request body must hold a single JSON object"}`},
		{"duplicate key", `{"a":1,"a":2}`, "", false, 400, `{"error":"Duplicate member \"a\" in the request body"}`},
		{"duplicate key, other case", `{"token":"a","TOKEN":"b"}`, "", false, 400, `{"error":"Duplicate member \"TOKEN\" in the request body"}`},
		{"duplicate key, folded", `{"ids":[1],"idſ":[2]}`, "", false, 400, `{"error":"Duplicate member \"idſ\" in the request body"}`},
		{"nested duplicate key", `{"x":[{"b":1,"b":2}]}`, "", false, 400, `{"error":"Duplicate member \"b\" in the request body"}`},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "", false, 400, `{"error":"Request body is not valid UTF-8"}`},
		{"not JSON content type", `{}`, "text/plain", false, 400, `{"error":"Content-Type must be application/json"}`},
		{"too large", big, "", false, 413, `{"error":"Request body too large (limit 64 KiB)"}`},
		{"too large, chunked", big, "", true, 413, `{"error":"Request body too large (limit 64 KiB)"}`},
	} {
		for _, rt := range routes {
			t.Run(tc.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				var body io.Reader = strings.NewReader(tc.body)
				if tc.chunked {
					body = io.MultiReader(body) // hides the length: sent chunked
				}
				req, _ := http.NewRequest(rt.method, h.url+rt.path, body)
				if tc.contentType != "" {
					req.Header.Set("Content-Type", tc.contentType)
				}
				if rt.token != "" {
					req.Header.Set("Authorization", "Bearer "+rt.token)
				}
				h.send(req).want(t, tc.status, tc.want)
			})
		}
	}

	t.Run("a body of exactly 64 KiB is read", func(t *testing.T) {
		body := `{"pad":"` + strings.Repeat("x", maxBodyBytes-len(`{"pad":""}`)) + `"}`
		h.do("POST", "/api/users/verify/", "", body).want(t, http.StatusBadRequest, `{"error":"token is required"}`)
	})
	t.Run("JSON media types with parameters are accepted", func(t *testing.T) {
		for _, ct := range []string{"application/json; charset=utf-8", "application/merge-patch+json", ""} {
			req, _ := http.NewRequest("POST", h.url+"/api/users/verify/", strings.NewReader(`{}`))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			h.send(req).want(t, http.StatusBadRequest, `{"error":"token is required"}`)
		}
	})
}

// hookedStore replaces some Store methods, to inject failures.
type hookedStore struct {
	presence.Store
	statuses  func(ctx context.Context, ids []int64) (map[int64]presence.Status, error)
	listUsers func(ctx context.Context, q presence.ListQuery) (presence.Page, error)
}

func (s *hookedStore) Statuses(ctx context.Context, ids []int64) (map[int64]presence.Status, error) {
	if s.statuses != nil {
		return s.statuses(ctx, ids)
	}
	return s.Store.Statuses(ctx, ids)
}

func (s *hookedStore) ListUsers(ctx context.Context, q presence.ListQuery) (presence.Page, error) {
	if s.listUsers != nil {
		return s.listUsers(ctx, q)
	}
	return s.Store.ListUsers(ctx, q)
}

// withHooks makes the API use a hookedStore over the real one.
func withHooks(hs *hookedStore) func(*Config) {
	return func(c *Config) {
		hs.Store = c.Store
		c.Store = hs
	}
}

// sendUnchecked sends req without checking the response against the
// OpenAPI document (for answers the document rightly does not list, 500).
func (h *harness) sendUnchecked(req *http.Request) (result, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: body}, err
}

func TestStoreFailures(t *testing.T) {
	statusReq := func(h *harness, token string) *http.Request {
		req, _ := http.NewRequest("POST", h.url+"/api/users/status/", strings.NewReader(`{"ids":[1]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		return req
	}

	for _, tc := range []struct {
		name string
		err  error
	}{
		{"unavailable", fmt.Errorf("redisstore: statuses: %w", presence.ErrUnavailable)},
		{"deadline", fmt.Errorf("redisstore: statuses: %w", context.DeadlineExceeded)},
	} {
		t.Run(tc.name+" is 503", func(t *testing.T) {
			hs := &hookedStore{statuses: func(context.Context, []int64) (map[int64]presence.Status, error) { return nil, tc.err }}
			h := newHarness(t, withHooks(hs))
			_, tok := h.userWithLogin("alice", presence.RoleUser)
			res := h.send(statusReq(h, tok.Access))
			res.want(t, http.StatusServiceUnavailable, `{"error":"Service temporarily unavailable"}`)
			if got := res.header.Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After: got %q, want 1", got)
			}
			if !strings.Contains(h.logs.String(), "redisstore: statuses") {
				t.Errorf("log lacks the cause:\n%s", h.logs)
			}
		})
	}

	t.Run("the request timeout bounds store calls", func(t *testing.T) {
		hs := &hookedStore{statuses: func(ctx context.Context, _ []int64) (map[int64]presence.Status, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}}
		// Long enough for the login before it (bcrypt under -race on a busy
		// CI machine), short enough for the test.
		h := newHarness(t, withHooks(hs), func(c *Config) { c.RequestTimeout = 500 * time.Millisecond })
		_, tok := h.userWithLogin("alice", presence.RoleUser)
		h.send(statusReq(h, tok.Access)).want(t, http.StatusServiceUnavailable, `{"error":"Service temporarily unavailable"}`)
	})

	t.Run("an unknown error is a logged 500", func(t *testing.T) {
		hs := &hookedStore{statuses: func(context.Context, []int64) (map[int64]presence.Status, error) {
			return nil, errors.New("cause-of-the-bug")
		}}
		h := newHarness(t, withHooks(hs))
		_, tok := h.userWithLogin("alice", presence.RoleUser)
		res, err := h.sendUnchecked(statusReq(h, tok.Access))
		if err != nil {
			t.Fatal(err)
		}
		res.want(t, http.StatusInternalServerError, `{"error":"Internal server error"}`)
		if logs := h.logs.String(); !strings.Contains(logs, "cause-of-the-bug") || !strings.Contains(logs, "level=ERROR") {
			t.Errorf("log lacks the cause at level ERROR:\n%s", logs)
		}
	})

	t.Run("a panic is a logged 500", func(t *testing.T) {
		hs := &hookedStore{statuses: func(context.Context, []int64) (map[int64]presence.Status, error) {
			panic("the-panic-value")
		}}
		h := newHarness(t, withHooks(hs))
		_, tok := h.userWithLogin("alice", presence.RoleUser)
		res, err := h.sendUnchecked(statusReq(h, tok.Access))
		if err != nil {
			t.Fatal(err)
		}
		res.want(t, http.StatusInternalServerError, `{"error":"Internal server error"}`)
		if logs := h.logs.String(); !strings.Contains(logs, "the-panic-value") || !strings.Contains(logs, "goroutine") {
			t.Errorf("log lacks the panic and its stack:\n%s", logs)
		}
		// The server still serves.
		h.do("GET", "/healthz", "", nil).wantStatus(t, http.StatusOK)
	})

	t.Run("all-users: failure before the first byte is a 503", func(t *testing.T) {
		hs := &hookedStore{listUsers: func(context.Context, presence.ListQuery) (presence.Page, error) {
			return presence.Page{}, presence.ErrUnavailable
		}}
		h := newHarness(t, withHooks(hs))
		_, tok := h.userWithLogin("admin", presence.RoleAdmin)
		h.do("GET", "/api/users/all-users/", tok.Access, nil).want(t, http.StatusServiceUnavailable, `{"error":"Service temporarily unavailable"}`)
	})

	t.Run("all-users: failure mid-stream breaks the response", func(t *testing.T) {
		var calls atomic.Int32
		hs := &hookedStore{}
		hs.listUsers = func(ctx context.Context, q presence.ListQuery) (presence.Page, error) {
			if calls.Add(1) == 1 {
				p, err := hs.Store.ListUsers(ctx, q)
				p.Next = "more" // pretend there is a second page
				return p, err
			}
			return presence.Page{}, fmt.Errorf("page two: %w", presence.ErrUnavailable)
		}
		h := newHarness(t, withHooks(hs))
		_, tok := h.userWithLogin("admin", presence.RoleAdmin)
		req, _ := http.NewRequest("GET", h.url+"/api/users/all-users/", nil)
		req.Header.Set("Authorization", "Bearer "+tok.Access)
		res, err := h.sendUnchecked(req)
		if err == nil {
			t.Fatalf("got a complete response %d %s, want a broken one", res.status, res.body)
		}
		if !strings.HasPrefix(string(res.body), `{"users":[{`) {
			t.Errorf("body before the break: got %q, want the first page", res.body)
		}
		if !strings.Contains(h.logs.String(), "page two") {
			t.Errorf("log lacks the cause:\n%s", h.logs)
		}
	})
}

func TestOps(t *testing.T) {
	t.Run("healthz, readyz, openapi", func(t *testing.T) {
		h := newHarness(t)
		h.do("GET", "/healthz", "", nil).want(t, http.StatusOK, `{"status":"ok"}`)
		h.do("GET", "/readyz", "", nil).want(t, http.StatusOK, `{"status":"ok"}`)
		res := h.do("GET", "/api/openapi.yaml", "", nil)
		if res.status != http.StatusOK || res.header.Get("Content-Type") != "application/yaml" || !strings.HasPrefix(string(res.body), "openapi: 3") {
			t.Errorf("openapi.yaml: got %d %q %.20q", res.status, res.header.Get("Content-Type"), res.body)
		}
	})

	t.Run("readyz when the store is down", func(t *testing.T) {
		h := newHarness(t, func(c *Config) {
			c.Ready = func(context.Context) error { return errors.New("dial tcp: connection refused") }
		})
		res := h.do("GET", "/readyz", "", nil)
		res.want(t, http.StatusServiceUnavailable, `{"error":"Service temporarily unavailable"}`)
		if res.header.Get("Retry-After") != "1" {
			t.Errorf("Retry-After: got %q, want 1", res.header.Get("Retry-After"))
		}
		h.do("GET", "/healthz", "", nil).want(t, http.StatusOK, `{"status":"ok"}`)
	})

	t.Run("readyz uses the store by default", func(t *testing.T) {
		h := newHarness(t)
		h.mr.Close()
		h.do("GET", "/readyz", "", nil).wantStatus(t, http.StatusServiceUnavailable)
	})

	t.Run("metrics and access log", func(t *testing.T) {
		h := newHarness(t)
		u, tok := h.userWithLogin("admin", presence.RoleAdmin)
		h.do("POST", "/api/users/heartbeat", tok.Access, nil).wantStatus(t, http.StatusOK)
		h.do("GET", fmt.Sprintf("/api/auth/admin/users/%d/", u.ID), tok.Access, nil).wantStatus(t, http.StatusOK)
		h.do("GET", "/no/such/path", "", nil).wantStatus(t, http.StatusNotFound)
		res := h.do("GET", "/metrics", "", nil)
		if res.status != http.StatusOK {
			t.Fatalf("metrics: got %d", res.status)
		}
		text := string(res.body)
		for _, want := range []string{
			`presenced_http_request_duration_seconds_count{code="200",method="POST",route="/api/users/heartbeat/"} 1`,
			`presenced_http_request_duration_seconds_count{code="200",method="GET",route="/api/auth/admin/users/{id}/"} 1`,
			`presenced_http_request_duration_seconds_count{code="404",method="GET",route="unmatched"} 1`,
			`presenced_heartbeats_total{result="ok"} 2`, // the heartbeat and the admin GET
		} {
			if !strings.Contains(text, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		if strings.Contains(text, fmt.Sprintf("/admin/users/%d/", u.ID)) {
			t.Errorf("metrics hold a raw path with a user ID")
		}
		logs := h.logs.String()
		want := fmt.Sprintf(`method=POST route=/api/users/heartbeat/ status=200 duration_ms=`)
		if !strings.Contains(logs, want) || !strings.Contains(logs, fmt.Sprintf("user_id=%d", u.ID)) || !strings.Contains(logs, "request_id=") {
			t.Errorf("access log lacks %q with request_id and user_id:\n%s", want, logs)
		}
	})
}
