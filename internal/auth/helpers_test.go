package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/presenced/presenced/internal/presence"
)

// testSecret is the HS256 key of the tests (37 bytes).
const testSecret = "presenced-test-secret-0123456789abcd"

// testT0 is the tests' "now": a whole second, so expiries are exact.
var testT0 = time.Date(2026, 11, 26, 10, 11, 12, 0, time.UTC)

// testRef is the session the tests issue tokens for.
var testRef = presence.SessionRef{UserID: 42, SessionID: "sess-1", TokenVersion: 3}

// fakeClock is a settable clock for TokenConfig.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// newTestTokens returns Tokens with testSecret, default TTLs and clock.
func newTestTokens(t testing.TB, clock func() time.Time) *Tokens {
	t.Helper()
	tk, err := NewTokens(TokenConfig{Secret: []byte(testSecret), Now: clock})
	if err != nil {
		t.Fatalf("NewTokens: got error %v, want nil", err)
	}
	return tk
}

// baseClaims returns the claims of a valid token of type typ for testRef,
// issued at now, as a map that cases can change.
func baseClaims(now time.Time, typ string) jwt.MapClaims {
	ttl := defaultAccessTTL
	if typ == typeRefresh {
		ttl = defaultRefreshTTL
	}
	return jwt.MapClaims{
		"iss": defaultIssuer,
		"sub": "42",
		"sid": "sess-1",
		"tv":  3,
		"typ": typ,
		"jti": "AAAAAAAAAAAAAAAAAAAAAA",
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}
}

// signToken signs claims with method and key through the jwt package.
func signToken(t testing.TB, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("signing a %s test token: %v", method.Alg(), err)
	}
	return s
}

// b64 is base64url without padding, as JWTs use.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// b64JSON is the JWT segment of v.
func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %v: %v", v, err)
	}
	return b64(b)
}

// hs256 is the HMAC-SHA256 signature segment of signingInput under key.
func hs256(key []byte, signingInput string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signingInput))
	return b64(m.Sum(nil))
}

// segments splits a JWT into its three segments.
func segments(t testing.TB, token string) (header, payload, sig string) {
	t.Helper()
	p := strings.Split(token, ".")
	if len(p) != 3 {
		t.Fatalf("token %q has %d segments, want 3", token, len(p))
	}
	return p[0], p[1], p[2]
}
