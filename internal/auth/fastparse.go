package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/presenced/presenced/internal/presence"
)

// The fast path of token parsing. Every authenticated request parses an
// access token, and the profile of the heartbeat showed the jwt package's
// general parse (a map for the header, reflection over RegisteredClaims and
// its NumericDate/ClaimStrings decoders, a new HMAC per call) as a fifth of
// presenced's CPU. Our tokens all have one shape, the one signWith writes
// (one header, one member order, no white space); fastParse accepts exactly
// that shape and nothing else, and whenever it
// cannot accept a token (any deviation, any doubt) parseClaims falls back to
// the jwt package, which then decides and reports. fastParse therefore never
// refuses anything itself, and it accepts only tokens the jwt path accepts
// with the same claims: TestFastParseAgreesWithJWT and FuzzFastParse check
// that.

// ourHeader is the first segment of every token signWith makes: the jwt
// package's encoding of {"alg":"HS256","typ":"JWT"}.
const ourHeader = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

// maxFastSeconds bounds the time claims fastParse reads as integers: below
// 2^53 the jwt package's float64 reading of a NumericDate is exact, so both
// paths see the same second.
const maxFastSeconds = 1 << 40

// fastClaims is a payload as signWith writes it.
type fastClaims struct {
	issuer, subject, id, sessionID, typ string
	expiresAt, issuedAt, tokenVersion   int64
}

// payloadKeys are the members of signWith's payload, in the order
// json.Marshal writes jwtClaims (RegisteredClaims' fields first; aud and nbf
// are never set), and whether each is a string or an integer.
var payloadKeys = [...]struct {
	name   string
	str    bool
	target func(c *fastClaims) any
}{
	{"iss", true, func(c *fastClaims) any { return &c.issuer }},
	{"sub", true, func(c *fastClaims) any { return &c.subject }},
	{"exp", false, func(c *fastClaims) any { return &c.expiresAt }},
	{"iat", false, func(c *fastClaims) any { return &c.issuedAt }},
	{"jti", true, func(c *fastClaims) any { return &c.id }},
	{"sid", true, func(c *fastClaims) any { return &c.sessionID }},
	{"tv", false, func(c *fastClaims) any { return &c.tokenVersion }},
	{"typ", true, func(c *fastClaims) any { return &c.typ }},
}

// scanPayload reads a payload of exactly signWith's layout: those members,
// in that order, once each, no white space, strings of printable ASCII
// without escapes, integers of plain digits. For such a payload
// encoding/json (which the jwt package uses) reads the very same values;
// anything else returns false.
func scanPayload(p []byte, c *fastClaims) bool {
	if len(p) < 2 || p[0] != '{' || p[len(p)-1] != '}' {
		return false
	}
	p = p[1 : len(p)-1]
	for i, k := range payloadKeys {
		if i > 0 {
			if len(p) == 0 || p[0] != ',' {
				return false
			}
			p = p[1:]
		}
		if len(p) < len(k.name)+3 || p[0] != '"' || string(p[1:1+len(k.name)]) != k.name || p[1+len(k.name)] != '"' || p[2+len(k.name)] != ':' {
			return false
		}
		p = p[3+len(k.name):]
		if k.str {
			if len(p) == 0 || p[0] != '"' {
				return false
			}
			end := 1
			for end < len(p) && p[end] != '"' {
				if p[end] < 0x20 || p[end] > 0x7e || p[end] == '\\' {
					return false
				}
				end++
			}
			if end == len(p) {
				return false
			}
			*k.target(c).(*string) = string(p[1:end])
			p = p[end+1:]
			continue
		}
		end := 0
		for end < len(p) && end < 13 && p[end] >= '0' && p[end] <= '9' {
			end++
		}
		// No sign, no leading zero (JSON forbids it), at most 13 digits
		// (below maxFastSeconds' 2^40 ≈ 1.1e12 comes later).
		if end == 0 || (p[0] == '0' && end > 1) || (end < len(p) && p[end] >= '0' && p[end] <= '9') {
			return false
		}
		v, err := strconv.ParseInt(string(p[:end]), 10, 64)
		if err != nil {
			return false
		}
		*k.target(c).(*int64) = v
		p = p[end:]
	}
	return len(p) == 0
}

// macPool holds HMAC-SHA256 states keyed with the secret, reused across
// calls (hmac.New costs several allocations and a key schedule).
type macPool struct{ pool sync.Pool }

func newMACPool(secret []byte) *macPool {
	key := append([]byte(nil), secret...)
	return &macPool{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// fastParse returns the claims of token and true when token is one of ours,
// of type want, correctly signed and valid now; false means "ask the jwt
// package".
func (t *Tokens) fastParse(token, want string) (Claims, bool) {
	rest, ok := strings.CutPrefix(token, ourHeader+".")
	if !ok {
		return Claims{}, false
	}
	dot := strings.IndexByte(rest, '.')
	if dot < 0 {
		return Claims{}, false
	}
	payloadB64, sigB64 := rest[:dot], rest[dot+1:]
	// An HS256 signature is 32 bytes: 43 characters without padding.
	if len(sigB64) != 43 || len(payloadB64) > maxTokenLen {
		return Claims{}, false
	}
	var sig [33]byte // strict decoding of 43 characters needs 33 bytes of room
	if n, err := base64.RawURLEncoding.Strict().Decode(sig[:], []byte(sigB64)); err != nil || n != sha256.Size {
		return Claims{}, false
	}
	mac := t.macs.pool.Get().(hash.Hash)
	mac.Reset()
	signed := token[:len(ourHeader)+1+len(payloadB64)]
	_, _ = mac.Write([]byte(signed))
	var sum [sha256.Size]byte
	good := hmac.Equal(mac.Sum(sum[:0]), sig[:sha256.Size])
	t.macs.pool.Put(mac)
	if !good {
		return Claims{}, false
	}
	var buf [512]byte
	payload := buf[:0]
	if n := base64.RawURLEncoding.DecodedLen(len(payloadB64)); n > len(buf) {
		payload = make([]byte, 0, n)
	}
	payload = payload[:base64.RawURLEncoding.DecodedLen(len(payloadB64))]
	n, err := base64.RawURLEncoding.Strict().Decode(payload, []byte(payloadB64))
	if err != nil {
		return Claims{}, false
	}
	var c fastClaims
	if !scanPayload(payload[:n], &c) {
		return Claims{}, false
	}
	// What the jwt parser checks (options set in NewTokens) ...
	if c.issuer != t.issuer || c.expiresAt >= maxFastSeconds || c.issuedAt >= maxFastSeconds {
		return Claims{}, false
	}
	now := t.now()
	if !now.Before(time.Unix(c.expiresAt, 0).Add(leeway)) || now.Before(time.Unix(c.issuedAt, 0).Add(-leeway)) {
		return Claims{}, false
	}
	// ... and what parseClaims checks after it.
	userID, err := strconv.ParseInt(c.subject, 10, 64)
	if c.typ != want || err != nil || userID <= 0 || strconv.FormatInt(userID, 10) != c.subject ||
		c.sessionID == "" || c.id == "" {
		return Claims{}, false
	}
	return Claims{
		SessionRef: presence.SessionRef{UserID: userID, SessionID: c.sessionID, TokenVersion: c.tokenVersion},
		Type:       c.typ,
		ID:         c.id,
		ExpiresAt:  time.Unix(c.expiresAt, 0).UTC(),
	}, true
}
