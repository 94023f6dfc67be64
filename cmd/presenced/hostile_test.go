package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/redistest"
)

// TestSecretsNeverLogged runs the service at debug level with known secrets
// everywhere (JWT secret and admin password from _FILE variables, a Redis
// password in REDIS_URL, a service key, user passwords, every token it
// issues, tokens and keys sent back in good and bad requests) and searches
// the whole log for each of them.
func TestSecretsNeverLogged(t *testing.T) {
	const (
		redisPassword = "redis-pw-Zq8xN3"
		jwtSecret     = "jwt-secret-from-a-file-0123456789abcdef-XYZ"
		adminPassword = "admin-pw-from-a-file-7Hk2"
		userPassword  = "user-pw-J4n9Qx"
		serviceKey    = "service-key-Vb7Lm2Pq9Rt4"
	)
	srv := redistest.Start(t)
	// The password is set once the server runs (redistest's readiness probe
	// has none), and lifted before redistest stops it.
	if err := srv.Client(t).ConfigSet(context.Background(), "requirepass", redisPassword).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: redisPassword})
		defer c.Close()
		_ = c.ConfigSet(context.Background(), "requirepass", "").Err()
	})
	dir := t.TempDir()
	// Files as editors and `echo` write them: with a trailing newline.
	writeFile(t, filepath.Join(dir, "jwt"), jwtSecret+"\n")
	writeFile(t, filepath.Join(dir, "admin"), adminPassword+"\r\n")
	sum := sha256.Sum256([]byte(serviceKey))
	env := map[string]string{
		"REDIS_URL":                    "redis://:" + redisPassword + "@" + srv.Addr + "/0",
		"PRESENCE_JWT_SECRET_FILE":     filepath.Join(dir, "jwt"),
		"PRESENCE_ADMIN_USERNAME":      "root",
		"PRESENCE_ADMIN_PASSWORD_FILE": filepath.Join(dir, "admin"),
		"PRESENCE_SERVICE_KEYS":        "gateway:" + hex.EncodeToString(sum[:]),
		"PRESENCE_REGISTRATION":        "open",
		"LOG_LEVEL":                    "debug",
		"LOG_FORMAT":                   "json",
	}
	s := startService(t, env)

	// The admin password came from the file, newline trimmed.
	admin, adminRefresh := s.login("root", adminPassword)
	code, created := s.do("POST", "/api/users/register/", "", map[string]string{"username": "dora", "password": userPassword})
	if code != http.StatusCreated {
		t.Fatalf("register: %d %v", code, created)
	}
	secrets := []string{redisPassword, jwtSecret, adminPassword, userPassword, serviceKey}
	tokens := func(body map[string]any) {
		for _, k := range []string{"access", "refresh"} {
			if v, ok := body[k].(string); ok {
				secrets = append(secrets, v, v[strings.LastIndexByte(v, '.')+1:])
			}
		}
		if tk, ok := body["tokens"].(map[string]any); ok {
			// The tokens of register and login.
			for _, k := range []string{"access", "refresh"} {
				v := tk[k].(string)
				secrets = append(secrets, v, v[strings.LastIndexByte(v, '.')+1:])
			}
		}
	}
	tokens(map[string]any{"access": admin, "refresh": adminRefresh})
	tokens(created)
	access, refresh := s.login("dora", userPassword)
	tokens(map[string]any{"access": access, "refresh": refresh})

	// The JWT secret is the file's content, newline trimmed: its tokens
	// verify with exactly that key.
	verifier, err := auth.NewTokens(auth.TokenConfig{Secret: []byte(jwtSecret)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifier.ParseAccess(access); err != nil {
		t.Fatalf("a token of the service does not verify with the secret from the file: %v", err)
	}

	// Failures log their causes at debug level: feed them secrets.
	s.do("POST", "/api/users/login/", "", map[string]string{"username": "dora", "password": userPassword + "-wrong"})
	s.do("POST", "/api/users/login/", "", map[string]string{"username": "nobody", "password": userPassword})
	s.do("POST", "/api/users/register/", "", map[string]string{"username": "dora", "password": userPassword})
	s.do("POST", "/api/users/heartbeat/", access, nil)
	s.do("GET", "/api/users/profile/", refresh, nil) // a refresh token as access
	s.do("GET", "/api/users/profile/", access+"x", nil)
	s.do("POST", "/api/users/verify/", "", map[string]string{"token": refresh})
	code, rotated := s.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": refresh})
	if code != http.StatusOK {
		t.Fatalf("refresh: %d %v", code, rotated)
	}
	tokens(rotated)
	s.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": refresh}) // reuse
	s.do("POST", "/api/users/admin/users/", admin, map[string]string{"username": "eve", "password": userPassword})
	batch := func(key string) int {
		req, _ := http.NewRequest("POST", s.base+"/api/users/heartbeat/batch/", strings.NewReader(`{"sessions":[{"user_id":2,"session_id":"1"}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "ApiKey "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if got := batch(serviceKey); got != http.StatusOK {
		t.Errorf("heartbeat/batch/ with the service key: %d", got)
	}
	batch(serviceKey + "-wrong")
	s.do("POST", "/api/users/logout/", access, map[string]string{"refresh": refresh})
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	logs := s.log.String()
	lines := strings.Count(logs, "\n")
	if lines < 20 || !strings.Contains(logs, `"level":"DEBUG"`) {
		t.Fatalf("the log is too thin to prove anything (%d lines):\n%s", lines, logs)
	}
	for _, secret := range secrets {
		if i := strings.Index(logs, secret); i >= 0 {
			t.Errorf("the log contains a secret (%.12s...) in:\n%s", secret, lineAt(logs, i))
		}
	}
	t.Logf("%d log lines searched for %d secrets", lines, len(secrets))
}

// lineAt returns the log line around byte i.
func lineAt(s string, i int) string {
	start := strings.LastIndexByte(s[:i], '\n') + 1
	end := strings.IndexByte(s[i:], '\n')
	if end < 0 {
		return s[start:]
	}
	return s[start : i+end]
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestShortSecretRefused: outside the embedded dev mode a JWT secret under
// 32 bytes stops start-up, from the variable or its file, and the message
// names the variable without echoing the secret.
func TestShortSecretRefused(t *testing.T) {
	dir := t.TempDir()
	const short = "only-31-bytes-of-secret-0123456"
	writeFile(t, filepath.Join(dir, "jwt"), short+"\n")
	for name, env := range map[string]map[string]string{
		"PRESENCE_JWT_SECRET":      {"REDIS_URL": "redis://127.0.0.1:1/0", "PRESENCE_JWT_SECRET": short},
		"PRESENCE_JWT_SECRET_FILE": {"REDIS_URL": "redis://127.0.0.1:1/0", "PRESENCE_JWT_SECRET_FILE": filepath.Join(dir, "jwt")},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr strings.Builder
			err := run(context.Background(), nil, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), name+": the secret must be at least 32 bytes") {
				t.Fatalf("got %v, want a refusal naming %s", err, name)
			}
			if strings.Contains(err.Error(), short) || strings.Contains(stderr.String(), short) {
				t.Fatalf("the refusal echoes the secret: %v %s", err, stderr.String())
			}
		})
	}
}

// TestOversizedHeaders: net/http refuses a header block over
// MaxHeaderBytes (32 KiB) with 431 before any handler runs, so that answer
// is net/http's plain text, not JSON (documented in the README); the
// connection is closed and the service goes on serving. Just under the limit
// is served normally.
func TestOversizedHeaders(t *testing.T) {
	srv := redistest.Start(t)
	s := startService(t, baseEnv(srv))
	raw := func(headerBytes int) (status int, contentType string, body string) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", strings.Repeat("a", headerBytes))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if status, _, body := raw(30 << 10); status != http.StatusOK {
		t.Fatalf("30 KiB of headers: %d %s", status, body)
	}
	status, ct, body := raw(64 << 10)
	if status != http.StatusRequestHeaderFieldsTooLarge || !strings.HasPrefix(ct, "text/plain") || !strings.Contains(body, "431") {
		t.Fatalf("64 KiB of headers: got %d %q %q, want net/http's 431", status, ct, body)
	}
	if code, _ := s.do("GET", "/healthz", "", nil); code != http.StatusOK {
		t.Fatalf("after the 431: healthz %d", code)
	}
}

// TestLoginLimitEndToEnd: with the default limits on a real Redis, the
// eleventh failed login at one username within 15 minutes gets 429 with a
// Retry-After of about 15 minutes, even with the right password; another
// account is not affected.
func TestLoginLimitEndToEnd(t *testing.T) {
	srv := redistest.Start(t)
	s := startService(t, baseEnv(srv))
	admin, _ := s.login("root", "rootpass1") // a success: not counted
	if code, body := s.do("POST", "/api/users/admin/users/", admin, map[string]string{"username": "other", "password": "otherpass1", "status": "active"}); code != http.StatusCreated {
		t.Fatalf("create other: %d %v", code, body)
	}
	for i := range 10 {
		if code, body := s.do("POST", "/api/users/login/", "", map[string]string{"username": "root", "password": "wrong-password"}); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %v", i+1, code, body)
		}
	}
	req, _ := http.NewRequest("POST", s.base+"/api/users/login/", strings.NewReader(`{"username":"root","password":"rootpass1"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || ra < 890 || ra > 900 || !strings.Contains(string(b), `"error"`) {
		t.Fatalf("eleventh attempt: %d Retry-After %q %s; want 429 with about 900 s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	s.login("other", "otherpass1")
	// The session from before the attack still works.
	if code, body := s.do("GET", "/api/users/profile/", admin, nil); code != http.StatusOK {
		t.Fatalf("admin's existing session: %d %v", code, body)
	}
}
