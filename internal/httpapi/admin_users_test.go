package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/presenced/presenced/internal/presence"
)

// page is one page of the admin listing.
type page struct {
	Count    int64            `json:"count"`
	Next     *string          `json:"next"`
	Previous *string          `json:"previous"`
	Results  []map[string]any `json:"results"`
}

// adminHarness is a harness with a logged-in admin.
func adminHarness(t *testing.T) (*harness, presence.User, tokenPair) {
	t.Helper()
	h := newHarness(t)
	admin, tok := h.userWithLogin("admin", presence.RoleAdmin)
	return h, admin, tok
}

func usernames(rows []map[string]any) []string {
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprint(r["username"]))
	}
	sort.Strings(out)
	return out
}

func TestListUsers(t *testing.T) {
	h, _, tok := adminHarness(t)
	names := []string{"admin"}
	for i := range 6 {
		name := fmt.Sprintf("user%d", i)
		h.user(name, presence.RoleUser, presence.StatusActive)
		names = append(names, name)
	}
	h.user("waiting", presence.RoleUser, presence.StatusPending)
	h.user("mod", presence.RoleModerator, presence.StatusActive)
	names = append(names, "waiting", "mod")
	sort.Strings(names)

	t.Run("paging follows next until null", func(t *testing.T) {
		var seen []map[string]any
		next := "/api/users/admin/users/?per_page=3"
		for pages := 0; next != ""; pages++ {
			if pages > 10 {
				t.Fatal("more than 10 pages of 3 for 9 users")
			}
			path := next
			if strings.HasPrefix(next, "http") {
				u, err := url.Parse(next)
				if err != nil || u.Scheme != "http" || h.url != "http://"+u.Host {
					t.Fatalf("next %q: want an absolute URL on %s", next, h.url)
				}
				if got := u.Query().Get("per_page"); got != "3" {
					t.Errorf("next %q: per_page got %q, want 3", next, got)
				}
				path = u.RequestURI()
			} else if pages > 0 {
				t.Fatalf("next %q is not absolute", next)
			}
			res := h.do("GET", path, tok.Access, nil)
			res.wantStatus(t, http.StatusOK)
			var p page
			res.decode(t, &p)
			if p.Count != int64(len(names)) || p.Previous != nil {
				t.Errorf("page: count %d previous %v, want %d and null", p.Count, p.Previous, len(names))
			}
			if p.Next != nil && len(p.Results) != 3 {
				t.Errorf("non-final page has %d rows, want 3", len(p.Results))
			}
			for _, u := range p.Results {
				checkUser(t, u, nil)
			}
			seen = append(seen, p.Results...)
			next = ""
			if p.Next != nil {
				next = *p.Next
			}
		}
		if got := usernames(seen); fmt.Sprint(got) != fmt.Sprint(names) {
			t.Errorf("full pass: got %v, want each of %v once", got, names)
		}
	})

	t.Run("default page size", func(t *testing.T) {
		var p page
		res := h.do("GET", "/api/auth/admin/users", tok.Access, nil)
		res.wantStatus(t, http.StatusOK)
		res.decode(t, &p)
		if len(p.Results) != len(names) || p.Next != nil {
			t.Errorf("got %d rows, next %v; want all %d, next null", len(p.Results), p.Next, len(names))
		}
	})

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"role=moderator", []string{"mod"}},
		{"role=admin", []string{"admin"}},
		{"status=pending", []string{"waiting"}},
		{"online_status=online", []string{"admin"}},
		{"search=USER3", []string{"user3"}},
		{"search=wait&status=pending", []string{"waiting"}},
		{"search=nobody", nil},
	} {
		t.Run("filter "+tc.query, func(t *testing.T) {
			var p page
			res := h.do("GET", "/api/users/admin/users/?"+tc.query, tok.Access, nil)
			res.wantStatus(t, http.StatusOK)
			res.decode(t, &p)
			if got := usernames(p.Results); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if p.Count != int64(len(names)) {
				t.Errorf("count: got %d, want %d (filters do not change it)", p.Count, len(names))
			}
		})
	}

	t.Run("next repeats the filters", func(t *testing.T) {
		var p page
		res := h.do("GET", "/api/users/admin/users/?per_page=2&role=user&status=active&search=user", tok.Access, nil)
		res.decode(t, &p)
		if p.Next == nil {
			t.Fatalf("got %s, want a next page", res.body)
		}
		u, _ := url.Parse(*p.Next)
		q := u.Query()
		for k, v := range map[string]string{"per_page": "2", "role": "user", "status": "active", "search": "user"} {
			if q.Get(k) != v {
				t.Errorf("next %s: %s got %q, want %q", *p.Next, k, q.Get(k), v)
			}
		}
		if u.Path != "/api/users/admin/users/" || q.Get("cursor") == "" {
			t.Errorf("next %s: want the same path with a cursor", *p.Next)
		}
	})

	t.Run("scheme from X-Forwarded-Proto", func(t *testing.T) {
		for proto, want := range map[string]string{"https": "https://", "HTTPS, http": "https://", "gopher": "http://"} {
			req, _ := http.NewRequest("GET", h.url+"/api/users/admin/users/?per_page=1", nil)
			req.Header.Set("Authorization", "Bearer "+tok.Access)
			req.Header.Set("X-Forwarded-Proto", proto)
			var p page
			h.send(req).decode(t, &p)
			if p.Next == nil || !strings.HasPrefix(*p.Next, want) {
				t.Errorf("X-Forwarded-Proto %q: next %v, want it to start with %s", proto, p.Next, want)
			}
		}
	})

	for _, tc := range []struct{ query, want string }{
		{"per_page=0", `{"error":"per_page must be an integer from 1 to 1000"}`},
		{"per_page=1001", `{"error":"per_page must be an integer from 1 to 1000"}`},
		{"per_page=abc", `{"error":"per_page must be an integer from 1 to 1000"}`},
		{"per_page=-1", `{"error":"per_page must be an integer from 1 to 1000"}`},
		{"role=root", `{"error":"role must be one of admin, moderator, user"}`},
		{"status=gone", `{"error":"status must be one of active, pending, suspended, banned"}`},
		{"online_status=busy", `{"error":"online_status must be one of online, away, offline"}`},
		{"search=" + strings.Repeat("x", 151), `{"error":"search must be at most 150 characters of valid UTF-8"}`},
		{"search=%ff", `{"error":"search must be at most 150 characters of valid UTF-8"}`},
		{"cursor=garbage", `{"error":"Invalid cursor"}`},
		{"per_page=%zz", `{"error":"Invalid query string"}`},
	} {
		t.Run("refuses "+tc.query, func(t *testing.T) {
			h.do("GET", "/api/users/admin/users/?"+tc.query, tok.Access, nil).want(t, http.StatusBadRequest, tc.want)
		})
	}
}

