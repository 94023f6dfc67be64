package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/presenced/presenced/api"
)

// notInSpec are the routes the OpenAPI document does not list, and why.
var notInSpec = map[string]string{
	"GET /api/openapi.yaml": "serves the document itself",
}

// TestRoutesMatchSpec checks that the router and the OpenAPI document list
// the same operations: every route the router serves is in the document,
// and every operation of the document is served.
func TestRoutesMatchSpec(t *testing.T) {
	_, d := newTestAPI(t)
	s := &server{metrics: d.metrics}
	served := map[string]bool{}
	err := s.router().Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := rt.GetPathTemplate()
		if err != nil {
			return nil // a subrouter's prefix route
		}
		methods, err := rt.GetMethods()
		if err != nil {
			return nil // the 405 catch-all of a path
		}
		path := strings.ReplaceAll(tmpl, idPattern, "{id}")
		if strings.HasPrefix(path, "/api/users/") || strings.HasPrefix(path, "/api/auth/") {
			if !strings.HasSuffix(path, "/") {
				// The form without the slash must sit beside the other.
				served["noslash "+path] = true
				return nil
			}
		}
		for _, m := range methods {
			served[m+" "+path] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := api.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	inSpec := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inSpec[method+" "+path] = true
		}
	}
	var ops []string
	for op := range served {
		if strings.HasPrefix(op, "noslash ") {
			continue
		}
		ops = append(ops, op)
		if _, why := notInSpec[op]; !inSpec[op] && !why {
			t.Errorf("router serves %s, the OpenAPI document does not list it", op)
		}
		if _, path, _ := strings.Cut(op, " "); strings.HasPrefix(path, "/api/") && strings.HasSuffix(path, "/") &&
			!served["noslash "+strings.TrimSuffix(path, "/")] {
			t.Errorf("router serves %s but not without the trailing slash", op)
		}
	}
	for op := range inSpec {
		if !served[op] {
			t.Errorf("OpenAPI document lists %s, the router does not serve it", op)
		}
	}
	slices.Sort(ops)
	if len(ops) < 2*23+4 {
		t.Errorf("router serves only %d operations: %v", len(ops), ops)
	}
}

// recorder is a reporter that keeps what it is told.
type recorder struct{ errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// fixedTransport answers every request with one response.
type fixedTransport struct {
	status int
	body   string
}

func (f fixedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: f.status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(f.body)), Request: req,
	}, nil
}

// TestValidatingTransport checks the checker: responses that break the
// OpenAPI document are reported, conforming ones are not.
func TestValidatingTransport(t *testing.T) {
	router := specRouter(t)
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
		wantErr            bool
	}{
		{"conforming", "POST", "/api/users/heartbeat/", 200, `{"message":"Heartbeat recorded","online_status":"online","last_seen":null}`, false},
		{"conforming without slash", "GET", "/api/auth/heartbeat", 200, `{"online_status":"away","last_seen":"2026-11-26T10:11:12.345Z"}`, false},
		{"bad enum", "POST", "/api/users/heartbeat/", 200, `{"message":"Heartbeat recorded","online_status":"busy","last_seen":null}`, true},
		{"bad time", "GET", "/api/users/heartbeat/", 200, `{"online_status":"online","last_seen":"2026-11-26 10:11:12"}`, true},
		{"missing member", "GET", "/api/users/profile/", 200, `{"id":1}`, true},
		{"status not listed", "GET", "/api/users/profile/", 418, `{"error":"teapot"}`, true},
		{"wrong error shape", "GET", "/api/users/profile/", 401, `{"error":"no"}`, true},
		{"unknown path is not checked", "GET", "/nowhere", 404, `{"error":"Not found"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			client := &http.Client{Transport: &validatingTransport{t: rec, router: router, base: fixedTransport{tc.status, tc.body}}}
			req, _ := http.NewRequest(tc.method, "http://presenced.test"+tc.path, nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := len(rec.errs) > 0; got != tc.wantErr {
				t.Errorf("reported %v, want an error: %v", rec.errs, tc.wantErr)
			}
		})
	}
}
