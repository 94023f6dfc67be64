package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/presenced/presenced/internal/presence"
)

func TestNewTokensConfig(t *testing.T) {
	secret := []byte(strings.Repeat("k", minSecretLen))
	tests := []struct {
		name    string
		cfg     TokenConfig
		wantErr bool
	}{
		{"nil secret", TokenConfig{}, true},
		{"31-byte secret", TokenConfig{Secret: secret[:31]}, true},
		{"32-byte secret", TokenConfig{Secret: secret}, false},
		{"negative access TTL", TokenConfig{Secret: secret, AccessTTL: -time.Second}, true},
		{"negative refresh TTL", TokenConfig{Secret: secret, RefreshTTL: -time.Second}, true},
		{"sub-second access TTL", TokenConfig{Secret: secret, AccessTTL: 500 * time.Millisecond}, true},
		{"sub-second refresh TTL", TokenConfig{Secret: secret, RefreshTTL: time.Nanosecond}, true},
		{"explicit TTLs", TokenConfig{Secret: secret, AccessTTL: time.Minute, RefreshTTL: time.Hour}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tk, err := NewTokens(tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewTokens: got error %v, want error %v", err, tc.wantErr)
			}
			if err == nil && tk == nil {
				t.Fatal("NewTokens: got nil Tokens and nil error")
			}
		})
	}
}

