package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/presenced/presenced/internal/presence"
)

// ErrInvalidToken is wrapped by every error of ParseAccess and ParseRefresh:
// a token that is malformed, forged, expired, of the wrong type or otherwise
// unacceptable. The HTTP layer answers 401 for it.
var ErrInvalidToken = errors.New("token is invalid or expired")

// Defaults of TokenConfig, and the limits of tokens.
const (
	defaultAccessTTL  = 15 * time.Minute
	defaultRefreshTTL = 168 * time.Hour
	defaultIssuer     = "presenced"
	// minSecretLen is the shortest HS256 key NewTokens accepts: 256 bits, the
	// size of the HMAC-SHA256 output (RFC 7518 section 3.2).
	minSecretLen = 32
	// maxTokenLen bounds the work a client can make us do before the
	// signature is checked (base64 and JSON decoding). Our tokens are a few
	// hundred bytes.
	maxTokenLen = 4096
	// leeway absorbs small clock differences between the replicas that issue
	// and verify tokens; it applies to exp, nbf and iat.
	leeway = 5 * time.Second

	typeAccess  = "access"
	typeRefresh = "refresh"
)

// Reasons for refusing a token that the jwt package does not check itself.
// Each is wrapped together with ErrInvalidToken.
var (
	errEmpty        = errors.New("token is empty")
	errTooLong      = errors.New("token is too long")
	errWrongType    = errors.New("wrong token type")
	errBadSubject   = errors.New("sub is not a positive decimal user ID")
	errBadSession   = errors.New("sid is missing")
	errBadVersion   = errors.New("tv is missing or negative")
	errMissingID    = errors.New("jti is missing")
	errMissingIssue = errors.New("iat is missing")
	errBadAlg       = errors.New("signing method is not HS256")
)

// TokenConfig configures Tokens. Zero values take the defaults below, except
// Secret, which is required.
type TokenConfig struct {
	// Secret is the HS256 key. It must be at least 32 bytes (NewTokens
	// returns an error otherwise); NewTokens copies it.
	Secret []byte
	// AccessTTL is how long an access token is valid. Default 15m.
	AccessTTL time.Duration
	// RefreshTTL is how long a refresh token, and so a session that is not
	// refreshed, is valid. Default 168h.
	RefreshTTL time.Duration
	// Issuer is the iss claim written and required. Default "presenced".
	Issuer string
	// Now is the clock used to issue and to check tokens. Default time.Now.
	Now func() time.Time
}

// Tokens issues and parses the access and refresh tokens of sessions. It is
// safe for concurrent use.
type Tokens struct {
	secret     []byte
	accessTTL  time.Duration
	refreshTTL time.Duration
	issuer     string
	now        func() time.Time
	parser     *jwt.Parser
	macs       *macPool // fastParse's HMAC states
}

