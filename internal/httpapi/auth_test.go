package httpapi

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/presence"
)

// timeRE is the JSON time format of the API.
var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// checkUser checks the user object u (decoded JSON) has every member, and the
// given values.
func checkUser(t *testing.T, u map[string]any, want map[string]any) {
	t.Helper()
	for _, k := range []string{"id", "username", "email", "first_name", "last_name", "full_name", "role", "status",
		"is_active", "online_status", "is_online", "last_seen", "created_at", "updated_at"} {
		if _, ok := u[k]; !ok {
			t.Errorf("user %v: member %q missing", u, k)
		}
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if s, _ := u[k].(string); !timeRE.MatchString(s) {
			t.Errorf("user %s: got %v, want a time like 2026-11-26T10:11:12.345Z", k, u[k])
		}
	}
	for k, v := range want {
		if fmt.Sprint(u[k]) != fmt.Sprint(v) {
			t.Errorf("user %s: got %v, want %v", k, u[k], v)
		}
	}
}

func TestRegister(t *testing.T) {
	body := map[string]string{"username": "alice", "password": testPassword, "email": "alice@example.com", "first_name": "Alice"}

	t.Run("approval creates a pending account", func(t *testing.T) {
		h := newHarness(t)
		res := h.do("POST", "/api/users/register/", "", body)
		res.wantStatus(t, http.StatusCreated)
		m := res.json(t)
		if _, ok := m["tokens"]; ok {
			t.Errorf("pending registration got tokens: %s", res.body)
		}
		checkUser(t, m["user"].(map[string]any), map[string]any{
			"username": "alice", "email": "alice@example.com", "first_name": "Alice", "full_name": "Alice",
			"role": "user", "status": "pending", "is_active": false, "online_status": "offline", "is_online": false,
			"last_seen": nil,
		})
		h.do("POST", "/api/users/login/", "", map[string]string{"username": "alice", "password": testPassword}).
			want(t, http.StatusForbidden, `{"error":"Account is pending approval"}`)
	})

	t.Run("open creates an active account and logs in", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.Registration = RegistrationOpen })
		res := h.do("POST", "/api/auth/register", "", body)
		res.wantStatus(t, http.StatusCreated)
		var out struct {
			User   map[string]any `json:"user"`
			Tokens tokenPair      `json:"tokens"`
		}
		res.decode(t, &out)
		checkUser(t, out.User, map[string]any{"status": "active", "is_active": true, "online_status": "online", "is_online": true})
		if cc := res.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control: got %q, want no-store", cc)
		}
		h.do("GET", "/api/users/profile/", out.Tokens.Access, nil).wantStatus(t, http.StatusOK)
		h.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": out.Tokens.Refresh}).wantStatus(t, http.StatusOK)
	})

	t.Run("closed refuses", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.Registration = RegistrationClosed })
		h.do("POST", "/api/users/register/", "", body).want(t, http.StatusForbidden, `{"error":"Registration is closed"}`)
	})

	t.Run("refusals", func(t *testing.T) {
		h := newHarness(t)
		h.user("taken", presence.RoleUser, presence.StatusActive)
		for _, tc := range []struct {
			name string
			body any
			want string
		}{
			{"taken username, other case", map[string]string{"username": "TAKEN", "password": testPassword},
				`{"error":"A user with that username already exists."}`},
			{"missing username", map[string]string{"password": testPassword}, `{"error":"username is required"}`},
			{"missing password", map[string]string{"username": "bob"}, `{"error":"password is required"}`},
			{"short password", map[string]string{"username": "bob", "password": "short"},
				`{"error":"password must be 8 to 128 characters"}`},
			{"long password", map[string]string{"username": "bob", "password": strings.Repeat("p", 129)},
				`{"error":"password must be 8 to 128 characters"}`},
			{"short username", map[string]string{"username": "bo", "password": testPassword},
				`{"error":"username must be 3 to 150 characters"}`},
			{"bad username", map[string]string{"username": "bob smith", "password": testPassword},
				`{"error":"username may contain only letters, digits and @.+-_"}`},
			{"bad email", map[string]string{"username": "bob", "password": testPassword, "email": "not an email"},
				`{"error":"email is not a valid address"}`},
			{"control character in name", map[string]string{"username": "bob", "password": testPassword, "last_name": "a\x01b"},
				`{"error":"last_name must not contain control characters"}`},
			{"wrong type", `{"username": 5, "password": "x"}`, `{"error":"username: want a string, got number"}`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h.do("POST", "/api/users/register/", "", tc.body).want(t, http.StatusBadRequest, tc.want)
			})
		}
	})

	t.Run("ignores a stale Authorization header", func(t *testing.T) {
		h := newHarness(t)
		h.do("POST", "/api/users/register/", "garbage", body).wantStatus(t, http.StatusCreated)
	})
}