func TestNewTokensDefaults(t *testing.T) {
	tk, err := NewTokens(TokenConfig{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatalf("NewTokens: %v", err)
	}
	if tk.accessTTL != 15*time.Minute {
		t.Errorf("access TTL: got %v, want 15m", tk.accessTTL)
	}
	if tk.refreshTTL != 168*time.Hour {
		t.Errorf("refresh TTL: got %v, want 168h", tk.refreshTTL)
	}
	if tk.issuer != "presenced" {
		t.Errorf("issuer: got %q, want %q", tk.issuer, "presenced")
	}
	if tk.now == nil {
		t.Error("clock: got nil, want time.Now")
	}
	// With the real clock, a fresh pair must parse.
	p, err := tk.Issue(testRef)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if _, err := tk.ParseAccess(p.Access); err != nil {
		t.Errorf("ParseAccess with the default clock: got %v, want nil", err)
	}
}

func TestNewTokensCopiesSecret(t *testing.T) {
	secret := []byte(testSecret)
	clock := newFakeClock(testT0)
	tk, err := NewTokens(TokenConfig{Secret: secret, Now: clock.Now})
	if err != nil {
		t.Fatalf("NewTokens: %v", err)
	}
	p, err := tk.Issue(testRef)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	for i := range secret {
		secret[i] = 'x'
	}
	if _, err := tk.ParseAccess(p.Access); err != nil {
		t.Errorf("ParseAccess after the caller overwrote its secret slice: got %v, want nil", err)
	}
}

func TestIssueRoundTrip(t *testing.T) {
	clock := newFakeClock(testT0.Add(700 * time.Millisecond)) // not a whole second
	tk := newTestTokens(t, clock.Now)
	refs := []presence.SessionRef{
		testRef,
		{UserID: 1, SessionID: "a", TokenVersion: 0},
		{UserID: 1<<63 - 1, SessionID: "session with spaces/and:punctuation", TokenVersion: 1<<63 - 1},
	}
	for _, ref := range refs {
		t.Run(fmt.Sprintf("user %d", ref.UserID), func(t *testing.T) {
			p, err := tk.Issue(ref)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			wantAccessExp := testT0.Add(15 * time.Minute)
			wantRefreshExp := testT0.Add(168 * time.Hour)
			if !p.RefreshExpires.Equal(wantRefreshExp) {
				t.Errorf("RefreshExpires: got %v, want %v", p.RefreshExpires, wantRefreshExp)
			}

			ac, err := tk.ParseAccess(p.Access)
			if err != nil {
				t.Fatalf("ParseAccess: %v", err)
			}
			if ac.SessionRef != ref {
				t.Errorf("access SessionRef: got %+v, want %+v", ac.SessionRef, ref)
			}
			if ac.Type != "access" {
				t.Errorf("access Type: got %q, want %q", ac.Type, "access")
			}
			if !ac.ExpiresAt.Equal(wantAccessExp) {
				t.Errorf("access ExpiresAt: got %v, want %v", ac.ExpiresAt, wantAccessExp)
			}
			if len(ac.ID) != 22 {
				t.Errorf("access jti %q: got %d characters, want 22 (128 bits base64url)", ac.ID, len(ac.ID))
			}

			rc, err := tk.ParseRefresh(p.Refresh)
			if err != nil {
				t.Fatalf("ParseRefresh: %v", err)
			}
			if rc.SessionRef != ref {
				t.Errorf("refresh SessionRef: got %+v, want %+v", rc.SessionRef, ref)
			}
			if rc.Type != "refresh" {
				t.Errorf("refresh Type: got %q, want %q", rc.Type, "refresh")
			}
			if rc.ID != p.RefreshID {
				t.Errorf("refresh jti: got %q, want Pair.RefreshID %q", rc.ID, p.RefreshID)
			}
			if !rc.ExpiresAt.Equal(p.RefreshExpires) {
				t.Errorf("refresh ExpiresAt: got %v, want Pair.RefreshExpires %v", rc.ExpiresAt, p.RefreshExpires)
			}
			if rc.ID == ac.ID {
				t.Errorf("access and refresh share jti %q, want distinct", rc.ID)
			}
		})
	}
}

func TestIssueFreshIDs(t *testing.T) {
	tk := newTestTokens(t, newFakeClock(testT0).Now)
	seen := make(map[string]bool)
	for range 50 {
		p, err := tk.Issue(testRef)
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		if seen[p.RefreshID] {
			t.Fatalf("refresh jti %q issued twice", p.RefreshID)
		}
		seen[p.RefreshID] = true
	}
}

func TestIssueRefusesBadRefs(t *testing.T) {
	tk := newTestTokens(t, newFakeClock(testT0).Now)
	tests := []struct {
		name string
		ref  presence.SessionRef
	}{
		{"zero user", presence.SessionRef{UserID: 0, SessionID: "s", TokenVersion: 0}},
		{"negative user", presence.SessionRef{UserID: -1, SessionID: "s", TokenVersion: 0}},
		{"empty session", presence.SessionRef{UserID: 1, SessionID: "", TokenVersion: 0}},
		{"negative version", presence.SessionRef{UserID: 1, SessionID: "s", TokenVersion: -1}},
		{"session too long for a token", presence.SessionRef{UserID: 1, SessionID: strings.Repeat("s", maxTokenLen), TokenVersion: 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tk.Issue(tc.ref)
			if err == nil {
				t.Fatalf("Issue(%+v): got pair %+v, want error", tc.ref, p)
			}
		})
	}
}

// hostileKit holds what the hostile-token cases sign with.
type hostileKit struct {
	now    time.Time
	rsaKey *rsa.PrivateKey
	ecKey  *ecdsa.PrivateKey
	// valid is a genuine token of the type under test, from Issue.
	valid string
}

// hostileCase builds a token of type typ that Parse of typ must refuse; want
// is the specific reason (besides ErrInvalidToken), or nil for "any reason".
type hostileCase struct {
	name  string
	build func(t *testing.T, k hostileKit, typ string) string
	want  error
}

// withClaims signs, with the right key and HS256, the base claims of typ after
// change has edited them.
func withClaims(change func(c jwt.MapClaims)) func(t *testing.T, k hostileKit, typ string) string {
	return func(t *testing.T, k hostileKit, typ string) string {
		c := baseClaims(k.now, typ)
		change(c)
		return signToken(t, jwt.SigningMethodHS256, []byte(testSecret), c)
	}
}

// handBuilt assembles header.payload.signature from JSON values and a signer.
func handBuilt(header map[string]any, sign func(input string) string) func(t *testing.T, k hostileKit, typ string) string {
	return func(t *testing.T, k hostileKit, typ string) string {
		input := b64JSON(t, header) + "." + b64JSON(t, baseClaims(k.now, typ))
		return input + "." + sign(input)
	}
}

func literal(s string) func(*testing.T, hostileKit, string) string {
	return func(*testing.T, hostileKit, string) string { return s }
}

func hostileCases() []hostileCase {
	secret := []byte(testSecret)
	return []hostileCase{
		// Not a JWT at all.
		{"empty", literal(""), errEmpty},
		{"garbage", literal("not a token"), jwt.ErrTokenMalformed},
		{"three empty segments", literal(".."), jwt.ErrTokenMalformed},
		{"three junk segments", literal("a.b.c"), jwt.ErrTokenMalformed},
		{"four segments", func(t *testing.T, k hostileKit, _ string) string { return k.valid + ".x" }, jwt.ErrTokenMalformed},
		{"two segments", func(t *testing.T, k hostileKit, _ string) string {
			h, p, _ := segments(t, k.valid)
			return h + "." + p
		}, jwt.ErrTokenMalformed},
		{"bearer prefix kept", func(t *testing.T, k hostileKit, _ string) string { return "Bearer " + k.valid }, nil},
		{"header not JSON", func(t *testing.T, k hostileKit, _ string) string {
			_, p, s := segments(t, k.valid)
			return b64([]byte("{alg:HS256")) + "." + p + "." + s
		}, jwt.ErrTokenMalformed},
		{"payload a JSON array", func(t *testing.T, k hostileKit, _ string) string {
			input := b64JSON(t, map[string]string{"alg": "HS256", "typ": "JWT"}) + "." + b64([]byte(`[1,2]`))
			return input + "." + hs256(secret, input)
		}, jwt.ErrTokenMalformed},
		{"oversized but correctly signed", withClaims(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", maxTokenLen) }), errTooLong},

		// Algorithm attacks: only HS256 is accepted.
		{"alg none", func(t *testing.T, k hostileKit, typ string) string {
			return signToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, baseClaims(k.now, typ))
		}, jwt.ErrTokenSignatureInvalid},
		{"alg NONE hand-built", handBuilt(map[string]any{"alg": "NONE", "typ": "JWT"}, func(string) string { return "" }), nil},
		{"alg missing", handBuilt(map[string]any{"typ": "JWT"}, func(in string) string { return hs256(secret, in) }), nil},
		{"alg HS384 with the right secret", func(t *testing.T, k hostileKit, typ string) string {
			return signToken(t, jwt.SigningMethodHS384, secret, baseClaims(k.now, typ))
		}, jwt.ErrTokenSignatureInvalid},
		{"alg HS512 with the right secret", func(t *testing.T, k hostileKit, typ string) string {
			return signToken(t, jwt.SigningMethodHS512, secret, baseClaims(k.now, typ))
		}, jwt.ErrTokenSignatureInvalid},
		{"alg RS256 with an RSA key", func(t *testing.T, k hostileKit, typ string) string {
			return signToken(t, jwt.SigningMethodRS256, k.rsaKey, baseClaims(k.now, typ))
		}, jwt.ErrTokenSignatureInvalid},
		{"alg ES256 with an ECDSA key", func(t *testing.T, k hostileKit, typ string) string {
			return signToken(t, jwt.SigningMethodES256, k.ecKey, baseClaims(k.now, typ))
		}, jwt.ErrTokenSignatureInvalid},
		// Key confusion: an RS256 header over an HMAC made with our secret.
		// A verifier that took the key from its own config and the algorithm
		// from the token would accept this.
		{"alg RS256 header with HMAC-SHA256 signature", handBuilt(map[string]any{"alg": "RS256", "typ": "JWT"}, func(in string) string { return hs256(secret, in) }), jwt.ErrTokenSignatureInvalid},
		{"alg hs256 lower case", handBuilt(map[string]any{"alg": "hs256", "typ": "JWT"}, func(in string) string { return hs256(secret, in) }), nil},

		// Signature attacks.
		{"HS256 with the wrong secret", func(t *testing.T, k hostileKit, typ string) string {
			return signToken(t, jwt.SigningMethodHS256, []byte(strings.Repeat("w", 40)), baseClaims(k.now, typ))
		}, jwt.ErrTokenSignatureInvalid},
		{"signature byte flipped", func(t *testing.T, k hostileKit, _ string) string {
			h, p, s := segments(t, k.valid)
			b := []byte(s)
			i := len(b) / 2
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return h + "." + p + "." + string(b)
		}, jwt.ErrTokenSignatureInvalid},
		{"signature truncated", func(t *testing.T, k hostileKit, _ string) string { return k.valid[:len(k.valid)-4] }, nil},
		{"signature truncated by a whole base64 quantum", func(t *testing.T, k hostileKit, _ string) string {
			h, p, s := segments(t, k.valid)
			return h + "." + p + "." + s[:len(s)-3]
		}, jwt.ErrTokenSignatureInvalid},
		{"signature empty", func(t *testing.T, k hostileKit, _ string) string {
			h, p, _ := segments(t, k.valid)
			return h + "." + p + "."
		}, jwt.ErrTokenSignatureInvalid},
		{"signature padded", func(t *testing.T, k hostileKit, _ string) string { return k.valid + "=" }, nil},
		{"payload swapped for another user, signature kept", func(t *testing.T, k hostileKit, typ string) string {
			h, _, s := segments(t, k.valid)
			c := baseClaims(k.now, typ)
			c["sub"] = "1"
			return h + "." + b64JSON(t, c) + "." + s
		}, jwt.ErrTokenSignatureInvalid},
		{"payload changed and re-signed with a guessed secret", func(t *testing.T, k hostileKit, typ string) string {
			c := baseClaims(k.now, typ)
			c["sub"] = "1"
			return signToken(t, jwt.SigningMethodHS256, []byte("secret"), c)
		}, jwt.ErrTokenSignatureInvalid},

		// Time.
		{"expired beyond leeway", withClaims(func(c jwt.MapClaims) {
			c["iat"] = testT0.Add(-time.Hour).Unix()
			c["exp"] = testT0.Add(-leeway - time.Second).Unix()
		}), jwt.ErrTokenExpired},
		{"exp missing", withClaims(func(c jwt.MapClaims) { delete(c, "exp") }), jwt.ErrTokenRequiredClaimMissing},
		{"exp a string", withClaims(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }), jwt.ErrTokenMalformed},
		{"nbf in the future", withClaims(func(c jwt.MapClaims) { c["nbf"] = testT0.Add(time.Minute).Unix() }), jwt.ErrTokenNotValidYet},
		{"iat in the future beyond leeway", withClaims(func(c jwt.MapClaims) { c["iat"] = testT0.Add(leeway + time.Second).Unix() }), jwt.ErrTokenUsedBeforeIssued},
		{"iat missing", withClaims(func(c jwt.MapClaims) { delete(c, "iat") }), errMissingIssue},

		// Issuer.
		{"wrong issuer", withClaims(func(c jwt.MapClaims) { c["iss"] = "someone-else" }), jwt.ErrTokenInvalidIssuer},
		{"issuer missing", withClaims(func(c jwt.MapClaims) { delete(c, "iss") }), jwt.ErrTokenRequiredClaimMissing},

		// Type.
		{"typ missing", withClaims(func(c jwt.MapClaims) { delete(c, "typ") }), errWrongType},
		{"typ unknown", withClaims(func(c jwt.MapClaims) { c["typ"] = "id" }), errWrongType},
		{"typ upper case", withClaims(func(c jwt.MapClaims) { c["typ"] = strings.ToUpper(c["typ"].(string)) }), errWrongType},

		// Subject.
		{"sub missing", withClaims(func(c jwt.MapClaims) { delete(c, "sub") }), errBadSubject},
		{"sub empty", withClaims(func(c jwt.MapClaims) { c["sub"] = "" }), errBadSubject},
		{"sub not numeric", withClaims(func(c jwt.MapClaims) { c["sub"] = "alice" }), errBadSubject},
		{"sub zero", withClaims(func(c jwt.MapClaims) { c["sub"] = "0" }), errBadSubject},
		{"sub negative", withClaims(func(c jwt.MapClaims) { c["sub"] = "-42" }), errBadSubject},
		{"sub with plus sign", withClaims(func(c jwt.MapClaims) { c["sub"] = "+42" }), errBadSubject},
		{"sub with leading zero", withClaims(func(c jwt.MapClaims) { c["sub"] = "042" }), errBadSubject},
		{"sub with space", withClaims(func(c jwt.MapClaims) { c["sub"] = " 42" }), errBadSubject},
		{"sub fractional", withClaims(func(c jwt.MapClaims) { c["sub"] = "42.0" }), errBadSubject},
		{"sub overflows int64", withClaims(func(c jwt.MapClaims) { c["sub"] = "9223372036854775808" }), errBadSubject},
		{"sub a JSON number", withClaims(func(c jwt.MapClaims) { c["sub"] = 42 }), jwt.ErrTokenMalformed},

		// Session and version.
		{"sid missing", withClaims(func(c jwt.MapClaims) { delete(c, "sid") }), errBadSession},
		{"sid empty", withClaims(func(c jwt.MapClaims) { c["sid"] = "" }), errBadSession},
		{"sid a number", withClaims(func(c jwt.MapClaims) { c["sid"] = 7 }), jwt.ErrTokenMalformed},
		{"tv missing", withClaims(func(c jwt.MapClaims) { delete(c, "tv") }), errBadVersion},
		{"tv negative", withClaims(func(c jwt.MapClaims) { c["tv"] = -1 }), errBadVersion},
		{"tv fractional", withClaims(func(c jwt.MapClaims) { c["tv"] = 1.5 }), jwt.ErrTokenMalformed},
		{"tv a string", withClaims(func(c jwt.MapClaims) { c["tv"] = "3" }), jwt.ErrTokenMalformed},
		{"tv null", withClaims(func(c jwt.MapClaims) { c["tv"] = nil }), errBadVersion},
		{"jti missing", withClaims(func(c jwt.MapClaims) { delete(c, "jti") }), errMissingID},
	}
}

// TestParseRefusesHostileTokens runs every hostile case against ParseAccess
// (with access claims) and ParseRefresh (with refresh claims).
func TestParseRefusesHostileTokens(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generating an RSA key: %v", err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating an ECDSA key: %v", err)
	}
	tk := newTestTokens(t, newFakeClock(testT0).Now)
	pair, err := tk.Issue(testRef)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	parsers := []struct {
		typ   string
		valid string
		parse func(string) (Claims, error)
	}{
		{typeAccess, pair.Access, tk.ParseAccess},
		{typeRefresh, pair.Refresh, tk.ParseRefresh},
	}
	for _, p := range parsers {
		k := hostileKit{now: testT0, rsaKey: rsaKey, ecKey: ecKey, valid: p.valid}

		// The cases edit a baseline that must itself be accepted; otherwise
		// they would pass for the wrong reason.
		t.Run(p.typ+"/baseline is accepted", func(t *testing.T) {
			tok := withClaims(func(jwt.MapClaims) {})(t, k, p.typ)
			c, err := p.parse(tok)
			if err != nil {
				t.Fatalf("baseline token: got error %v, want nil", err)
			}
			want := presence.SessionRef{UserID: 42, SessionID: "sess-1", TokenVersion: 3}
			if c.SessionRef != want {
				t.Errorf("baseline SessionRef: got %+v, want %+v", c.SessionRef, want)
			}
		})

		for _, tc := range hostileCases() {
			t.Run(p.typ+"/"+tc.name, func(t *testing.T) {
				tok := tc.build(t, k, p.typ)
				c, err := p.parse(tok)
				if err == nil {
					t.Fatalf("got claims %+v, want an error", c)
				}
				if !errors.Is(err, ErrInvalidToken) {
					t.Errorf("got error %v, want one wrapping ErrInvalidToken", err)
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("got error %v, want one wrapping %v", err, tc.want)
				}
				if c != (Claims{}) {
					t.Errorf("got claims %+v with the error, want zero Claims", c)
				}
			})
		}
	}
}

