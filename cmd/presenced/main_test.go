package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/redistest"
)

// syncBuffer collects the service's log safely across goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// service is presenced started through start(), as main does, on port 0.
type service struct {
	t    *testing.T
	base string
	log  *syncBuffer
	stop func() error
}

func startService(t *testing.T, env map[string]string) *service {
	t.Helper()
	env["PRESENCE_ADDR"] = "127.0.0.1:0"
	if env["PRESENCE_BCRYPT_COST"] == "" {
		env["PRESENCE_BCRYPT_COST"] = "4"
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	a, err := start(ctx, func(k string) string { return env[k] }, logs)
	if err != nil {
		cancel()
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	done := make(chan error, 1)
	go func() { done <- a.wait() }()
	s := &service{t: t, base: "http://" + a.addr, log: logs}
	var once sync.Once
	var stopErr error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(20 * time.Second):
				stopErr = fmt.Errorf("shutdown did not finish")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = s.stop() })
	return s
}

func (s *service) do(method, path, token string, body any) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (s *service) login(user, pass string) (access, refresh string) {
	s.t.Helper()
	code, body := s.do("POST", "/api/auth/login/", "", map[string]string{"username": user, "password": pass})
	if code != 200 {
		s.t.Fatalf("login %s: %d %v", user, code, body)
	}
	tok := body["tokens"].(map[string]any)
	return tok["access"].(string), tok["refresh"].(string)
}

func baseEnv(srv *redistest.Server) map[string]string {
	return map[string]string{
		"REDIS_URL":               srv.URL(),
		"PRESENCE_JWT_SECRET":     strings.Repeat("k", 40),
		"PRESENCE_ADMIN_USERNAME": "root",
		"PRESENCE_ADMIN_PASSWORD": "rootpass1",
		"PRESENCE_TTL":            "1s",
		"PRESENCE_SWEEP_INTERVAL": "200ms",
		// Tests stop services with idle keep-alive connections open; the
		// drain phase has tests of its own (TestDrain).
		"PRESENCE_DRAIN_DELAY": "0",
	}
}

// TestEndToEndRealRedis walks the main story against a real redis-server:
// an admin creates a user, the user logs in and heartbeats, goes offline by
// expiry with last_seen = the last heartbeat, comes back, logs out.
func TestEndToEndRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	s := startService(t, baseEnv(srv))
	admin, _ := s.login("root", "rootpass1")

	code, created := s.do("POST", "/api/users/admin/users/", admin, map[string]any{"username": "alice", "password": "alicepass1"})
	if code != 201 {
		t.Fatalf("create user: %d %v", code, created)
	}
	id := int64(created["id"].(float64))
	access, refresh := s.login("alice", "alicepass1")

	code, hb := s.do("POST", "/api/users/heartbeat/", access, nil)
	if code != 200 || hb["online_status"] != "online" || hb["message"] != "Heartbeat recorded" {
		t.Fatalf("heartbeat: %d %v", code, hb)
	}
	lastHB := time.Now()
	code, st := s.do("GET", fmt.Sprintf("/api/users/admin/users/%d/online-status/", id), admin, nil)
	if code != 200 || st["is_online"] != true {
		t.Fatalf("online-status: %d %v", code, st)
	}

	// No more heartbeats from alice: offline after the TTL, through the
	// keyspace event or the sweep, with last_seen = the last heartbeat. The
	// admin's own polling must not refresh alice.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, st = s.do("GET", fmt.Sprintf("/api/users/admin/users/%d/online-status/", id), admin, nil)
		if st["online_status"] == "offline" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice still %v 5s after her last heartbeat", st["online_status"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	lag := time.Since(lastHB.Add(time.Second))
	t.Logf("offline %v after the deadline", lag)
	ls, err := time.Parse(time.RFC3339Nano, st["last_seen"].(string))
	if err != nil || ls.Sub(lastHB).Abs() > 200*time.Millisecond {
		t.Fatalf("last_seen %v (%v), want ≈ last heartbeat %v", st["last_seen"], err, lastHB)
	}

	// The session is not revoked: the next request brings alice back.
	if code, p := s.do("GET", "/api/users/profile/", access, nil); code != 200 || p["online_status"] != "online" {
		t.Fatalf("profile after expiry: %d %v", code, p)
	}
	code, list := s.do("GET", "/api/users/admin/users/?per_page=1000&online_status=online", admin, nil)
	if code != 200 || len(list["results"].([]any)) != 2 || list["count"].(float64) != 2 {
		t.Fatalf("listing online users: %d %v", code, list)
	}

	// Logout revokes both tokens at once.
	if code, b := s.do("POST", "/api/users/logout/", access, map[string]string{"refresh": refresh}); code != 200 {
		t.Fatalf("logout: %d %v", code, b)
	}
	if code, _ := s.do("POST", "/api/users/heartbeat/", access, nil); code != 401 {
		t.Fatalf("heartbeat after logout: %d, want 401", code)
	}
	if code, _ := s.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": refresh}); code != 401 {
		t.Fatalf("refresh after logout: %d, want 401", code)
	}
	if code, _ := s.do("GET", "/readyz", "", nil); code != 200 {
		t.Fatalf("readyz: %d", code)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if !strings.Contains(s.log.String(), "keyspace notifications enabled") {
		t.Fatalf("log does not report keyspace notifications:\n%s", s.log.String())
	}
}