func TestCreateUser(t *testing.T) {
	h, _, tok := adminHarness(t)
	res := h.do("POST", "/api/users/admin/users/", tok.Access, map[string]string{"username": "bob", "password": testPassword})
	res.wantStatus(t, http.StatusCreated)
	checkUser(t, res.json(t), map[string]any{"username": "bob", "role": "user", "status": "active", "email": "", "online_status": "offline", "last_seen": nil})
	h.login("bob")

	res = h.do("POST", "/api/users/admin/users/", tok.Access, map[string]string{
		"username": "carol", "password": testPassword, "role": "moderator", "status": "pending",
		"email": "carol@example.com", "first_name": "Carol", "last_name": "King",
	})
	res.wantStatus(t, http.StatusCreated)
	checkUser(t, res.json(t), map[string]any{"role": "moderator", "status": "pending", "full_name": "Carol King", "is_active": false})

	for _, tc := range []struct {
		name string
		body map[string]string
		want string
	}{
		{"taken", map[string]string{"username": "Bob", "password": testPassword}, `{"error":"A user with that username already exists."}`},
		{"bad role", map[string]string{"username": "dave", "password": testPassword, "role": "root"}, `{"error":"role must be one of admin, moderator, user"}`},
		{"bad status", map[string]string{"username": "dave", "password": testPassword, "status": "gone"}, `{"error":"status must be one of active, pending, suspended, banned"}`},
		{"missing password", map[string]string{"username": "dave"}, `{"error":"password is required"}`},
		{"missing username", map[string]string{"password": testPassword}, `{"error":"username is required"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.do("POST", "/api/users/admin/users/", tok.Access, tc.body).want(t, http.StatusBadRequest, tc.want)
		})
	}
}

func TestGetUser(t *testing.T) {
	h, _, tok := adminHarness(t)
	bob := h.user("bob", presence.RoleUser, presence.StatusActive)
	req, _ := http.NewRequest("POST", h.url+"/api/users/login/", strings.NewReader(`{"username":"bob","password":"`+testPassword+`"}`))
	req.Header.Set("User-Agent", "bob-phone")
	h.send(req).wantStatus(t, http.StatusOK)

	res := h.do("GET", fmt.Sprintf("/api/users/admin/users/%d/", bob.ID), tok.Access, nil)
	res.wantStatus(t, http.StatusOK)
	m := res.json(t)
	checkUser(t, m, map[string]any{"id": bob.ID, "username": "bob", "online_status": "online"})
	sessions, _ := m["sessions"].([]any)
	if len(sessions) != 1 {
		t.Fatalf("sessions: got %v, want one", m["sessions"])
	}
	s := sessions[0].(map[string]any)
	if s["user_agent"] != "bob-phone" || s["live"] != true || s["id"] == "" || !timeRE.MatchString(fmt.Sprint(s["created_at"])) {
		t.Errorf("session: got %v, want live, user agent bob-phone", s)
	}

	for _, path := range []string{"/api/users/admin/users/424242/", "/api/users/admin/users/0/", "/api/users/admin/users/99999999999999999999/"} {
		h.do("GET", path, tok.Access, nil).want(t, http.StatusNotFound, bodyUserNotFound)
	}
	h.do("GET", "/api/users/admin/users/abc/", tok.Access, nil).want(t, http.StatusNotFound, `{"error":"Not found"}`)
}

func TestUpdateUser(t *testing.T) {
	h, admin, tok := adminHarness(t)
	bob, bobTok := h.userWithLogin("bob", presence.RoleUser)
	path := fmt.Sprintf("/api/users/admin/users/%d/", bob.ID)

	res := h.do("PUT", path, tok.Access, map[string]string{"email": "bob@new.example", "first_name": "Robert", "role": "moderator"})
	res.wantStatus(t, http.StatusOK)
	checkUser(t, res.json(t), map[string]any{"email": "bob@new.example", "first_name": "Robert", "role": "moderator", "status": "active"})
	// The new role applies at once: moderators may list.
	h.do("GET", "/api/users/admin/users/", bobTok.Access, nil).wantStatus(t, http.StatusOK)

	res = h.do("PUT", path, tok.Access, map[string]string{"status": "suspended"})
	res.wantStatus(t, http.StatusOK)
	checkUser(t, res.json(t), map[string]any{"status": "suspended", "is_active": false, "online_status": "offline"})
	h.do("POST", "/api/users/heartbeat/", bobTok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)

	self := fmt.Sprintf("/api/users/admin/users/%d/", admin.ID)
	for _, tc := range []struct {
		name, path string
		body       any
		status     int
		want       string
	}{
		{"no field", path, `{}`, 400, `{"error":"Give at least one of email, first_name, last_name, role, status"}`},
		{"only unknown fields", path, `{"username":"x"}`, 400, `{"error":"Give at least one of email, first_name, last_name, role, status"}`},
		{"bad role", path, `{"role":"root"}`, 400, `{"error":"role must be one of admin, moderator, user"}`},
		{"bad status", path, `{"status":"gone"}`, 400, `{"error":"status must be one of active, pending, suspended, banned"}`},
		{"bad email", path, `{"email":"x"}`, 400, `{"error":"email is not a valid address"}`},
		{"long name", path, map[string]string{"last_name": strings.Repeat("n", 151)}, 400, `{"error":"last_name must be at most 150 characters"}`},
		{"self demote", self, `{"role":"user"}`, 400, `{"error":"You cannot demote your own account"}`},
		{"self suspend", self, `{"status":"suspended"}`, 400, `{"error":"You cannot deactivate your own account"}`},
		{"unknown user", "/api/users/admin/users/424242/", `{"email":""}`, 404, bodyUserNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.do("PUT", tc.path, tok.Access, tc.body).want(t, tc.status, tc.want)
		})
	}
	// Unchanged role and status on oneself are fine.
	h.do("PUT", self, tok.Access, `{"role":"admin","status":"active","first_name":"Ada"}`).wantStatus(t, http.StatusOK)
}

func TestDeleteUser(t *testing.T) {
	h, admin, tok := adminHarness(t)
	bob, bobTok := h.userWithLogin("bob", presence.RoleUser)
	path := fmt.Sprintf("/api/users/admin/users/%d/", bob.ID)
	h.do("DELETE", path, tok.Access, nil).want(t, http.StatusOK, `{"message":"User deleted"}`)
	h.do("DELETE", path, tok.Access, nil).want(t, http.StatusNotFound, bodyUserNotFound)
	h.do("GET", path, tok.Access, nil).want(t, http.StatusNotFound, bodyUserNotFound)
	h.do("GET", "/api/users/profile/", bobTok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	h.do("DELETE", fmt.Sprintf("/api/users/admin/users/%d", admin.ID), tok.Access, nil).
		want(t, http.StatusBadRequest, `{"error":"You cannot delete your own account"}`)
}

func TestUserActions(t *testing.T) {
	h, admin, tok := adminHarness(t)
	action := func(id int64, name string) result {
		t.Helper()
		return h.do("POST", fmt.Sprintf("/api/users/admin/users/%d/%s/", id, name), tok.Access, nil)
	}
	loginStatus := func(name string) result {
		t.Helper()
		return h.do("POST", "/api/users/login/", "", map[string]string{"username": name, "password": testPassword})
	}

	t.Run("approve", func(t *testing.T) {
		u := h.user("newbie", presence.RoleUser, presence.StatusPending)
		action(u.ID, "approve").want(t, http.StatusOK, `{"message":"User approved"}`)
		loginStatus("newbie").wantStatus(t, http.StatusOK)
		action(u.ID, "approve").want(t, http.StatusOK, `{"message":"User approved"}`) // idempotent
	})

	t.Run("suspend, then activate", func(t *testing.T) {
		u, utok := h.userWithLogin("sam", presence.RoleUser)
		action(u.ID, "suspend").want(t, http.StatusOK, `{"message":"User suspended"}`)
		h.do("POST", "/api/users/heartbeat/", utok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		if got := h.onlineStatus(u.ID); got != presence.Offline {
			t.Errorf("online_status: got %s, want offline", got)
		}
		loginStatus("sam").want(t, http.StatusForbidden, `{"error":"Account is suspended"}`)
		action(u.ID, "activate").want(t, http.StatusOK, `{"message":"User activated"}`)
		loginStatus("sam").wantStatus(t, http.StatusOK)
		// Sessions ended by the suspension stay ended.
		h.do("POST", "/api/users/heartbeat/", utok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	})

	t.Run("ban", func(t *testing.T) {
		u, utok := h.userWithLogin("troll", presence.RoleUser)
		action(u.ID, "ban").want(t, http.StatusOK, `{"message":"User banned"}`)
		h.do("GET", "/api/users/profile/", utok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		loginStatus("troll").want(t, http.StatusForbidden, `{"error":"Account is banned"}`)
	})

	t.Run("force-logout", func(t *testing.T) {
		u, utok := h.userWithLogin("fred", presence.RoleUser)
		action(u.ID, "force-logout").want(t, http.StatusOK, `{"message":"User logged out from all devices"}`)
		h.do("GET", "/api/users/profile/", utok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		loginStatus("fred").wantStatus(t, http.StatusOK)
		action(u.ID, "force-logout").want(t, http.StatusOK, `{"message":"User logged out from all devices"}`)
	})

	t.Run("refusals", func(t *testing.T) {
		action(admin.ID, "suspend").want(t, http.StatusBadRequest, `{"error":"You cannot suspend your own account"}`)
		action(admin.ID, "ban").want(t, http.StatusBadRequest, `{"error":"You cannot ban your own account"}`)
		h.do("GET", "/api/users/profile/", tok.Access, nil).wantStatus(t, http.StatusOK)
		for _, name := range []string{"approve", "suspend", "ban", "activate", "force-logout"} {
			action(424242, name).want(t, http.StatusNotFound, bodyUserNotFound)
		}
		h.do("POST", "/api/users/admin/users/99999999999999999999/ban/", tok.Access, nil).want(t, http.StatusNotFound, bodyUserNotFound)
	})
}

func TestOnlineUsers(t *testing.T) {
	h, admin, tok := adminHarness(t)
	bob, _ := h.userWithLogin("bob", presence.RoleUser)
	h.user("carol", presence.RoleUser, presence.StatusActive)

	res := h.do("GET", "/api/users/admin/users/online/", tok.Access, nil)
	res.wantStatus(t, http.StatusOK)
	var out struct {
		OnlineUsers []map[string]any `json:"online_users"`
		Count       int              `json:"count"`
	}
	res.decode(t, &out)
	if got := usernames(out.OnlineUsers); fmt.Sprint(got) != "[admin bob]" || out.Count != 2 {
		t.Errorf("got %v count %d, want [admin bob] count 2", got, out.Count)
	}

	res = h.do("GET", fmt.Sprintf("/api/users/admin/users/%d/online-status/", bob.ID), tok.Access, nil)
	res.wantStatus(t, http.StatusOK)
	m := res.json(t)
	if m["user_id"] != float64(bob.ID) || m["username"] != "bob" || m["online_status"] != "online" || m["is_online"] != true ||
		!timeRE.MatchString(fmt.Sprint(m["last_seen"])) || len(m) != 5 {
		t.Errorf("online-status: got %s", res.body)
	}
	_ = admin
	h.do("GET", "/api/users/admin/users/424242/online-status/", tok.Access, nil).want(t, http.StatusNotFound, bodyUserNotFound)
}

func TestAllUsers(t *testing.T) {
	h, _, tok := adminHarness(t)
	// More than one listing page (1000), so the stream spans pages.
	const extra = presence.MaxPerPage + 4
	ctx := context.Background()
	for i := range extra {
		if _, err := h.store.CreateUser(ctx, presence.NewUser{
			Username: fmt.Sprintf("bulk%04d", i), Role: presence.RoleUser, Status: presence.StatusActive, PasswordHash: "x",
		}); err != nil {
			t.Fatal(err)
		}
	}
	res := h.do("GET", "/api/users/all-users/", tok.Access, nil)
	res.wantStatus(t, http.StatusOK)
	var out struct {
		Users []map[string]any `json:"users"`
		Count int              `json:"count"`
	}
	res.decode(t, &out)
	seen := map[string]bool{}
	for _, u := range out.Users {
		seen[fmt.Sprint(u["username"])] = true
	}
	if out.Count != extra+1 || len(out.Users) != extra+1 || len(seen) != extra+1 {
		t.Errorf("got count %d, %d users (%d distinct), want %d each", out.Count, len(out.Users), len(seen), extra+1)
	}
}

// adminRoutes are every staff route, with whether moderators may use it.
func adminRoutes(id int64) []struct {
	method, path string
	modOK        bool
} {
	p := fmt.Sprintf("/api/users/admin/users/%d/", id)
	return []struct {
		method, path string
		modOK        bool
	}{
		{"GET", "/api/users/admin/users/", true},
		{"POST", "/api/users/admin/users/", false},
		{"GET", "/api/users/admin/users/online/", true},
		{"GET", p, true},
		{"PUT", p, false},
		{"DELETE", p, false},
		{"POST", p + "approve/", false},
		{"POST", p + "suspend/", false},
		{"POST", p + "ban/", false},
		{"POST", p + "activate/", false},
		{"POST", p + "force-logout/", false},
		{"GET", p + "online-status/", true},
		{"GET", "/api/users/all-users/", true},
	}
}

func TestAdminRoutesNeedRoles(t *testing.T) {
	h := newHarness(t)
	target := h.user("target", presence.RoleUser, presence.StatusActive)
	_, user := h.userWithLogin("plain", presence.RoleUser)
	_, mod := h.userWithLogin("mod", presence.RoleModerator)
	for _, rt := range adminRoutes(target.ID) {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			h.do(rt.method, rt.path, user.Access, nil).want(t, http.StatusForbidden, bodyForbidden)
			h.do(rt.method, rt.path, "", nil).want(t, http.StatusUnauthorized, bodyNotAuth)
			res := h.do(rt.method, rt.path, mod.Access, nil)
			if rt.modOK {
				res.wantStatus(t, http.StatusOK)
			} else {
				res.want(t, http.StatusForbidden, bodyForbidden)
			}
		})
	}
	// Nothing a moderator tried changed the target.
	u, err := h.store.User(context.Background(), target.ID)
	if err != nil || u.Status != presence.StatusActive {
		t.Errorf("target after the attempts: %+v, %v; want active", u, err)
	}
}