func TestParseRefusesTheOtherType(t *testing.T) {
	tk := newTestTokens(t, newFakeClock(testT0).Now)
	p, err := tk.Issue(testRef)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	tests := []struct {
		name  string
		parse func(string) (Claims, error)
		token string
	}{
		{"refresh token as access", tk.ParseAccess, p.Refresh},
		{"access token as refresh", tk.ParseRefresh, p.Access},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.parse(tc.token)
			if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, errWrongType) {
				t.Errorf("got error %v, want ErrInvalidToken wrapping errWrongType", err)
			}
		})
	}
}

func TestParseRefusesOtherIssuer(t *testing.T) {
	clock := newFakeClock(testT0)
	other, err := NewTokens(TokenConfig{Secret: []byte(testSecret), Issuer: "staging", Now: clock.Now})
	if err != nil {
		t.Fatalf("NewTokens: %v", err)
	}
	p, err := other.Issue(testRef)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if _, err := other.ParseAccess(p.Access); err != nil {
		t.Fatalf("issuer's own ParseAccess: got %v, want nil", err)
	}
	ours := newTestTokens(t, clock.Now)
	if _, err := ours.ParseAccess(p.Access); !errors.Is(err, jwt.ErrTokenInvalidIssuer) || !errors.Is(err, ErrInvalidToken) {
		t.Errorf("ParseAccess of another issuer's token: got %v, want ErrInvalidToken wrapping ErrTokenInvalidIssuer", err)
	}
}