// TestEmbeddedQuickStart is `make run`: no REDIS_URL, an embedded Redis, a
// generated admin password in the log, and offline detection by the sweep.
func TestEmbeddedQuickStart(t *testing.T) {
	s := startService(t, map[string]string{
		"PRESENCE_EMBEDDED_REDIS_ADDR": "127.0.0.1:0",
		"PRESENCE_TTL":                 "1s",
		"PRESENCE_SWEEP_INTERVAL":      "100ms",
	})
	log := s.log.String()
	for _, want := range []string{"DEV MODE", "embedded", "generated a random JWT secret", "generated password"} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
	i := strings.Index(log, "password=")
	pass := strings.Fields(log[i+len("password="):])[0]
	admin, _ := s.login("admin", pass)
	time.Sleep(1500 * time.Millisecond)
	code, st := s.do("GET", "/api/users/heartbeat/", admin, nil)
	if code != 200 || st["online_status"] != "offline" {
		t.Fatalf("after the TTL without activity: %d %v, want offline", code, st)
	}
}

func TestCreateUserCommand(t *testing.T) {
	srv := redistest.Start(t)
	env := baseEnv(srv)
	delete(env, "PRESENCE_JWT_SECRET") // createuser needs no secret
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("modpass123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	getenv := func(k string) string { return env[k] }
	args := []string{"createuser", "-username", "mod", "-role", "moderator", "-password-file", pwFile}
	if err := run(context.Background(), args, getenv, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("createuser: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), `created moderator "mod"`) {
		t.Fatalf("output %q", out.String())
	}
	// Never overwrites.
	if err := run(context.Background(), args, getenv, strings.NewReader(""), &out, &errOut); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second createuser: got %v, want already exists", err)
	}
	// Password from stdin; a short one is refused.
	err := run(context.Background(), []string{"createuser", "-username", "x1x"}, getenv, strings.NewReader("short\n"), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "password") {
		t.Fatalf("short password: got %v", err)
	}
	s := startService(t, baseEnv(srv))
	s.login("mod", "modpass123")
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	cases := map[string]map[string]string{
		"PRESENCE_TTL":        {"PRESENCE_TTL": "soon"},
		"PRESENCE_JWT_SECRET": {"REDIS_URL": "redis://127.0.0.1:1/0"},
		"REDIS_URL":           {"REDIS_URL": "http://nope", "PRESENCE_JWT_SECRET": strings.Repeat("k", 40)},
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), nil, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("got %v, want an error naming %s", err, name)
			}
		})
	}
	if err := run(context.Background(), []string{"bogus"}, func(string) string { return "" }, strings.NewReader(""), io.Discard, io.Discard); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
}
