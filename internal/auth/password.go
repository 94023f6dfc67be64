package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// prehashKey is the HMAC key of the password pre-hash. It is not a secret: it
// separates this use of SHA-256 from every other, so that a leaked database of
// plain (unsalted) SHA-256 password hashes from some other site cannot be
// tested directly against our bcrypt hashes ("password shucking").
const prehashKey = "presenced/password-prehash/v1"

// Hasher hashes and verifies passwords with bcrypt. It is safe for
// concurrent use.
type Hasher struct {
	cost int
	// dummy is a bcrypt hash at cost, made once in NewHasher, that
	// VerifyNone compares against so that it costs what Verify costs.
	dummy []byte
}

// NewHasher returns a Hasher that hashes at the given bcrypt cost. A cost of 0
// means bcrypt.DefaultCost; other costs are clamped to [bcrypt.MinCost,
// bcrypt.MaxCost]. Each step of cost doubles the time of Hash and Verify; the
// configuration should keep it in a sane range (tests use bcrypt.MinCost).
//
// NewHasher computes one hash at cost up front (for VerifyNone), so it takes as
// long as one Hash call.
func NewHasher(cost int) *Hasher {
	switch {
	case cost == 0:
		cost = bcrypt.DefaultCost
	case cost < bcrypt.MinCost:
		cost = bcrypt.MinCost
	case cost > bcrypt.MaxCost:
		cost = bcrypt.MaxCost
	}
	// The dummy password is irrelevant: VerifyNone never succeeds on purpose,
	// it only spends the time of one comparison at this cost.
	dummy, err := bcrypt.GenerateFromPassword(prehash("presenced dummy password"), cost)
	if err != nil {
		// Unreachable: the cost is in bcrypt's range, the pre-hash is 44
		// bytes (under bcrypt's 72) and crypto/rand does not fail.
		panic(fmt.Sprintf("auth: precomputing the dummy bcrypt hash: %v", err))
	}
	return &Hasher{cost: cost, dummy: dummy}
}

// prehash condenses a password of any length to 44 bytes before bcrypt sees
// it. bcrypt uses only the first 72 bytes of its input (and x/crypto's
// GenerateFromPassword refuses longer ones), while passwords here may be 128
// characters, up to 512 bytes of UTF-8: without the pre-hash two passwords
// that share their first 72 bytes (about 18 four-byte characters) would be
// the same password. HMAC-SHA256 keeps all the entropy that bcrypt could use
// (256 bits), and base64 keeps NUL bytes out of bcrypt's input, which C
// implementations would treat as the end of the string.
func prehash(password string) []byte {
	mac := hmac.New(sha256.New, []byte(prehashKey))
	mac.Write([]byte(password))
	sum := mac.Sum(nil)
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sum)))
	base64.StdEncoding.Encode(out, sum)
	return out
}

// Hash returns the bcrypt hash of password (a "$2a$..." string, salted). It
// does not check the password's length or content: callers validate with
// presence.ValidatePassword first.
func (h *Hasher) Hash(password string) (string, error) {
	b, err := bcrypt.GenerateFromPassword(prehash(password), h.cost)
	if err != nil {
		return "", fmt.Errorf("auth: hash password: %w", err)
	}
	return string(b), nil
}

// Verify reports whether password matches hash, a hash made by Hash. A hash
// that is malformed, or was made without the pre-hash, never matches; Verify
// does not panic on any input. The comparison is bcrypt's, at the cost stored
// in hash, and constant-time.
func (h *Hasher) Verify(hash, password string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), prehash(password)) == nil
}

// VerifyNone spends the time of a failed Verify against a hash of this
// Hasher's cost; there is nothing to report, as there is no account. Login
// calls it when the username is unknown, so that "no such user" and "wrong
// password" take about as long and response times do not reveal which
// usernames exist.
func (h *Hasher) VerifyNone(password string) {
	// The result is ignored on purpose: the work is the point.
	_ = bcrypt.CompareHashAndPassword(h.dummy, prehash(password))
}
