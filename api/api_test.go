package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The two prefixes every endpoint of the contract is served under.
var prefixes = []string{"/api/users/", "/api/auth/"}

// endpoints is the contract's list of endpoints, relative to each prefix,
// with their methods. Written out by hand from the contract so that a path
// or method dropped from (or added to) openapi.yaml fails a test.
var endpoints = map[string][]string{
	"register/":                       {http.MethodPost},
	"login/":                          {http.MethodPost},
	"logout/":                         {http.MethodPost},
	"logout-all-devices/":             {http.MethodPost},
	"refresh/":                        {http.MethodPost},
	"verify/":                         {http.MethodPost},
	"profile/":                        {http.MethodGet},
	"heartbeat/":                      {http.MethodGet, http.MethodPost},
	"heartbeat/batch/":                {http.MethodPost},
	"status/":                         {http.MethodPost},
	"admin/users/":                    {http.MethodGet, http.MethodPost},
	"admin/users/{id}/":               {http.MethodGet, http.MethodPut, http.MethodDelete},
	"admin/users/{id}/approve/":       {http.MethodPost},
	"admin/users/{id}/suspend/":       {http.MethodPost},
	"admin/users/{id}/ban/":           {http.MethodPost},
	"admin/users/{id}/activate/":      {http.MethodPost},
	"admin/users/{id}/force-logout/":  {http.MethodPost},
	"admin/users/online/":             {http.MethodGet},
	"admin/users/{id}/online-status/": {http.MethodGet},
	"all-users/":                      {http.MethodGet},
	// Issue 3: manual statuses and the event stream.
	"me/status/":                          {http.MethodPost},
	"admin/users/{id}/set-online-status/": {http.MethodPost},
	"admin/events/":                       {http.MethodGet},
	"admin/events/ticket/":                {http.MethodPost},
}

// unprefixed are the operations endpoints, served without a prefix.
var unprefixed = map[string][]string{
	"/healthz": {http.MethodGet},
	"/readyz":  {http.MethodGet},
	"/metrics": {http.MethodGet},
}

// neverUnavailable are the paths that answer without Redis, so they have no
// 503 response.
var neverUnavailable = []string{"/healthz", "/metrics"}

// userFields are the members of the contract's User object (§2).
var userFields = []string{
	"id", "username", "email", "first_name", "last_name", "full_name", "role", "status",
	"is_active", "online_status", "is_online", "last_seen", "created_at", "updated_at",
}

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := Load(context.Background())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return doc
}

func TestLoad(t *testing.T) {
	doc := loadDoc(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi version: got %q, want %q", doc.OpenAPI, "3.0.3")
	}
	if !strings.Contains(doc.Info.Description, "without the trailing slash") {
		t.Errorf("info.description does not say that paths without the trailing slash are accepted")
	}
}

func TestOpenAPIReturnsCopy(t *testing.T) {
	first := OpenAPI()
	if !bytes.Equal(first, spec) {
		t.Fatalf("OpenAPI() differs from the embedded document")
	}
	for i := range first {
		first[i] = 'x'
	}
	if second := OpenAPI(); !bytes.Equal(second, spec) || bytes.Equal(second, first) {
		t.Errorf("changing the result of OpenAPI() changed the embedded document")
	}
}

// TestLoadReturnsIndependentDocs checks callers own what Load returns.
func TestLoadReturnsIndependentDocs(t *testing.T) {
	a, b := loadDoc(t), loadDoc(t)
	a.Info.Title = "changed"
	if b.Info.Title == "changed" {
		t.Errorf("two Load calls share one document")
	}
}

func TestPathsAndMethodsMatchContract(t *testing.T) {
	doc := loadDoc(t)

	var want []string
	for rel, methods := range endpoints {
		for _, p := range prefixes {
			for _, m := range methods {
				want = append(want, m+" "+p+rel)
			}
		}
	}
	for path, methods := range unprefixed {
		for _, m := range methods {
			want = append(want, m+" "+path)
		}
	}
	sort.Strings(want)

	var got []string
	for path, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			got = append(got, m+" "+path)
		}
	}
	sort.Strings(got)

	for _, w := range want {
		if _, found := slices.BinarySearch(got, w); !found {
			t.Errorf("missing operation %s", w)
		}
	}
	for _, g := range got {
		if _, found := slices.BinarySearch(want, g); !found {
			t.Errorf("operation %s is not in the contract", g)
		}
	}
}

