package auth

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// agree checks fastParse against the jwt package on token: fastParse may
// decline anything, but what it accepts the jwt path must accept too, with
// the same claims.
func agree(t *testing.T, tk *Tokens, token string) (fast bool) {
	t.Helper()
	for _, want := range []string{typeAccess, typeRefresh} {
		fc, ok := tk.fastParse(token, want)
		if !ok {
			continue
		}
		fast = true
		sc, err := tk.jwtParse(token, want)
		if err != nil {
			t.Fatalf("fastParse accepted %q as %s, the jwt package refuses it: %v", token, want, err)
		}
		if fc.SessionRef != sc.SessionRef || fc.Type != sc.Type || fc.ID != sc.ID || !fc.ExpiresAt.Equal(sc.ExpiresAt) || fc.ExpiresAt.Location() != sc.ExpiresAt.Location() {
			t.Fatalf("claims of %q: fast %+v, jwt %+v", token, fc, sc)
		}
	}
	return fast
}

func TestFastParseAgreesWithJWT(t *testing.T) {
	clock := newFakeClock(testT0)
	tk := newTestTokens(t, clock.Now)
	p, err := tk.Issue(testRef)
	if err != nil {
		t.Fatal(err)
	}
	// Our own tokens take the fast path.
	for _, tok := range []string{p.Access, p.Refresh} {
		if !agree(t, tk, tok) {
			t.Errorf("fastParse declined a token Issue made: %q", tok)
		}
	}
	key := []byte(testSecret)
	cases := map[string]func(c jwt.MapClaims){
		"as issued":         func(jwt.MapClaims) {},
		"other issuer":      func(c jwt.MapClaims) { c["iss"] = "evil" },
		"expired":           func(c jwt.MapClaims) { c["exp"] = testT0.Add(-leeway - time.Second).Unix() },
		"expires in leeway": func(c jwt.MapClaims) { c["exp"] = testT0.Add(-leeway + time.Second).Unix() },
		"exp float":         func(c jwt.MapClaims) { c["exp"] = float64(testT0.Add(time.Hour).Unix()) + 0.5 },
		"exp string":        func(c jwt.MapClaims) { c["exp"] = fmt.Sprint(testT0.Add(time.Hour).Unix()) },
		"exp huge":          func(c jwt.MapClaims) { c["exp"] = int64(1) << 55 },
		"no exp":            func(c jwt.MapClaims) { delete(c, "exp") },
		"iat future":        func(c jwt.MapClaims) { c["iat"] = testT0.Add(leeway + time.Second).Unix() },
		"no iat":            func(c jwt.MapClaims) { delete(c, "iat") },
		"nbf future":        func(c jwt.MapClaims) { c["nbf"] = testT0.Add(time.Minute).Unix() },
		"nbf past":          func(c jwt.MapClaims) { c["nbf"] = testT0.Add(-time.Minute).Unix() },
		"aud":               func(c jwt.MapClaims) { c["aud"] = "x" },
		"sub padded":        func(c jwt.MapClaims) { c["sub"] = "042" },
		"sub zero":          func(c jwt.MapClaims) { c["sub"] = "0" },
		"no sid":            func(c jwt.MapClaims) { delete(c, "sid") },
		"tv negative":       func(c jwt.MapClaims) { c["tv"] = -1 },
		"tv missing":        func(c jwt.MapClaims) { delete(c, "tv") },
		"tv float":          func(c jwt.MapClaims) { c["tv"] = 1.5 },
		"no jti":            func(c jwt.MapClaims) { delete(c, "jti") },
		"upper-case keys":   func(c jwt.MapClaims) { c["EXP"] = c["exp"]; c["SUB"] = "43" },
		"extra claim":       func(c jwt.MapClaims) { c["role"] = "admin" },
		"typ other":         func(c jwt.MapClaims) { c["typ"] = "id" },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			for _, typ := range []string{typeAccess, typeRefresh} {
				c := baseClaims(testT0, typ)
				change(c)
				agree(t, tk, signToken(t, jwt.SigningMethodHS256, key, c))
			}
		})
	}
	// Tokens in our exact layout (a jwtClaims struct, as signWith signs),
	// some of which fastParse must accept and some of which it must leave
	// to the jwt package.
	tv := int64(3)
	base := func() jwtClaims {
		return jwtClaims{
			RegisteredClaims: jwt.RegisteredClaims{Issuer: defaultIssuer, Subject: "42", ID: "AAAAAAAAAAAAAAAAAAAAAA",
				IssuedAt: jwt.NewNumericDate(testT0), ExpiresAt: jwt.NewNumericDate(testT0.Add(time.Hour))},
			SessionID: "sess-1", TokenVersion: &tv, Type: typeAccess,
		}
	}
	zero := int64(0)
	layout := []struct {
		name     string
		change   func(c *jwtClaims)
		wantFast bool
	}{
		{"as issued", func(*jwtClaims) {}, true},
		{"tv zero", func(c *jwtClaims) { c.TokenVersion = &zero }, true},
		{"exp within leeway", func(c *jwtClaims) { c.ExpiresAt = jwt.NewNumericDate(testT0.Add(-leeway + time.Second)) }, true},
		{"iat within leeway", func(c *jwtClaims) { c.IssuedAt = jwt.NewNumericDate(testT0.Add(leeway)) }, true},
		{"expired", func(c *jwtClaims) { c.ExpiresAt = jwt.NewNumericDate(testT0.Add(-leeway)) }, false},
		{"iat future", func(c *jwtClaims) { c.IssuedAt = jwt.NewNumericDate(testT0.Add(leeway + time.Second)) }, false},
		{"other issuer", func(c *jwtClaims) { c.Issuer = "presenced2" }, false},
		{"sub padded", func(c *jwtClaims) { c.Subject = "042" }, false},
		{"sub negative", func(c *jwtClaims) { c.Subject = "-42" }, false},
		{"refresh type (fast as a refresh token)", func(c *jwtClaims) { c.Type = typeRefresh }, true},
		{"unknown type", func(c *jwtClaims) { c.Type = "id" }, false},
		{"no sid", func(c *jwtClaims) { c.SessionID = "" }, false},
		{"escaped sid", func(c *jwtClaims) { c.SessionID = "a<b" }, false},
		{"non-ASCII sid", func(c *jwtClaims) { c.SessionID = "é" }, false},
		{"no tv", func(c *jwtClaims) { c.TokenVersion = nil }, false},
		{"nbf", func(c *jwtClaims) { c.NotBefore = jwt.NewNumericDate(testT0) }, false},
		{"aud", func(c *jwtClaims) { c.Audience = jwt.ClaimStrings{"x"} }, false},
		{"exp far", func(c *jwtClaims) { c.ExpiresAt = jwt.NewNumericDate(time.Unix(1<<41, 0)) }, false},
	}
	for _, tc := range layout {
		t.Run("layout "+tc.name, func(t *testing.T) {
			c := base()
			tc.change(&c)
			tok := signToken(t, jwt.SigningMethodHS256, key, c)
			if got := agree(t, tk, tok); got != tc.wantFast {
				t.Errorf("fast path taken: got %v, want %v (%s)", got, tc.wantFast, tok)
			}
		})
	}
	// Tokens that only look like ours.
	h, payload, sig := segments(t, p.Access)
	for _, tok := range []string{
		h + "." + payload + "." + sig + "=",
		h + "." + payload + "." + sig[:42] + "B",
		h + "." + payload + "." + sig + ".x",
		h + "." + payload + "==." + sig,
		h + "." + strings.ToUpper(payload) + "." + sig,
		h + "." + payload + "." + hs256([]byte(strings.Repeat("x", 32)), h+"."+payload),
		h + "." + b64([]byte(`{"exp":1}`)) + "." + hs256(key, h+"."+b64([]byte(`{"exp":1}`))),
	} {
		if agree(t, tk, tok) {
			t.Errorf("fastParse accepted %q", tok)
		}
	}
	// The clock moves: an accepted token stops being accepted at exp+leeway.
	clock.Set(p.RefreshExpires.Add(leeway))
	if agree(t, tk, p.Refresh) {
		t.Errorf("fastParse accepted a refresh token at exp+leeway")
	}
}

