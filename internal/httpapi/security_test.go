package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
)

// forged builds header.payload.signature from a real token's claims, changed
// by mutate, under header, signed by sign (which gets the signing input).
func forged(t *testing.T, real string, header map[string]any, mutate func(c map[string]any), sign func(input string) string) string {
	t.Helper()
	parts := strings.Split(real, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(claims)
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(claims)
	return input + "." + sign(input)
}

// macWith signs with an HMAC of h under key.
func macWith(h func() hash.Hash, key string) func(string) string {
	return func(input string) string {
		m := hmac.New(h, []byte(key))
		m.Write([]byte(input))
		return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
}

var (
	hs256Header = map[string]any{"alg": "HS256", "typ": "JWT"}
	signHS256   = macWith(sha256.New, testSecret)
)

// TestHostileTokens sends forged and misused tokens to routes of every
// authentication mode. Every one is refused with the same 401, except the
// control (a faithful re-signing, to prove the forging is sound) and a role
// claim (ignored: roles come from the store).
func TestHostileTokens(t *testing.T) {
	h := newHarness(t)
	_, adm := h.userWithLogin("boss", presence.RoleAdmin)
	_, usr := h.userWithLogin("plain", presence.RoleUser)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	set := func(k string, v any) func(c map[string]any) { return func(c map[string]any) { c[k] = v } }
	del := func(k string) func(c map[string]any) { return func(c map[string]any) { delete(c, k) } }

	cases := []struct {
		name   string
		token  string
		status int
	}{
		{"control: re-signed as issued", forged(t, adm.Access, hs256Header, nil, signHS256), 200},
		{"alg none, no signature", forged(t, adm.Access, map[string]any{"alg": "none", "typ": "JWT"}, nil, func(string) string { return "" }), 401},
		{"alg None with the HS256 signature", forged(t, adm.Access, map[string]any{"alg": "None", "typ": "JWT"}, nil, signHS256), 401},
		{"alg missing", forged(t, adm.Access, map[string]any{"typ": "JWT"}, nil, signHS256), 401},
		{"alg HS384 with the secret", forged(t, adm.Access, map[string]any{"alg": "HS384", "typ": "JWT"}, nil, macWith(sha512.New384, testSecret)), 401},
		{"alg HS512 with the secret", forged(t, adm.Access, map[string]any{"alg": "HS512", "typ": "JWT"}, nil, macWith(sha512.New, testSecret)), 401},
		{"alg RS256, a real RSA signature", func() string {
			claims := jwt.MapClaims{}
			raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(adm.Access, ".")[1])
			_ = json.Unmarshal(raw, &claims)
			s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(rsaKey)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}(), 401},
		{"HS/RS confusion: RS256 header, HMAC-SHA256 signature with the secret", forged(t, adm.Access, map[string]any{"alg": "RS256", "typ": "JWT"}, nil, signHS256), 401},
		{"HS/RS confusion: RS256 header, HMAC with the RSA public key as secret", forged(t, adm.Access, map[string]any{"alg": "RS256", "typ": "JWT"}, nil, func(in string) string {
			return macWith(sha256.New, rsaKey.PublicKey.N.String())(in)
		}), 401},
		{"wrong secret", forged(t, adm.Access, hs256Header, nil, macWith(sha256.New, strings.Repeat("z", 40))), 401},
		{"exp missing", forged(t, adm.Access, hs256Header, del("exp"), signHS256), 401},
		{"exp in the past", forged(t, adm.Access, hs256Header, set("exp", now.Add(-time.Minute).Unix()), signHS256), 401},
		{"exp a string", forged(t, adm.Access, hs256Header, set("exp", "never"), signHS256), 401},
		{"exp far future on an old iat", forged(t, adm.Access, hs256Header, set("exp", now.Add(100*365*24*time.Hour).Unix()), signHS256), 200},
		{"nbf in the future", forged(t, adm.Access, hs256Header, set("nbf", now.Add(time.Hour).Unix()), signHS256), 401},
		{"iat in the future", forged(t, adm.Access, hs256Header, set("iat", now.Add(time.Hour).Unix()), signHS256), 401},
		{"iat missing", forged(t, adm.Access, hs256Header, del("iat"), signHS256), 401},
		{"wrong issuer", forged(t, adm.Access, hs256Header, set("iss", "evil"), signHS256), 401},
		{"typ refresh", forged(t, adm.Access, hs256Header, set("typ", "refresh"), signHS256), 401},
		{"a real refresh token used as access", adm.Refresh, 401},
		{"another session id", forged(t, adm.Access, hs256Header, set("sid", "999999"), signHS256), 401},
		{"a user's token claiming the admin role", forged(t, usr.Access, hs256Header, set("role", "admin"), signHS256), 403},
		{"oversized", forged(t, adm.Access, hs256Header, set("pad", strings.Repeat("x", 8000)), signHS256), 401},
	}
	routes := []struct{ method, path string }{
		{"GET", "/api/users/admin/users/"}, // authRefresh, staff
		{"POST", "/api/users/heartbeat/"},  // authToken
		{"GET", "/api/users/heartbeat/"},   // authCheck
		{"POST", "/api/users/logout-all-devices/"},
	}
	for _, tc := range cases {
		for _, rt := range routes {
			if tc.status == 200 && rt.path == "/api/users/logout-all-devices/" {
				continue // would end the admin's sessions
			}
			t.Run(tc.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				res := h.do(rt.method, rt.path, tc.token, nil)
				switch tc.status {
				case 200:
					res.wantStatus(t, http.StatusOK)
				case 403:
					if rt.path == "/api/users/admin/users/" {
						res.want(t, http.StatusForbidden, bodyForbidden)
					} else {
						res.wantStatus(t, http.StatusOK) // the user's own routes work
					}
				default:
					res.want(t, http.StatusUnauthorized, bodyTokenNotValid)
				}
			})
		}
	}

	// The other direction: access tokens and forgeries where a refresh
	// token is expected.
	for _, tc := range []struct{ name, token string }{
		{"an access token used as refresh", adm.Access},
		{"refresh with alg none", forged(t, adm.Refresh, map[string]any{"alg": "none"}, nil, func(string) string { return "" })},
		{"refresh re-typed as access", forged(t, adm.Refresh, hs256Header, set("typ", "access"), signHS256)},
		{"refresh expired", forged(t, adm.Refresh, hs256Header, set("exp", now.Add(-time.Minute).Unix()), signHS256)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.do("POST", "/api/users/refresh/", "", map[string]string{"refresh": tc.token}).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		})
	}
	// The admin's real session survived all of it.
	h.do("GET", "/api/users/profile/", adm.Access, nil).wantStatus(t, http.StatusOK)
}