// TestPrefixesServeTheSameOperations checks that each path item under one
// prefix is identical to its twin under the other, so the two can never
// drift apart.
func TestPrefixesServeTheSameOperations(t *testing.T) {
	doc := loadDoc(t)
	paths := doc.Paths.Map()
	for path, item := range paths {
		if _, ok := unprefixed[path]; ok {
			continue
		}
		var rel string
		for _, p := range prefixes {
			if r, ok := strings.CutPrefix(path, p); ok {
				rel = r
			}
		}
		if rel == "" {
			t.Errorf("path %s is under neither %v nor an operations path", path, prefixes)
			continue
		}
		if !strings.HasSuffix(path, "/") {
			t.Errorf("path %s: got no trailing slash, want one", path)
		}
		want, err := json.Marshal(item)
		if err != nil {
			t.Fatalf("marshal %s: %v", path, err)
		}
		for _, p := range prefixes {
			twin, ok := paths[p+rel]
			if !ok {
				t.Errorf("path %s has no twin %s", path, p+rel)
				continue
			}
			got, err := json.Marshal(twin)
			if err != nil {
				t.Fatalf("marshal %s: %v", p+rel, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("path items differ:\n%s: %s\n%s: %s", p+rel, got, path, want)
			}
		}
	}
}

// security reports whether op needs a bearer token in every case, and whether
// it accepts one at all.
func security(doc *openapi3.T, op *openapi3.Operation) (always, accepts bool) {
	reqs := doc.Security
	if op.Security != nil {
		reqs = *op.Security
	}
	always = len(reqs) > 0
	for _, r := range reqs {
		if len(r) == 0 {
			always = false
		}
		if _, ok := r["bearerAuth"]; ok {
			accepts = true
		}
	}
	return always, accepts
}

// serviceKeyOnly reports whether op takes a service key and nothing else
// (heartbeat/batch/, for trusted gateways).
func serviceKeyOnly(op *openapi3.Operation) bool {
	if op.Security == nil || len(*op.Security) != 1 {
		return false
	}
	req := (*op.Security)[0]
	_, ok := req["serviceKey"]
	return ok && len(req) == 1
}

func responseSchema(t *testing.T, op *openapi3.Operation, status int) string {
	t.Helper()
	r := op.Responses.Status(status)
	if r == nil || r.Value == nil {
		return ""
	}
	mt := r.Value.Content.Get("application/json")
	if mt == nil || mt.Schema == nil {
		return ""
	}
	return strings.TrimPrefix(mt.Schema.Ref, "#/components/schemas/")
}

func TestErrorResponses(t *testing.T) {
	doc := loadDoc(t)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			t.Run(method+" "+path, func(t *testing.T) {
				if slices.Contains(neverUnavailable, path) {
					if op.Responses.Status(http.StatusServiceUnavailable) != nil {
						t.Errorf("got a 503 response, want none (this path never touches Redis)")
					}
				} else {
					if got := responseSchema(t, op, 503); got != "Error" {
						t.Errorf("503 schema: got %q, want %q", got, "Error")
					} else if op.Responses.Status(503).Value.Headers["Retry-After"] == nil {
						t.Errorf("503 has no Retry-After header")
					}
				}

				always, accepts := security(doc, op)
				service := serviceKeyOnly(op)
				if accepts || service {
					if got := responseSchema(t, op, 401); got != "AuthError" {
						t.Errorf("401 schema: got %q, want %q", got, "AuthError")
					}
				}
				if always && !accepts && !service {
					t.Errorf("needs security but not bearerAuth")
				}

				if method == http.MethodPost || method == http.MethodPut {
					for status, want := range map[int]string{400: "Error", 413: "Error"} {
						if got := responseSchema(t, op, status); got != want {
							t.Errorf("%d schema: got %q, want %q", status, got, want)
						}
					}
				}

				if strings.Contains(path, "/admin/") || strings.HasSuffix(path, "/all-users/") {
					if !always {
						t.Errorf("admin operation is not secured")
					}
					if got := responseSchema(t, op, 403); got != "PermissionError" {
						t.Errorf("403 schema: got %q, want %q", got, "PermissionError")
					}
				}
				if strings.Contains(path, "{id}") {
					if got := responseSchema(t, op, 404); got != "Error" {
						t.Errorf("404 schema: got %q, want %q", got, "Error")
					}
				}
			})
		}
	}
}