func TestLogin(t *testing.T) {
	h := newHarness(t)
	h.user("alice", presence.RoleUser, presence.StatusActive)
	h.user("pending", presence.RoleUser, presence.StatusPending)
	h.user("suspended", presence.RoleUser, presence.StatusSuspended)
	h.user("banned", presence.RoleUser, presence.StatusBanned)

	t.Run("success", func(t *testing.T) {
		req, _ := http.NewRequest("POST", h.url+"/api/users/login/",
			strings.NewReader(`{"username":"ALICE","password":"`+testPassword+`","extra":"ignored"}`))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("User-Agent", "test-agent/1.0")
		res := h.send(req)
		res.wantStatus(t, http.StatusOK)
		var out struct {
			User   map[string]any `json:"user"`
			Tokens tokenPair      `json:"tokens"`
		}
		res.decode(t, &out)
		checkUser(t, out.User, map[string]any{"username": "alice", "status": "active", "online_status": "online", "is_online": true})
		if s, _ := out.User["last_seen"].(string); !timeRE.MatchString(s) {
			t.Errorf("last_seen: got %v, want a time", out.User["last_seen"])
		}
		if cc := res.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control: got %q, want no-store", cc)
		}
		claims, err := h.tokens.ParseAccess(out.Tokens.Access)
		if err != nil {
			t.Fatalf("ParseAccess: %v", err)
		}
		sessions, err := h.store.Sessions(context.Background(), claims.UserID)
		if err != nil {
			t.Fatal(err)
		}
		if len(sessions) != 1 || sessions[0].UserAgent != "test-agent/1.0" || sessions[0].ID != claims.SessionID {
			t.Errorf("sessions: got %+v, want one with user agent test-agent/1.0 and id %s", sessions, claims.SessionID)
		}
	})

	for _, tc := range []struct {
		name   string
		body   any
		status int
		want   string
	}{
		{"wrong password", map[string]string{"username": "alice", "password": "wrong-password"}, 401, `{"error":"Invalid credentials"}`},
		{"unknown user", map[string]string{"username": "nobody", "password": testPassword}, 401, `{"error":"Invalid credentials"}`},
		{"malformed username is just unknown", map[string]string{"username": "a b", "password": testPassword}, 401, `{"error":"Invalid credentials"}`},
		{"pending", map[string]string{"username": "pending", "password": testPassword}, 403, `{"error":"Account is pending approval"}`},
		{"suspended", map[string]string{"username": "suspended", "password": testPassword}, 403, `{"error":"Account is suspended"}`},
		{"banned", map[string]string{"username": "banned", "password": testPassword}, 403, `{"error":"Account is banned"}`},
		// Without the password, the account state is not told.
		{"banned, wrong password", map[string]string{"username": "banned", "password": "wrong-password"}, 401, `{"error":"Invalid credentials"}`},
		{"missing username", map[string]string{"password": testPassword}, 400, `{"error":"username is required"}`},
		{"missing password", map[string]string{"username": "alice"}, 400, `{"error":"password is required"}`},
		{"empty body", "", 400, `{"error":"username is required"}`},
		{"username too long", map[string]string{"username": strings.Repeat("a", 151), "password": testPassword}, 400,
			`{"error":"username must be at most 150 characters"}`},
		{"password too long", map[string]string{"username": "alice", "password": strings.Repeat("é", 129)}, 400,
			`{"error":"password must be at most 128 characters"}`},
		{"password of wrong type", `{"username":"alice","password":12345678}`, 400, `{"error":"password: want a string, got number"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.do("POST", "/api/auth/login/", "", tc.body).want(t, tc.status, tc.want)
		})
	}

	t.Run("ignores a stale Authorization header", func(t *testing.T) {
		h.do("POST", "/api/users/login/", "not-a-token", map[string]string{"username": "alice", "password": testPassword}).
			wantStatus(t, http.StatusOK)
	})
}

// sessionRef is the session an access token names.
func (h *harness) sessionRef(access string) presence.SessionRef {
	h.t.Helper()
	c, err := h.tokens.ParseAccess(access)
	if err != nil {
		h.t.Fatalf("ParseAccess: %v", err)
	}
	return c.SessionRef
}

// onlineStatus is the user's online_status as admins see it.
func (h *harness) onlineStatus(id int64) presence.OnlineStatus {
	h.t.Helper()
	u, err := h.store.User(context.Background(), id)
	if err != nil {
		h.t.Fatalf("User(%d): %v", id, err)
	}
	return u.OnlineStatus
}

func TestLogout(t *testing.T) {
	const ok = `{"message":"Logout successful"}`

	t.Run("with the access token", func(t *testing.T) {
		h := newHarness(t)
		u, tok := h.userWithLogin("alice", presence.RoleUser)
		h.do("POST", "/api/users/logout/", tok.Access, nil).want(t, http.StatusOK, ok)
		if got := h.onlineStatus(u.ID); got != presence.Offline {
			t.Errorf("online_status after logout: got %s, want offline", got)
		}
		h.do("POST", "/api/users/heartbeat/", tok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("GET", "/api/users/profile/", tok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": tok.Refresh}).wantStatus(t, http.StatusUnauthorized)
		// The heartbeat did not bring the session back.
		if got := h.onlineStatus(u.ID); got != presence.Offline {
			t.Errorf("online_status after a late heartbeat: got %s, want offline", got)
		}
		h.do("POST", "/api/users/logout/", tok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	})

	t.Run("with the refresh token only", func(t *testing.T) {
		h := newHarness(t)
		_, tok := h.userWithLogin("alice", presence.RoleUser)
		h.do("POST", "/api/users/logout/", "", map[string]string{"refresh": tok.Refresh}).want(t, http.StatusOK, ok)
		h.do("GET", "/api/users/profile/", tok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("POST", "/api/users/logout/", "", map[string]string{"refresh": tok.Refresh}).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	})

	t.Run("refresh_token alias, with an expired access token", func(t *testing.T) {
		h := newHarness(t)
		_, tok := h.userWithLogin("alice", presence.RoleUser)
		expired := h.expiredAccess(tok.Access)
		h.do("POST", "/api/auth/logout", expired, map[string]string{"refresh_token": tok.Refresh}).want(t, http.StatusOK, ok)
		h.do("GET", "/api/users/profile/", tok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	})

	t.Run("another session of the same user named in the body", func(t *testing.T) {
		h := newHarness(t)
		u, tok1 := h.userWithLogin("alice", presence.RoleUser)
		tok2 := h.login("alice")
		tok3 := h.login("alice")
		h.do("POST", "/api/users/logout/", tok1.Access, map[string]string{"refresh": tok2.Refresh}).want(t, http.StatusOK, ok)
		h.do("GET", "/api/users/profile/", tok1.Access, nil).wantStatus(t, http.StatusUnauthorized)
		h.do("GET", "/api/users/profile/", tok2.Access, nil).wantStatus(t, http.StatusUnauthorized)
		h.do("GET", "/api/users/profile/", tok3.Access, nil).wantStatus(t, http.StatusOK)
		if got := h.onlineStatus(u.ID); got != presence.Online {
			t.Errorf("online_status with a third session live: got %s, want online", got)
		}
	})

	t.Run("another user's refresh token in the body is ignored", func(t *testing.T) {
		h := newHarness(t)
		_, alice := h.userWithLogin("alice", presence.RoleUser)
		_, bob := h.userWithLogin("bob", presence.RoleUser)
		h.do("POST", "/api/users/logout/", alice.Access, map[string]string{"refresh": bob.Refresh}).want(t, http.StatusOK, ok)
		h.do("GET", "/api/users/profile/", bob.Access, nil).wantStatus(t, http.StatusOK)
	})

	t.Run("refusals", func(t *testing.T) {
		h := newHarness(t)
		_, tok := h.userWithLogin("alice", presence.RoleUser)
		h.do("POST", "/api/users/logout/", "", nil).want(t, http.StatusUnauthorized, bodyNotAuth)
		h.do("POST", "/api/users/logout/", "", map[string]string{"refresh": tok.Access}).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("POST", "/api/users/logout/", "garbage", nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("POST", "/api/users/logout/", "", map[string]string{"refresh": "garbage"}).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	})
}

func TestLogoutAllDevices(t *testing.T) {
	h := newHarness(t)
	u, tok1 := h.userWithLogin("alice", presence.RoleUser)
	tok2 := h.login("alice")
	_, bob := h.userWithLogin("bob", presence.RoleUser)
	h.do("POST", "/api/users/logout-all-devices/", tok1.Access, nil).
		want(t, http.StatusOK, `{"message":"Logged out from all devices"}`)
	for _, tok := range []tokenPair{tok1, tok2} {
		h.do("POST", "/api/users/heartbeat/", tok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": tok.Refresh}).wantStatus(t, http.StatusUnauthorized)
	}
	if got := h.onlineStatus(u.ID); got != presence.Offline {
		t.Errorf("online_status: got %s, want offline", got)
	}
	h.do("POST", "/api/users/heartbeat/", bob.Access, nil).wantStatus(t, http.StatusOK)
	h.do("POST", "/api/users/logout-all-devices/", tok1.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	h.do("POST", "/api/users/logout-all-devices/", "", nil).want(t, http.StatusUnauthorized, bodyNotAuth)
}

func TestRefresh(t *testing.T) {
	t.Run("rotation, then reuse ends the session", func(t *testing.T) {
		h := newHarness(t)
		u, tok := h.userWithLogin("alice", presence.RoleUser)
		res := h.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": tok.Refresh})
		res.wantStatus(t, http.StatusOK)
		var next tokenPair
		res.decode(t, &next)
		if next.Access == "" || next.Refresh == "" || next.Refresh == tok.Refresh {
			t.Fatalf("refresh: got %s, want a new pair", res.body)
		}
		if got, want := h.sessionRef(next.Access), h.sessionRef(tok.Access); got != want {
			t.Errorf("new access token names session %+v, want %+v", got, want)
		}
		h.do("GET", "/api/users/profile/", next.Access, nil).wantStatus(t, http.StatusOK)

		// The old refresh token again: treated as stolen.
		h.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": tok.Refresh}).
			want(t, http.StatusUnauthorized, `{"detail":"Token has already been used","code":"token_not_valid"}`)
		h.do("GET", "/api/users/profile/", next.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": next.Refresh}).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		if got := h.onlineStatus(u.ID); got != presence.Offline {
			t.Errorf("online_status: got %s, want offline", got)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		h := newHarness(t)
		_, tok := h.userWithLogin("alice", presence.RoleUser)
		h.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": tok.Access}).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": "garbage"}).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("POST", "/api/users/refresh/", "", map[string]string{}).want(t, http.StatusBadRequest, `{"error":"refresh is required"}`)
		h.do("POST", "/api/users/refresh/", "", `{"refresh": 1}`).want(t, http.StatusBadRequest, `{"error":"refresh: want a string, got number"}`)
	})

	t.Run("suspended account", func(t *testing.T) {
		h := newHarness(t)
		u, tok := h.userWithLogin("alice", presence.RoleUser)
		st := presence.StatusSuspended
		if _, err := h.store.UpdateUser(context.Background(), u.ID, presence.UserUpdate{Status: &st}); err != nil {
			t.Fatal(err)
		}
		h.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": tok.Refresh}).wantStatus(t, http.StatusUnauthorized)
	})
}

func TestVerify(t *testing.T) {
	h := newHarness(t)
	_, tok := h.userWithLogin("alice", presence.RoleUser)
	h.do("POST", "/api/users/verify/", "", map[string]string{"token": tok.Access}).want(t, http.StatusOK, `{}`)
	h.do("POST", "/api/auth/verify", "", map[string]string{"token": tok.Refresh}).want(t, http.StatusOK, `{}`)
	h.do("POST", "/api/users/verify/", "", map[string]string{"token": "garbage"}).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	h.do("POST", "/api/users/verify/", "", map[string]string{"token": h.expiredAccess(tok.Access)}).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	h.do("POST", "/api/users/verify/", "", map[string]string{}).want(t, http.StatusBadRequest, `{"error":"token is required"}`)
	h.do("POST", "/api/users/logout/", tok.Access, nil).wantStatus(t, http.StatusOK)
	h.do("POST", "/api/users/verify/", "", map[string]string{"token": tok.Access}).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	h.do("POST", "/api/users/verify/", "", map[string]string{"token": tok.Refresh}).want(t, http.StatusUnauthorized, bodyTokenNotValid)
}

func TestProfile(t *testing.T) {
	h := newHarness(t)
	u, tok := h.userWithLogin("alice", presence.RoleModerator)
	res := h.do("GET", "/api/users/profile/", tok.Access, nil)
	res.wantStatus(t, http.StatusOK)
	checkUser(t, res.json(t), map[string]any{
		"id": u.ID, "username": "alice", "email": "alice@example.com", "first_name": "First", "last_name": "Alice",
		"full_name": "First Alice", "role": "moderator", "status": "active", "is_active": true,
		"online_status": "online", "is_online": true,
	})
	h.do("GET", "/api/users/profile/", "", nil).want(t, http.StatusUnauthorized, bodyNotAuth)
}

// expiredAccess returns an access token for the session of access that
// expired an hour ago.
func (h *harness) expiredAccess(access string) string {
	h.t.Helper()
	past, err := auth.NewTokens(auth.TokenConfig{Secret: []byte(testSecret), Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	if err != nil {
		h.t.Fatal(err)
	}
	pair, err := past.Issue(h.sessionRef(access))
	if err != nil {
		h.t.Fatal(err)
	}
	return pair.Access
}

func TestBadTokens(t *testing.T) {
	h := newHarness(t)
	_, tok := h.userWithLogin("alice", presence.RoleUser)
	parts := strings.Split(tok.Access, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	// The same claims, unsigned.
	algNone := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	// The signature of another token: valid base64, wrong MAC.
	tampered := parts[0] + "." + parts[1] + "." + strings.Split(tok.Refresh, ".")[2]
	other, err := auth.NewTokens(auth.TokenConfig{Secret: []byte(strings.Repeat("x", 32))})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.Issue(h.sessionRef(tok.Access))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		header string
		status int
		want   string
	}{
		{"missing", "", 401, bodyNotAuth},
		{"other scheme", "Basic dXNlcjpwYXNz", 401, bodyNotAuth},
		{"bearer without token", "Bearer ", 401, bodyTokenNotValid},
		{"bearer with two words", "Bearer a b", 401, bodyTokenNotValid},
		{"garbage", "Bearer garbage", 401, bodyTokenNotValid},
		{"expired", "Bearer " + h.expiredAccess(tok.Access), 401, bodyTokenNotValid},
		{"tampered", "Bearer " + tampered, 401, bodyTokenNotValid},
		{"alg none", "Bearer " + algNone, 401, bodyTokenNotValid},
		{"other secret", "Bearer " + forged.Access, 401, bodyTokenNotValid},
		{"refresh token", "Bearer " + tok.Refresh, 401, bodyTokenNotValid},
		{"lower-case scheme", "bearer " + tok.Access, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", h.url+"/api/users/profile/", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			res := h.send(req)
			if tc.want == "" {
				res.wantStatus(t, tc.status)
				return
			}
			res.want(t, tc.status, tc.want)
		})
	}
}