func TestParseLengthLimit(t *testing.T) {
	tk := newTestTokens(t, newFakeClock(testT0).Now)
	// Grow a correctly signed token byte by byte across the limit: up to
	// maxTokenLen it parses, beyond it is refused for its length alone.
	var sawAtLimit, sawOver bool
	for pad := maxTokenLen / 2; pad < maxTokenLen; pad++ {
		c := baseClaims(testT0, typeAccess)
		c["pad"] = strings.Repeat("x", pad)
		tok := signToken(t, jwt.SigningMethodHS256, []byte(testSecret), c)
		_, err := tk.ParseAccess(tok)
		switch {
		case len(tok) <= maxTokenLen:
			if err != nil {
				t.Fatalf("token of %d bytes: got %v, want nil", len(tok), err)
			}
			if len(tok) > maxTokenLen-4 {
				sawAtLimit = true
			}
		default:
			if !errors.Is(err, errTooLong) || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("token of %d bytes: got %v, want ErrInvalidToken wrapping errTooLong", len(tok), err)
			}
			sawOver = true
		}
		if sawOver {
			break
		}
	}
	if !sawAtLimit || !sawOver {
		t.Errorf("covered the limit: got at-limit %v, over %v, want both", sawAtLimit, sawOver)
	}
}

func TestTokenExpiryFollowsInjectedClock(t *testing.T) {
	clock := newFakeClock(testT0)
	tk := newTestTokens(t, clock.Now)
	p, err := tk.Issue(testRef)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	accessExp := testT0.Add(15 * time.Minute)
	refreshExp := testT0.Add(168 * time.Hour)
	tests := []struct {
		name      string
		now       time.Time
		parse     func(string) (Claims, error)
		token     string
		wantValid bool
	}{
		{"access at issue", testT0, tk.ParseAccess, p.Access, true},
		{"access a second before exp", accessExp.Add(-time.Second), tk.ParseAccess, p.Access, true},
		{"access inside the leeway", accessExp.Add(leeway - time.Second), tk.ParseAccess, p.Access, true},
		{"access at exp plus leeway", accessExp.Add(leeway), tk.ParseAccess, p.Access, false},
		{"access a day later", testT0.Add(24 * time.Hour), tk.ParseAccess, p.Access, false},
		{"refresh after the access TTL", accessExp.Add(time.Hour), tk.ParseRefresh, p.Refresh, true},
		{"refresh a second before exp", refreshExp.Add(-time.Second), tk.ParseRefresh, p.Refresh, true},
		{"refresh at exp plus leeway", refreshExp.Add(leeway), tk.ParseRefresh, p.Refresh, false},
		{"access with the clock behind by less than the leeway", testT0.Add(-leeway + time.Second), tk.ParseAccess, p.Access, true},
		{"access with the clock behind by more than the leeway", testT0.Add(-leeway - time.Second), tk.ParseAccess, p.Access, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock.Set(tc.now)
			_, err := tc.parse(tc.token)
			if tc.wantValid && err != nil {
				t.Fatalf("at %v: got error %v, want valid", tc.now, err)
			}
			if !tc.wantValid && !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("at %v: got error %v, want ErrInvalidToken", tc.now, err)
			}
		})
	}
}