func TestPublicOperations(t *testing.T) {
	doc := loadDoc(t)
	tests := []struct {
		rel                 string
		wantAlways, wantAny bool
	}{
		{rel: "register/", wantAlways: false, wantAny: false},
		{rel: "login/", wantAlways: false, wantAny: false},
		{rel: "refresh/", wantAlways: false, wantAny: false},
		{rel: "verify/", wantAlways: false, wantAny: false},
		// logout/ takes the bearer token or, failing that, a refresh token
		// in the body.
		{rel: "logout/", wantAlways: false, wantAny: true},
		{rel: "logout-all-devices/", wantAlways: true, wantAny: true},
		{rel: "heartbeat/", wantAlways: true, wantAny: true},
	}
	for _, tt := range tests {
		for _, p := range prefixes {
			t.Run(p+tt.rel, func(t *testing.T) {
				item := doc.Paths.Value(p + tt.rel)
				if item == nil {
					t.Fatalf("path %s missing", p+tt.rel)
				}
				for method, op := range item.Operations() {
					always, accepts := security(doc, op)
					if always != tt.wantAlways || accepts != tt.wantAny {
						t.Errorf("%s: got (requires token %v, accepts token %v), want (%v, %v)",
							method, always, accepts, tt.wantAlways, tt.wantAny)
					}
				}
			})
		}
	}
	for path := range unprefixed {
		op := doc.Paths.Value(path).Get
		if always, accepts := security(doc, op); always || accepts {
			t.Errorf("%s: got security, want none", path)
		}
	}
}

func TestUserSchemaRequiresContractFields(t *testing.T) {
	doc := loadDoc(t)
	user := doc.Components.Schemas["User"].Value
	for _, f := range userFields {
		if !slices.Contains(user.Required, f) {
			t.Errorf("User.required: %q missing", f)
		}
		if user.Properties[f] == nil {
			t.Errorf("User.properties: %q missing", f)
		}
	}
	if len(user.Required) != len(userFields) {
		t.Errorf("User.required: got %v, want %v", user.Required, userFields)
	}
	if ap := user.AdditionalProperties.Has; ap != nil && !*ap {
		t.Errorf("User forbids additional properties; clients must tolerate additions")
	}
}

const validUser = `{"id": 42, "username": "alice", "email": "", "first_name": "Alice",
	"last_name": "", "full_name": "Alice", "role": "user", "status": "active",
	"is_active": true, "online_status": "online", "is_online": true,
	"last_seen": "2026-11-26T10:11:12.345Z", "created_at": "2026-11-01T09:00:00.000Z",
	"updated_at": "2026-11-01T09:00:00.000Z"}`