// TestRoleChecksOnEveryRoute takes every route of the router that needs a
// role and calls it as each kind of caller that must be refused: a plain
// user, a moderator on admin-only routes, an admin demoted a moment ago, and
// a suspended admin. The role is read from the store on every request, so a
// demotion takes effect at once.
func TestRoleChecksOnEveryRoute(t *testing.T) {
	h := newHarness(t)
	target := h.user("target", presence.RoleUser, presence.StatusActive)
	_, root := h.userWithLogin("root", presence.RoleAdmin)
	_, user := h.userWithLogin("plain", presence.RoleUser)
	_, mod := h.userWithLogin("mod", presence.RoleModerator)
	demoted, demotedTok := h.userWithLogin("demoted", presence.RoleAdmin)
	suspended, suspendedTok := h.userWithLogin("suspended", presence.RoleAdmin)
	h.do("PUT", fmt.Sprintf("/api/users/admin/users/%d/", demoted.ID), root.Access, map[string]string{"role": "user"}).wantStatus(t, http.StatusOK)
	h.do("POST", fmt.Sprintf("/api/users/admin/users/%d/suspend/", suspended.ID), root.Access, nil).wantStatus(t, http.StatusOK)

	checked := 0
	for _, rt := range (&server{}).apiRoutes() {
		if rt.role == anyRole {
			continue
		}
		path := "/api/users" + strings.ReplaceAll(rt.path, "{id}", strconv.FormatInt(target.ID, 10))
		callers := []struct {
			name, token string
			want        int
		}{
			{"user", user.Access, http.StatusForbidden},
			{"demoted admin", demotedTok.Access, http.StatusForbidden},
			{"suspended admin", suspendedTok.Access, http.StatusUnauthorized},
		}
		if rt.role == adminRole {
			callers = append(callers, struct {
				name, token string
				want        int
			}{"moderator", mod.Access, http.StatusForbidden})
		}
		for _, c := range callers {
			checked++
			t.Run(rt.method+" "+path+" as "+c.name, func(t *testing.T) {
				res := h.do(rt.method, path, c.token, nil)
				if c.want == http.StatusForbidden {
					res.want(t, http.StatusForbidden, bodyForbidden)
				} else {
					res.wantStatus(t, c.want)
				}
			})
		}
	}
	if checked < 30 {
		t.Fatalf("only %d refusals checked; the route table lost its roles?", checked)
	}
	u, err := h.store.User(context.Background(), target.ID)
	if err != nil || u.Status != presence.StatusActive || u.Role != presence.RoleUser {
		t.Errorf("target after the attempts: %+v, %v; want an active user", u, err)
	}
}