func TestIssueUsesInjectedClock(t *testing.T) {
	// A clock far from the real time: if Issue or Parse read time.Now, the
	// tokens would be expired or not yet valid.
	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	tk := newTestTokens(t, newFakeClock(past).Now)
	p, err := tk.Issue(testRef)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	c, err := tk.ParseAccess(p.Access)
	if err != nil {
		t.Fatalf("ParseAccess: %v", err)
	}
	if want := past.Add(15 * time.Minute); !c.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt: got %v, want %v", c.ExpiresAt, want)
	}
	if now := newTestTokens(t, time.Now); true {
		if _, err := now.ParseAccess(p.Access); !errors.Is(err, jwt.ErrTokenExpired) {
			t.Errorf("ParseAccess with the real clock of a 2001 token: got %v, want ErrTokenExpired", err)
		}
	}
}

func TestParseConcurrent(t *testing.T) {
	tk := newTestTokens(t, newFakeClock(testT0).Now)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				p, err := tk.Issue(testRef)
				if err != nil {
					errs <- err
					return
				}
				if _, err := tk.ParseAccess(p.Access); err != nil {
					errs <- err
					return
				}
				if _, err := tk.ParseRefresh(p.Refresh); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Issue/Parse: got %v, want nil", err)
	}
}

func TestIssueWithChosenRefresh(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	tok := newTestTokens(t, func() time.Time { return now })
	id, exp, err := tok.NewRefresh()
	if err != nil || id == "" || !exp.Equal(now.Add(168*time.Hour)) {
		t.Fatalf("NewRefresh: %q %v %v", id, exp, err)
	}
	ref := presence.SessionRef{UserID: 9, SessionID: "4", TokenVersion: 1}
	pair, err := tok.IssueWith(ref, id, exp)
	if err != nil || pair.RefreshID != id || !pair.RefreshExpires.Equal(exp) {
		t.Fatalf("IssueWith: %+v %v", pair, err)
	}
	c, err := tok.ParseRefresh(pair.Refresh)
	if err != nil || c.ID != id || !c.ExpiresAt.Equal(exp) || c.SessionRef != ref {
		t.Fatalf("ParseRefresh: %+v %v, want jti %s exp %v", c, err, id, exp)
	}
	if _, err := tok.ParseAccess(pair.Access); err != nil {
		t.Fatalf("access token: %v", err)
	}
	if _, err := tok.IssueWith(ref, "", exp); err == nil {
		t.Fatal("IssueWith accepted an empty refresh ID")
	}
}