// withUser returns validUser with key set to value (raw JSON), or removed
// when value is "".
func withUser(t *testing.T, key, value string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(validUser), &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(value)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSchemasEncodeContract feeds documents that the contract allows or
// forbids to the component schemas.
func TestSchemasEncodeContract(t *testing.T) {
	doc := loadDoc(t)
	tests := []struct {
		name   string
		schema string
		body   string
		valid  bool
	}{
		{"user", "User", validUser, true},
		{"user never seen", "User", withUser(t, "last_seen", "null"), true},
		{"user with an extra field", "User", withUser(t, "avatar", `"x.png"`), true},
		{"user without last_seen", "User", withUser(t, "last_seen", ""), false},
		{"user without email", "User", withUser(t, "email", ""), false},
		{"user null created_at", "User", withUser(t, "created_at", "null"), false},
		{"user time without millis", "User", withUser(t, "last_seen", `"2026-11-26T10:11:12Z"`), false},
		{"user time not UTC", "User", withUser(t, "last_seen", `"2026-11-26T10:11:12.345+01:00"`), false},
		{"user unknown role", "User", withUser(t, "role", `"owner"`), false},
		{"user unknown status", "User", withUser(t, "status", `"deleted"`), false},
		{"user unknown online_status", "User", withUser(t, "online_status", `"busy"`), false},
		{"user string id", "User", withUser(t, "id", `"42"`), false},

		{"detail", "UserDetail", withUser(t, "sessions",
			`[{"id": "s1", "created_at": "2026-11-26T10:00:00.000Z", "last_seen": null, "user_agent": "", "live": false}]`), true},
		{"detail without sessions", "UserDetail", validUser, false},

		{"auth error", "AuthError", `{"detail": "x", "code": "token_not_valid"}`, true},
		{"auth error missing", "AuthError", `{"detail": "x", "code": "not_authenticated"}`, true},
		{"auth error other code", "AuthError", `{"detail": "x", "code": "expired"}`, false},
		{"error", "Error", `{"error": "Invalid credentials"}`, true},
		{"error as detail", "Error", `{"detail": "Invalid credentials"}`, false},

		{"page", "UserPage", `{"count": 1, "next": null, "previous": null, "results": [` + validUser + `]}`, true},
		{"page with next", "UserPage", `{"count": 3, "next": "http://h/api/users/admin/users/?cursor=abc", "previous": null, "results": []}`, true},
		{"page with previous", "UserPage", `{"count": 1, "next": null, "previous": "http://h/", "results": []}`, false},
		{"page without count", "UserPage", `{"next": null, "previous": null, "results": []}`, false},

		{"statuses", "StatusResponse", `{"statuses": {"42": {"online_status": "away", "last_seen": null}}}`, true},
		{"status request", "StatusRequest", `{"ids": [1, 2, 3]}`, true},
		{"status request too many", "StatusRequest", `{"ids": [` + strings.Repeat("1,", 1000) + `1]}`, false},
		{"status request without ids", "StatusRequest", `{}`, false},
		{"batch request", "BatchHeartbeatRequest", `{"sessions": [{"user_id": 1, "session_id": "3"}]}`, true},
		{"batch request empty", "BatchHeartbeatRequest", `{"sessions": []}`, false},
		{"batch request too many", "BatchHeartbeatRequest", `{"sessions": [` + strings.Repeat(`{"user_id": 1, "session_id": "3"},`, 1000) + `{"user_id": 1, "session_id": "3"}]}`, false},
		{"batch request integer session", "BatchHeartbeatRequest", `{"sessions": [{"user_id": 1, "session_id": 3}]}`, false},
		{"batch response", "BatchHeartbeatResponse", `{"refreshed": 1, "unknown": [], "revoked": [{"user_id": 2, "session_id": "1"}]}`, true},
		{"batch response without lists", "BatchHeartbeatResponse", `{"refreshed": 1}`, false},

		{"register", "RegisterRequest", `{"username": "a.b+c@d-e_f", "password": "12345678"}`, true},
		{"register short username", "RegisterRequest", `{"username": "ab", "password": "12345678"}`, false},
		{"register long username", "RegisterRequest", `{"username": "` + strings.Repeat("a", 151) + `", "password": "12345678"}`, false},
		{"register bad username", "RegisterRequest", `{"username": "al ice", "password": "12345678"}`, false},
		{"register non-ASCII username", "RegisterRequest", `{"username": "аlice", "password": "12345678"}`, false},
		{"register short password", "RegisterRequest", `{"username": "alice", "password": "1234567"}`, false},
		{"register long password", "RegisterRequest", `{"username": "alice", "password": "` + strings.Repeat("p", 129) + `"}`, false},
		{"login long username", "LoginRequest", `{"username": "` + strings.Repeat("a", 151) + `", "password": "x"}`, false},
		{"login odd username", "LoginRequest", `{"username": "a b", "password": "x"}`, true},
		{"logout alias", "LogoutRequest", `{"refresh_token": "t"}`, true},
		{"heartbeat logout", "HeartbeatRequest", `{"logout": true}`, true},
		{"heartbeat", "HeartbeatResponse", `{"message": "Heartbeat recorded", "online_status": "online", "last_seen": "2026-11-26T10:11:12.345Z"}`, true},

		{"update one field", "AdminUpdateUser", `{"status": "suspended"}`, true},
		{"update nothing", "AdminUpdateUser", `{}`, false},
		{"update only unknown fields", "AdminUpdateUser", `{"username": "bob"}`, false},
		{"update bad role", "AdminUpdateUser", `{"role": "root"}`, false},
		{"create", "AdminCreateUser", `{"username": "bob", "password": "12345678", "role": "moderator"}`, true},
		{"create without password", "AdminCreateUser", `{"username": "bob"}`, false},

		{"user with live_sessions", "User", withUser(t, "live_sessions", "2"), true},
		{"user negative live_sessions", "User", withUser(t, "live_sessions", "-1"), false},
		{"heartbeat idle", "HeartbeatRequest", `{"active": false}`, true},
		{"heartbeat active not a boolean", "HeartbeatRequest", `{"active": "no"}`, false},
		{"set status", "SetStatusRequest", `{"status": "offline", "until": "2026-11-26T18:00:00+01:00"}`, true},
		{"set status without expiry", "SetStatusRequest", `{"status": "away", "until": null}`, true},
		{"set status unknown", "SetStatusRequest", `{"status": "busy"}`, false},
		{"set status missing", "SetStatusRequest", `{"until": "2026-11-26T18:00:00Z"}`, false},
		{"event ticket", "EventTicket", `{"ticket": "abc", "expires_in": 30}`, true},
		{"event ticket without expiry", "EventTicket", `{"ticket": "abc"}`, false},

		{"online status", "OnlineStatus", `{"user_id": 1, "username": "a", "online_status": "offline", "last_seen": null, "is_online": false}`, true},
		{"verify reply", "Empty", `{}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := doc.Components.Schemas[tt.schema]
			if ref == nil {
				t.Fatalf("schema %s missing", tt.schema)
			}
			var v any
			if err := json.Unmarshal([]byte(tt.body), &v); err != nil {
				t.Fatalf("bad test JSON: %v", err)
			}
			err := ref.Value.VisitJSON(v)
			if got := err == nil; got != tt.valid {
				t.Errorf("%s accepts %s: got %v, want %v (error: %v)", tt.schema, tt.body, got, tt.valid, err)
			}
		})
	}
}

// TestRouterAndFilter shows the spec works with kin-openapi's router and
// openapi3filter the way other packages' tests use it: any host, literal
// paths ahead of {id}, requests and responses validated.
func TestRouterAndFilter(t *testing.T) {
	doc := loadDoc(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}

	routes := []struct {
		method, url, wantPath string
	}{
		{http.MethodGet, "http://127.0.0.1:43127/api/auth/admin/users/online/", "/api/auth/admin/users/online/"},
		{http.MethodGet, "http://example.com/api/users/admin/users/7/", "/api/users/admin/users/{id}/"},
		{http.MethodPost, "http://localhost/api/users/admin/users/7/force-logout/", "/api/users/admin/users/{id}/force-logout/"},
		{http.MethodGet, "http://localhost/api/users/admin/users/7/online-status/", "/api/users/admin/users/{id}/online-status/"},
		{http.MethodPost, "http://localhost/api/auth/heartbeat/", "/api/auth/heartbeat/"},
		{http.MethodGet, "http://localhost/healthz", "/healthz"},
	}
	for _, tt := range routes {
		t.Run(tt.method+" "+tt.url, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.url, nil)
			route, _, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("FindRoute: %v", err)
			}
			if route.Path != tt.wantPath {
				t.Errorf("route: got %s, want %s", route.Path, tt.wantPath)
			}
		})
	}

	validate := func(t *testing.T, method, url, body string, status int, header http.Header, respBody string) error {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req := httptest.NewRequest(method, url, rd)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Authorization", "Bearer x")
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("FindRoute: %v", err)
		}
		in := &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		}
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			return err
		}
		if header == nil {
			header = http.Header{}
		}
		header.Set("Content-Type", "application/json")
		out := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: status, Header: header,
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		}
		out.SetBodyBytes([]byte(respBody))
		return openapi3filter.ValidateResponse(context.Background(), out)
	}

	exchanges := []struct {
		name             string
		method, url, req string
		status           int
		header           http.Header
		resp             string
		valid            bool
	}{
		{"status", http.MethodPost, "http://h/api/users/status/", `{"ids": [42]}`, 200, nil,
			`{"statuses": {"42": {"online_status": "online", "last_seen": "2026-11-26T10:11:12.345Z"}}}`, true},
		{"status too many ids", http.MethodPost, "http://h/api/users/status/", `{"ids": [` + strings.Repeat("1,", 1000) + `1]}`, 200, nil,
			`{"statuses": {}}`, false},
		{"unavailable", http.MethodPost, "http://h/api/auth/heartbeat/", "", 503, http.Header{"Retry-After": {"1"}},
			`{"error": "Service temporarily unavailable"}`, true},
		{"undocumented status", http.MethodGet, "http://h/api/auth/profile/", "", 418, nil, `{"error": "x"}`, false},
		{"non-integer id", http.MethodGet, "http://h/api/users/admin/users/abc/", "", 404, nil, `{"error": "x"}`, false},
		{"list page", http.MethodGet, "http://h/api/users/admin/users/?per_page=1000&online_status=away", "", 200, nil,
			`{"count": 0, "next": null, "previous": null, "results": []}`, true},
		{"list page too big", http.MethodGet, "http://h/api/users/admin/users/?per_page=1001", "", 200, nil,
			`{"count": 0, "next": null, "previous": null, "results": []}`, false},
	}
	for _, tt := range exchanges {
		t.Run(tt.name, func(t *testing.T) {
			err := validate(t, tt.method, tt.url, tt.req, tt.status, tt.header, tt.resp)
			if got := err == nil; got != tt.valid {
				t.Errorf("valid: got %v, want %v (error: %v)", got, tt.valid, err)
			}
		})
	}
}