// NewTokens validates cfg, fills its defaults and returns a Tokens. It returns
// an error when the secret is shorter than 32 bytes or a TTL is negative or,
// after defaults, shorter than a second.
func NewTokens(cfg TokenConfig) (*Tokens, error) {
	if len(cfg.Secret) < minSecretLen {
		return nil, fmt.Errorf("auth: token secret is %d bytes, want at least %d", len(cfg.Secret), minSecretLen)
	}
	if cfg.AccessTTL < 0 {
		return nil, fmt.Errorf("auth: access token TTL %v is negative", cfg.AccessTTL)
	}
	if cfg.RefreshTTL < 0 {
		return nil, fmt.Errorf("auth: refresh token TTL %v is negative", cfg.RefreshTTL)
	}
	if cfg.AccessTTL == 0 {
		cfg.AccessTTL = defaultAccessTTL
	}
	if cfg.RefreshTTL == 0 {
		cfg.RefreshTTL = defaultRefreshTTL
	}
	// Tokens carry whole seconds (JWT NumericDate): a TTL under a second
	// could produce a token that is expired when issued.
	if cfg.AccessTTL < time.Second || cfg.RefreshTTL < time.Second {
		return nil, fmt.Errorf("auth: token TTLs (access %v, refresh %v) must be at least 1s", cfg.AccessTTL, cfg.RefreshTTL)
	}
	if cfg.Issuer == "" {
		cfg.Issuer = defaultIssuer
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &Tokens{
		// A copy, so that a caller reusing its slice cannot change the key.
		secret:     append([]byte(nil), cfg.Secret...),
		accessTTL:  cfg.AccessTTL,
		refreshTTL: cfg.RefreshTTL,
		issuer:     cfg.Issuer,
		now:        cfg.Now,
	}
	t.macs = newMACPool(t.secret)
	t.parser = jwt.NewParser(
		// Pinning the algorithm refuses "none", HS384/HS512 and the RS256/HS256
		// confusion attack before the key is looked at.
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(t.issuer),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(t.now),
		// Strict base64 refuses non-canonical encodings (non-zero padding
		// bits), so one signature has exactly one spelling.
		jwt.WithStrictDecoding(),
	)
	return t, nil
}

// Pair is the token pair of a session, as login and refresh hand it out.
type Pair struct {
	Access, Refresh string
	// RefreshID is the jti of the refresh token: the store keeps it as the
	// session's current refresh ID (see presence.SessionStart and
	// Store.RotateRefresh).
	RefreshID string
	// RefreshExpires is the refresh token's exp, in whole seconds.
	RefreshExpires time.Time
}

// Claims is what a parsed token says. ExpiresAt is in whole seconds, UTC.
type Claims struct {
	presence.SessionRef
	// Type is "access" or "refresh".
	Type string
	// ID is the token's jti.
	ID        string
	ExpiresAt time.Time
}

// jwtClaims is the JSON payload of our tokens.
type jwtClaims struct {
	jwt.RegisteredClaims
	SessionID string `json:"sid,omitempty"`
	// TokenVersion is a pointer so that a missing tv is told apart from 0.
	TokenVersion *int64 `json:"tv,omitempty"`
	Type         string `json:"typ,omitempty"`
}

// Issue returns a new access token and a new refresh token for the session
// ref, each with its own random jti. ref must have a positive UserID, a
// non-empty SessionID and a non-negative TokenVersion.
func (t *Tokens) Issue(ref presence.SessionRef) (Pair, error) {
	id, exp, err := t.NewRefresh()
	if err != nil {
		return Pair{}, err
	}
	return t.IssueWith(ref, id, exp)
}

// NewRefresh picks the jti and expiry of a session's first refresh token
// before the session exists, so that the store can record them when it
// creates the session (one round trip at login); IssueWith then signs it.
func (t *Tokens) NewRefresh() (id string, expires time.Time, err error) {
	id, err = newID()
	if err != nil {
		return "", time.Time{}, err
	}
	return id, t.now().Add(t.refreshTTL).Truncate(time.Second).UTC(), nil
}

// IssueWith is Issue with the refresh token's jti and expiry given (from
// NewRefresh).
func (t *Tokens) IssueWith(ref presence.SessionRef, refreshID string, refreshExpires time.Time) (Pair, error) {
	if ref.UserID <= 0 || ref.SessionID == "" || ref.TokenVersion < 0 || refreshID == "" {
		return Pair{}, fmt.Errorf("auth: issue tokens for user %d session %q version %d: invalid session reference",
			ref.UserID, ref.SessionID, ref.TokenVersion)
	}
	now := t.now()
	access, _, _, err := t.sign(ref, typeAccess, now, t.accessTTL)
	if err != nil {
		return Pair{}, err
	}
	refresh, _, _, err := t.signWith(ref, typeRefresh, now, refreshID, refreshExpires.Truncate(time.Second).UTC())
	if err != nil {
		return Pair{}, err
	}
	return Pair{Access: access, Refresh: refresh, RefreshID: refreshID, RefreshExpires: refreshExpires.Truncate(time.Second).UTC()}, nil
}

// sign makes one token of type typ for ref, valid for ttl from now, and
// returns it with its jti and its exp.
func (t *Tokens) sign(ref presence.SessionRef, typ string, now time.Time, ttl time.Duration) (string, string, time.Time, error) {
	id, err := newID()
	if err != nil {
		return "", "", time.Time{}, err
	}
	// NumericDate keeps whole seconds; truncating here makes the returned
	// expiry the one a parse of the token will report.
	return t.signWith(ref, typ, now, id, now.Add(ttl).Truncate(time.Second).UTC())
}

func (t *Tokens) signWith(ref presence.SessionRef, typ string, now time.Time, id string, exp time.Time) (string, string, time.Time, error) {
	iat := now.Truncate(time.Second).UTC()
	tv := ref.TokenVersion
	claims := jwtClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   strconv.FormatInt(ref.UserID, 10),
			ID:        id,
			IssuedAt:  jwt.NewNumericDate(iat),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		SessionID:    ref.SessionID,
		TokenVersion: &tv,
		Type:         typ,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
	if err != nil {
		return "", "", time.Time{}, fmt.Errorf("auth: sign %s token: %w", typ, err)
	}
	// Never hand out a token that ParseAccess/ParseRefresh would refuse.
	if len(s) > maxTokenLen {
		return "", "", time.Time{}, fmt.Errorf("auth: sign %s token: %d bytes, limit %d (session ID too long)", typ, len(s), maxTokenLen)
	}
	return s, id, exp, nil
}

// newID returns 128 random bits, base64url without padding: a jti.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: token ID: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ParseAccess verifies an access token and returns its claims. Every error
// wraps ErrInvalidToken; a refresh token is refused. A valid result says only
// that the token is genuine and unexpired: whether its session is still open
// is for the store to say.
func (t *Tokens) ParseAccess(token string) (Claims, error) {
	return t.parse(token, typeAccess)
}

// ParseRefresh verifies a refresh token and returns its claims. Every error
// wraps ErrInvalidToken; an access token is refused. Whether the token is the
// session's current refresh token is for the store to say (RotateRefresh).
func (t *Tokens) ParseRefresh(token string) (Claims, error) {
	return t.parse(token, typeRefresh)
}

// parse verifies token and requires its typ to be want.
func (t *Tokens) parse(token, want string) (Claims, error) {
	c, err := t.parseClaims(token, want)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return c, nil
}

func (t *Tokens) parseClaims(token, want string) (Claims, error) {
	if token == "" {
		return Claims{}, errEmpty
	}
	if len(token) > maxTokenLen {
		return Claims{}, errTooLong
	}
	if c, ok := t.fastParse(token, want); ok {
		return c, nil
	}
	return t.jwtParse(token, want)
}

// jwtParse is parseClaims through the jwt package: the reference, and the
// path of every token fastParse does not accept.
func (t *Tokens) jwtParse(token, want string) (Claims, error) {
	var jc jwtClaims
	if _, err := t.parser.ParseWithClaims(token, &jc, t.key); err != nil {
		return Claims{}, err
	}
	// The signature is good from here on: the checks below catch tokens we
	// would never issue, and tokens of the other type.
	if jc.Type != want {
		return Claims{}, fmt.Errorf("%w: got %q, want %q", errWrongType, jc.Type, want)
	}
	userID, err := strconv.ParseInt(jc.Subject, 10, 64)
	// The round trip through FormatInt refuses "+42" and "042": one user ID,
	// one spelling.
	if err != nil || userID <= 0 || strconv.FormatInt(userID, 10) != jc.Subject {
		return Claims{}, errBadSubject
	}
	if jc.SessionID == "" {
		return Claims{}, errBadSession
	}
	if jc.TokenVersion == nil || *jc.TokenVersion < 0 {
		return Claims{}, errBadVersion
	}
	if jc.ID == "" {
		return Claims{}, errMissingID
	}
	// WithIssuedAt checks iat only when present; we always write it.
	if jc.IssuedAt == nil {
		return Claims{}, errMissingIssue
	}
	return Claims{
		SessionRef: presence.SessionRef{
			UserID:       userID,
			SessionID:    jc.SessionID,
			TokenVersion: *jc.TokenVersion,
		},
		Type:      jc.Type,
		ID:        jc.ID,
		ExpiresAt: jc.ExpiresAt.Time.UTC(),
	}, nil
}

// key hands the parser the HMAC secret, for HS256 only.
func (t *Tokens) key(tok *jwt.Token) (any, error) {
	// WithValidMethods already refuses every other algorithm; checking again
	// here means the secret can never reach another algorithm's Verify, even
	// if the parser options change.
	if tok.Method != jwt.SigningMethodHS256 {
		return nil, errBadAlg
	}
	return t.secret, nil
}