// TestFastParseMutations flips, drops and inserts characters of real tokens:
// whatever fastParse accepts, the jwt package accepts the same way.
func TestFastParseMutations(t *testing.T) {
	tk := newTestTokens(t, newFakeClock(testT0).Now)
	p, err := tk.Issue(testRef)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 9))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
	for i := 0; i < 20000; i++ {
		b := []byte(p.Access)
		if i%2 == 1 {
			b = []byte(p.Refresh)
		}
		for range 1 + rng.IntN(3) {
			j := rng.IntN(len(b))
			switch rng.IntN(3) {
			case 0:
				b[j] = alphabet[rng.IntN(len(alphabet))]
			case 1:
				b = append(b[:j], b[j+1:]...)
			default:
				b = append(b[:j], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[j:]...)...)
			}
		}
		agree(t, tk, string(b))
	}
}

func FuzzFastParse(f *testing.F) {
	tk := newTestTokens(f, newFakeClock(testT0).Now)
	p, err := tk.Issue(testRef)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p.Access)
	f.Add(p.Refresh)
	f.Fuzz(func(t *testing.T, token string) { agree(t, tk, token) })
}

func BenchmarkParseAccess(b *testing.B) {
	tk := newTestTokens(b, time.Now)
	p, err := tk.Issue(testRef)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tk.ParseAccess(p.Access); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jwt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tk.jwtParse(p.Access, typeAccess); err != nil {
				b.Fatal(err)
			}
		}
	})
}
