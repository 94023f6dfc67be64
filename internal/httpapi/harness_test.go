package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
)

// testSecret is the HS256 key of the tests.
const testSecret = "httpapi-test-secret-0123456789abcdef"

// testPassword is the password of every user the tests create.
const testPassword = "correct-horse-battery"

// harness is the API served by httptest on the real store (miniredis), real
// auth (bcrypt at minimum cost) and real metrics. Its client checks every
// response against the OpenAPI document.
type harness struct {
	*deps
	t      *testing.T
	url    string
	client *http.Client
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// deps are the real dependencies of a test API.
type deps struct {
	store   *redisstore.Store
	mr      *miniredis.Miniredis
	tokens  *auth.Tokens
	hasher  *auth.Hasher
	metrics *metrics.Metrics
	logs    *syncBuffer
}

// newTestAPI builds the API on miniredis; opts adjust its Config.
func newTestAPI(tb testing.TB, opts ...func(*Config)) (http.Handler, *deps) {
	tb.Helper()
	mr := miniredis.RunT(tb)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	tb.Cleanup(func() { _ = rdb.Close() })
	store, err := redisstore.New(rdb, redisstore.Config{TTL: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatalf("redisstore.New: %v", err)
	}
	if err := store.Prepare(context.Background()); err != nil {
		tb.Fatalf("Prepare: %v", err)
	}
	tokens, err := auth.NewTokens(auth.TokenConfig{Secret: []byte(testSecret)})
	if err != nil {
		tb.Fatalf("NewTokens: %v", err)
	}
	d := &deps{
		store: store, mr: mr, tokens: tokens,
		hasher: auth.NewHasher(bcrypt.MinCost), metrics: metrics.New(), logs: &syncBuffer{},
	}
	cfg := Config{
		Store: store, Tokens: tokens, Hasher: d.hasher, Metrics: d.metrics,
		Logger:      slog.New(slog.NewTextHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		CORSOrigins: []string{"https://app.example"},
	}
	for _, o := range opts {
		o(&cfg)
	}
	handler, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return handler, d
}

// newHarness starts the API on an httptest server; opts adjust its Config.
func newHarness(t *testing.T, opts ...func(*Config)) *harness {
	t.Helper()
	handler, d := newTestAPI(t, opts...)
	h := &harness{t: t, deps: d}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	h.url = srv.URL
	h.client = &http.Client{
		Transport: &validatingTransport{t: t, router: specRouter(t), base: srv.Client().Transport},
		// The API never redirects; a redirect is a failure to see.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(func() {
		// Secrets never reach the log.
		logs := h.logs.String()
		for _, secret := range []string{testPassword, "eyJ"} {
			if strings.Contains(logs, secret) {
				t.Errorf("log contains %q:\n%s", secret, logs)
			}
		}
	})
	return h
}

// specRouter routes requests to the operations of the OpenAPI document.
func specRouter(t testing.TB) routers.Router {
	t.Helper()
	doc, err := api.Load(context.Background())
	if err != nil {
		t.Fatalf("api.Load: %v", err)
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("gorillamux.NewRouter: %v", err)
	}
	return r
}

// validatingTransport checks every response that belongs to an operation of
// the OpenAPI document against it: status listed, headers and body of the
// declared schema.
type validatingTransport struct {
	t      reporter
	router routers.Router
	base   http.RoundTripper
}

func (v *validatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := v.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	v.validate(req, resp, body)
	return resp, nil
}

func (v *validatingTransport) validate(req *http.Request, resp *http.Response, body []byte) {
	v.t.Helper()
	// The document lists the paths with their trailing slash; the same
	// operation answers without it.
	specReq := req.Clone(context.Background())
	if strings.HasPrefix(specReq.URL.Path, "/api/") && !strings.HasSuffix(specReq.URL.Path, "/") {
		specReq.URL.Path += "/"
	}
	route, params, err := v.router.FindRoute(specReq)
	if err != nil {
		// Unknown paths and methods (404, 405, preflight) and paths the
		// document does not describe have nothing to validate against.
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: specReq, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		v.t.Errorf("%s %s: response %d %s does not match the OpenAPI document: %v",
			req.Method, req.URL.Path, resp.StatusCode, body, err)
	}
}

// reporter is the part of testing.T the validating transport reports to.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// result is a response, read whole.
type result struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request. body is nil (none), a string (sent as is) or a value
// encoded as JSON; token, when not empty, goes in a bearer header.
func (h *harness) do(method, path, token string, body any) result {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			h.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatalf("NewRequest: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return h.send(req)
}

// send sends req and reads the response.
func (h *harness) send(req *http.Request) result {
	h.t.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: body}
}

// want checks the status and that the body is exactly the JSON wantBody
// (compared as values: member order and spacing do not matter).
func (r result) want(t *testing.T, status int, wantBody string) {
	t.Helper()
	r.wantStatus(t, status)
	var got, want any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	if err := json.Unmarshal([]byte(wantBody), &want); err != nil {
		t.Fatalf("bad test: want body %q: %v", wantBody, err)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("body: got %s, want %s", g, w)
	}
}

func (r result) wantStatus(t *testing.T, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status: got %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" && status != http.StatusNoContent {
		t.Errorf("Content-Type: got %q, want application/json", ct)
	}
}

// json decodes the body into a map.
func (r result) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// decode decodes the body into v.
func (r result) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// user creates a user directly in the store, with testPassword.
func (h *harness) user(name string, role presence.Role, status presence.AccountStatus) presence.User {
	h.t.Helper()
	hash, err := h.hasher.Hash(testPassword)
	if err != nil {
		h.t.Fatalf("Hash: %v", err)
	}
	u, err := h.store.CreateUser(context.Background(), presence.NewUser{
		Username: name, Email: name + "@example.com", FirstName: "First", LastName: strings.ToUpper(name[:1]) + name[1:],
		Role: role, Status: status, PasswordHash: hash,
	})
	if err != nil {
		h.t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

// tokenPair is the tokens of a login.
type tokenPair struct {
	Access  string `json:"access"`
	Refresh string `json:"refresh"`
}

// login logs name in over HTTP and returns the tokens.
func (h *harness) login(name string) tokenPair {
	h.t.Helper()
	res := h.do("POST", "/api/users/login/", "", map[string]string{"username": name, "password": testPassword})
	if res.status != http.StatusOK {
		h.t.Fatalf("login %s: status %d, body %s", name, res.status, res.body)
	}
	var out struct {
		Tokens tokenPair `json:"tokens"`
	}
	res.decode(h.t, &out)
	if out.Tokens.Access == "" || out.Tokens.Refresh == "" {
		h.t.Fatalf("login %s: no tokens in %s", name, res.body)
	}
	return out.Tokens
}

// userWithLogin creates an active user of role and logs them in.
func (h *harness) userWithLogin(name string, role presence.Role) (presence.User, tokenPair) {
	h.t.Helper()
	u := h.user(name, role, presence.StatusActive)
	return u, h.login(name)
}

// Error bodies the tests expect.
const (
	bodyTokenNotValid = `{"detail":"Given token not valid for any token type","code":"token_not_valid"}`
	bodyNotAuth       = `{"detail":"Authentication credentials were not provided.","code":"not_authenticated"}`
	bodyForbidden     = `{"detail":"You do not have permission to perform this action."}`
	bodyUserNotFound  = `{"error":"User not found"}`
)
