package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/redistest"
)

// TestServiceKeysWired checks PRESENCE_SERVICE_KEYS reaches the API: the
// configured gateway refreshes the admin's session through heartbeat/batch/,
// and another key is refused.
func TestServiceKeysWired(t *testing.T) {
	srv := redistest.Start(t)
	env := baseEnv(srv)
	env["PRESENCE_TTL"] = "1m"
	key := "gw-key-0123456789abcdef"
	sum := sha256.Sum256([]byte(key))
	env["PRESENCE_SERVICE_KEYS"] = "gateway:" + hex.EncodeToString(sum[:])
	s := startService(t, env)
	access, _ := s.login("root", "rootpass1")
	tokens, err := auth.NewTokens(auth.TokenConfig{Secret: []byte(env["PRESENCE_JWT_SECRET"])})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tokens.ParseAccess(access)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"sessions":[{"user_id":%d,"session_id":%q}]}`, c.UserID, c.SessionID)
	for _, tc := range []struct {
		key  string
		code int
		want string
	}{
		{key, http.StatusOK, `{"refreshed":1,"unknown":[],"revoked":[]}`},
		{"another-key", http.StatusUnauthorized, `"code":"token_not_valid"`},
	} {
		req, _ := http.NewRequest("POST", s.base+"/api/auth/heartbeat/batch/", strings.NewReader(body))
		req.Header.Set("Authorization", "ApiKey "+tc.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(raw), tc.want) {
			t.Errorf("key %q: got %d %s, want %d with %s", tc.key, resp.StatusCode, raw, tc.code, tc.want)
		}
	}
	if strings.Contains(s.log.String(), key) {
		t.Errorf("the log contains the service key")
	}
}