// withLimiter gives the API a real login limiter on its store.
func withLimiter(lim redisstore.LoginLimits) func(*Config) {
	return func(c *Config) {
		l, err := c.Store.(*redisstore.Store).NewLoginLimiter(lim)
		if err != nil {
			panic(err)
		}
		c.LoginLimiter = l
	}
}

func TestLoginLimits(t *testing.T) {
	bodyLimited := `{"error":"` + msgTooManyAttempts + `"}`
	login := func(h *harness, name, password, ip string) result {
		b, _ := json.Marshal(map[string]string{"username": name, "password": password})
		req, _ := http.NewRequest("POST", h.url+"/api/users/login/", strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		if ip != "" {
			req.Header.Set("X-Forwarded-For", ip)
		}
		return h.send(req)
	}
	trustLoopback := func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} }

	t.Run("per username, the same answer whether the password is right or the user exists", func(t *testing.T) {
		h := newHarness(t, withLimiter(redisstore.LoginLimits{PerUser: redisstore.Limit{Max: 3, Window: time.Hour}}), trustLoopback)
		h.user("alice", presence.RoleUser, presence.StatusActive)
		for i := range 3 {
			login(h, "alice", "wrong-password", fmt.Sprintf("198.51.100.%d", i)).want(t, http.StatusUnauthorized, `{"error":"Invalid credentials"}`)
			login(h, "ghost", "wrong-password", fmt.Sprintf("198.51.100.%d", i)).want(t, http.StatusUnauthorized, `{"error":"Invalid credentials"}`)
		}
		for _, tc := range []struct{ name, user, password string }{
			{"wrong password", "alice", "wrong-password"},
			{"right password", "alice", testPassword},
			{"other case", "ALICE", testPassword},
			{"unknown user", "ghost", "whatever-1"},
		} {
			res := login(h, tc.user, tc.password, "203.0.113.50")
			res.want(t, http.StatusTooManyRequests, bodyLimited)
			ra, err := strconv.Atoi(res.header.Get("Retry-After"))
			if err != nil || ra < 3500 || ra > 3600 {
				t.Errorf("%s: Retry-After %q, want about an hour", tc.name, res.header.Get("Retry-After"))
			}
		}
		// Other accounts are not affected.
		h.user("bob", presence.RoleUser, presence.StatusActive)
		login(h, "bob", testPassword, "203.0.113.50").wantStatus(t, http.StatusOK)
	})

	t.Run("per address, X-Forwarded-For only from a trusted proxy", func(t *testing.T) {
		h := newHarness(t, withLimiter(redisstore.LoginLimits{PerIP: redisstore.Limit{Max: 2, Window: time.Hour}}), trustLoopback)
		h.user("carol", presence.RoleUser, presence.StatusActive)
		for _, name := range []string{"nobody1", "nobody2"} {
			login(h, name, "wrong-password", "192.0.2.7").wantStatus(t, http.StatusUnauthorized)
		}
		login(h, "carol", testPassword, "192.0.2.7").want(t, http.StatusTooManyRequests, bodyLimited)
		login(h, "carol", testPassword, "192.0.2.8").wantStatus(t, http.StatusOK)

		// Without a trusted proxy the header is ignored: everyone is the
		// test client's loopback address.
		h2 := newHarness(t, withLimiter(redisstore.LoginLimits{PerIP: redisstore.Limit{Max: 2, Window: time.Hour}}))
		h2.user("carol", presence.RoleUser, presence.StatusActive)
		login(h2, "nobody1", "wrong-password", "192.0.2.1").wantStatus(t, http.StatusUnauthorized)
		login(h2, "nobody2", "wrong-password", "192.0.2.2").wantStatus(t, http.StatusUnauthorized)
		login(h2, "carol", testPassword, "192.0.2.3").want(t, http.StatusTooManyRequests, bodyLimited)
	})

	t.Run("successes do not count", func(t *testing.T) {
		h := newHarness(t, withLimiter(redisstore.LoginLimits{PerUser: redisstore.Limit{Max: 2, Window: time.Hour}, PerIP: redisstore.Limit{Max: 2, Window: time.Hour}}))
		h.user("dave", presence.RoleUser, presence.StatusActive)
		h.user("pending", presence.RoleUser, presence.StatusPending)
		for range 6 {
			login(h, "dave", testPassword, "").wantStatus(t, http.StatusOK)
			// Right password, inactive account: not a guess either.
			login(h, "pending", testPassword, "").wantStatus(t, http.StatusForbidden)
		}
	})

	t.Run("the window lifts by itself, however hard it is hammered", func(t *testing.T) {
		h := newHarness(t, withLimiter(redisstore.LoginLimits{PerUser: redisstore.Limit{Max: 2, Window: 1500 * time.Millisecond}}))
		h.user("erin", presence.RoleUser, presence.StatusActive)
		start := time.Now()
		login(h, "erin", "wrong-password", "").wantStatus(t, http.StatusUnauthorized)
		login(h, "erin", "wrong-password", "").wantStatus(t, http.StatusUnauthorized)
		for time.Since(start) < 1300*time.Millisecond {
			login(h, "erin", "wrong-password", "").want(t, http.StatusTooManyRequests, bodyLimited)
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Until(start.Add(1600 * time.Millisecond)))
		login(h, "erin", testPassword, "").wantStatus(t, http.StatusOK)
	})
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"peer", "192.0.2.1:5555", nil, "192.0.2.1"},
		{"untrusted peer: header ignored", "192.0.2.1:5555", []string{"203.0.113.9"}, "192.0.2.1"},
		{"trusted peer: the client it saw", "10.1.1.1:5555", []string{"203.0.113.9"}, "203.0.113.9"},
		{"spoofed entries left of the real client are ignored", "10.1.1.1:5555", []string{"1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"a chain of trusted proxies", "10.1.1.1:5555", []string{"203.0.113.9, 10.2.2.2", "10.3.3.3"}, "203.0.113.9"},
		{"only proxies: the left-most", "10.1.1.1:5555", []string{"10.9.9.9, 10.2.2.2"}, "10.9.9.9"},
		{"garbage stops the walk", "10.1.1.1:5555", []string{"203.0.113.9, not-an-ip, 10.2.2.2"}, "10.2.2.2"},
		{"port in the header", "10.1.1.1:5555", []string{"203.0.113.9:4444"}, "203.0.113.9"},
		{"IPv6 counts as its /64", "[2001:db8:1:2:3:4:5:6]:5555", nil, "2001:db8:1:2::/64"},
		{"IPv6 through a trusted IPv6 proxy", "[fd00::1]:5555", []string{"2001:db8:aa:bb::1"}, "2001:db8:aa:bb::/64"},
		{"IPv4-mapped is IPv4", "[::ffff:192.0.2.3]:5555", nil, "192.0.2.3"},
		{"unreadable peer", "pipe", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &server{trustedProxies: trusted}
			r := httptest.NewRequest("POST", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := s.clientIP(r); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestNoUserEnumeration compares the answers, and their timing, for an
// account that exists and one that does not: login (wrong password vs
// unknown user: the same 401 after the same bcrypt work) and register (a
// taken username is said to be taken, as on every sign-up form, but only
// after the password was hashed, so timing adds nothing).
func TestNoUserEnumeration(t *testing.T) {
	hasher := auth.NewHasher(6) // a few ms per hash (tens under -race): above the noise
	h := newHarness(t, func(c *Config) { c.Hasher = hasher; c.Registration = RegistrationApproval })
	hash, err := hasher.Hash(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.CreateUser(context.Background(), presence.NewUser{Username: "known", Role: presence.RoleUser, Status: presence.StatusActive, PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}

	// The two cases of a comparison run interleaved, so that load from
	// elsewhere (the race detector, other packages' tests) falls on both
	// alike; the ratio of each pair is kept and the median ratio judged. A
	// case that skipped the bcrypt work would be hundreds of times faster.
	compare := func(what string, a, b func(i int) result, wantA, wantB func(result)) {
		t.Helper()
		var ratios []float64
		var as, bs []time.Duration
		for i := range 11 {
			start := time.Now()
			wantA(a(i))
			da := time.Since(start)
			start = time.Now()
			wantB(b(i))
			db := time.Since(start)
			as, bs = append(as, da), append(bs, db)
			ratios = append(ratios, float64(da)/float64(db))
		}
		slices.Sort(ratios)
		slices.Sort(as)
		slices.Sort(bs)
		ratio := ratios[len(ratios)/2]
		t.Logf("%s: medians %v vs %v, median ratio %.2f", what, as[len(as)/2], bs[len(bs)/2], ratio)
		if ratio < 0.5 || ratio > 2 {
			t.Errorf("%s: median ratio %.2f tells the cases apart", what, ratio)
		}
	}
	loginAs := func(name string) func(int) result {
		return func(int) result {
			return h.do("POST", "/api/users/login/", "", map[string]string{"username": name, "password": "wrong-password"})
		}
	}
	invalid := func(res result) { res.want(t, http.StatusUnauthorized, `{"error":"Invalid credentials"}`) }
	compare("login, wrong password vs unknown user", loginAs("known"), loginAs("unknown"), invalid, invalid)
	compare("login, wrong password vs impossible username", loginAs("known"), loginAs("kn\u00f6wn"), invalid, invalid)
	compare("register, taken vs free username",
		func(int) result {
			return h.do("POST", "/api/users/register/", "", map[string]string{"username": "KNOWN", "password": "a-new-password"})
		},
		func(i int) result {
			return h.do("POST", "/api/users/register/", "", map[string]string{"username": fmt.Sprintf("fresh%d", i), "password": "a-new-password"})
		},
		func(res result) {
			res.want(t, http.StatusBadRequest, `{"error":"A user with that username already exists."}`)
		},
		func(res result) { res.wantStatus(t, http.StatusCreated) })
}

// TestUsernameNormalisation: usernames are unique case-insensitively, and
// look-alikes from other scripts are refused at registration and never
// resolve to an account at login (the Kelvin sign K lower-cases to an ASCII
// k in Go, which would otherwise log "\u212Aelvin" in as kelvin).
func TestUsernameNormalisation(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Registration = RegistrationOpen })
	h.user("kelvin", presence.RoleUser, presence.StatusActive)

	h.do("POST", "/api/users/login/", "", map[string]string{"username": "KeLvIn", "password": testPassword}).wantStatus(t, http.StatusOK)
	h.do("POST", "/api/users/register/", "", map[string]string{"username": "KELVIN", "password": testPassword}).
		want(t, http.StatusBadRequest, `{"error":"A user with that username already exists."}`)
	for _, name := range []string{
		"\u212Aelvin",         // Kelvin sign
		"k\u0435lvin",         // Cyrillic e
		"ｋｅｌｖｉｎ",              // fullwidth
		"kelvin\u200b",        // zero-width space
		"ke\u0301lvin",        // combining accent
		"kelv\u0131n",         // dotless i
		"\u0138elvin",         // kra
		"kel vin", "kel\tvin", // white space
	} {
		t.Run(fmt.Sprintf("%+q", name), func(t *testing.T) {
			h.do("POST", "/api/users/register/", "", map[string]string{"username": name, "password": testPassword}).
				want(t, http.StatusBadRequest, `{"error":"username may contain only letters, digits and @.+-_"}`)
			h.do("POST", "/api/users/login/", "", map[string]string{"username": name, "password": testPassword}).
				want(t, http.StatusUnauthorized, `{"error":"Invalid credentials"}`)
		})
	}
	// Emails are contact data, not identities: kept as given, but one plain
	// address only, no header injection.
	for _, email := range []string{"a@b.c\r\nBcc: x@y.z", "Alice <alice@example.com>", "a@b.c, d@e.f"} {
		h.do("POST", "/api/users/register/", "", map[string]string{"username": "mailer", "password": testPassword, "email": email}).
			want(t, http.StatusBadRequest, `{"error":"email is not a valid address"}`)
	}
}

// TestUnknownFieldsCannotEscalate: unknown members are ignored (OffChat
// clients send extras), so a registration cannot choose its own role,
// status or ID, and a profile update cannot smuggle one in.
func TestUnknownFieldsCannotEscalate(t *testing.T) {
	h := newHarness(t)
	res := h.do("POST", "/api/users/register/", "", map[string]any{
		"username": "sneaky", "password": testPassword,
		"role": "admin", "status": "active", "is_active": true, "is_staff": true, "id": 999, "tv": 99,
		"password_hash": "$2a$04$xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	})
	res.wantStatus(t, http.StatusCreated)
	var out struct{ User map[string]any }
	res.decode(t, &out)
	if out.User["role"] != "user" || out.User["status"] != "pending" || out.User["id"] == float64(999) {
		t.Fatalf("registration took unknown fields into account: %v", out.User)
	}
	// Pending: cannot log in, whatever it claimed.
	h.do("POST", "/api/users/login/", "", map[string]string{"username": "sneaky", "password": testPassword}).wantStatus(t, http.StatusForbidden)
}
