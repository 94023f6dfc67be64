package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
)

// Load reads the configuration through getenv (os.Getenv in main, a map in
// tests), applies defaults and validates it. When anything is invalid it
// returns the zero Config and every problem at once, joined with errors.Join,
// one *Error per problem (see Errors). Files named by _FILE variables are read
// here, so Load touches the file system only for those.
func Load(getenv func(string) string) (Config, error) {
	l := &loader{getenv: getenv}
	var c Config

	// Variables are read in the order the package documentation lists
	// them, so the problems come out in that order too.
	c.Addr = l.hostPort(EnvAddr, DefaultAddr)
	c.RedisURL = l.redisURL()
	realRedis := l.str(EnvRedisURL) != "" // even when invalid: the operator meant a real Redis
	c.EmbeddedRedisAddr = l.hostPort(EnvEmbeddedRedisAddr, DefaultEmbeddedRedisAddr)

	secret, secretVar, secretOK := l.secret(EnvJWTSecret, EnvJWTSecretFile)
	switch {
	case secretVar != "" && len(secret) < MinSecretLen:
		l.fail(secretVar, "the secret must be at least %d bytes (generate one with: openssl rand -base64 48)", MinSecretLen)
	case secretVar == "" && secretOK && realRedis:
		l.fail(EnvJWTSecret, "required when %s is set (or set %s); use at least %d random bytes, e.g. from: openssl rand -base64 48",
			EnvRedisURL, EnvJWTSecretFile, MinSecretLen)
	default:
		c.JWTSecret = secret
	}

	// Durations that are checked against each other: a cross check runs
	// only when both sides are valid, so one typo yields one message.
	var ttlOK, sweepOK, accessOK, refreshOK bool
	c.TTL, ttlOK = l.durationOK(EnvTTL, DefaultTTL, MinTTL)
	c.SweepInterval, sweepOK = l.durationOK(EnvSweepInterval, DefaultSweepInterval, MinSweepInterval)
	if ttlOK && sweepOK && c.SweepInterval > c.TTL {
		l.fail(EnvSweepInterval, "must not be longer than %s (%s), got %s", EnvTTL, c.TTL, c.SweepInterval)
	}
	if l.str(EnvAwayAfter) == "0" {
		c.AwayAfter = 0
	} else {
		c.AwayAfter, _ = l.durationOK(EnvAwayAfter, DefaultAwayAfter, MinTTL)
	}
	c.AccessTokenTTL, accessOK = l.durationOK(EnvAccessTokenTTL, DefaultAccessTokenTTL, MinTokenTTL)
	c.RefreshTokenTTL, refreshOK = l.durationOK(EnvRefreshTokenTTL, DefaultRefreshTokenTTL, MinTokenTTL)
	if accessOK && refreshOK && c.RefreshTokenTTL <= c.AccessTokenTTL {
		l.fail(EnvRefreshTokenTTL, "must be longer than %s (%s), got %s", EnvAccessTokenTTL, c.AccessTokenTTL, c.RefreshTokenTTL)
	}

	c.KeyPrefix = l.keyPrefix()
	c.Registration = l.registration()
	c.AdminUsername, c.AdminPassword = l.admin(realRedis)
	c.CORSOrigins = l.corsOrigins()
	c.Shards = int(l.integer(EnvShards, DefaultShards, 1, MaxShards))
	c.EventsMaxLen = l.integer(EnvEventsMaxLen, DefaultEventsMaxLen, MinEventsMaxLen, math.MaxInt64)
	c.BcryptCost = int(l.integer(EnvBcryptCost, DefaultBcryptCost, MinBcryptCost, MaxBcryptCost))
	c.RequestTimeout = l.duration(EnvRequestTimeout, DefaultRequestTimeout, 1)
	c.ShutdownTimeout = l.duration(EnvShutdownTimeout, DefaultShutdownTimeout, 1)
	c.DrainDelay = l.duration(EnvDrainDelay, DefaultDrainDelay, 0)
	c.LogLevel = l.logLevel()
	c.LogFormat = l.logFormat()
	c.ServiceKeys = l.serviceKeys()
	c.SSEPingInterval = l.duration(EnvSSEPingInterval, DefaultSSEPingInterval, MinSSEPingInterval)
	c.SSEMaxStreams = int(l.integer(EnvSSEMaxStreams, DefaultSSEMaxStreams, 1, MaxSSEMaxStreams))
	c.LoginLimitUser = l.loginLimit(EnvLoginLimitUser, DefaultLoginLimitUser)
	c.LoginLimitIP = l.loginLimit(EnvLoginLimitIP, DefaultLoginLimitIP)
	c.TrustedProxies = l.trustedProxies()

	if err := errors.Join(l.errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// loader reads variables and collects every problem instead of stopping at
// the first.
type loader struct {
	getenv func(string) string
	errs   []error
}

func (l *loader) fail(name, format string, args ...any) {
	l.errs = append(l.errs, &Error{Var: name, Message: fmt.Sprintf(format, args...)})
}

// str is the variable with surrounding white space removed; "" when unset.
func (l *loader) str(name string) string { return strings.TrimSpace(l.getenv(name)) }

func (l *loader) duration(name string, def, min time.Duration) time.Duration {
	d, _ := l.durationOK(name, def, min)
	return d
}

// durationOK parses a Go duration of at least min; ok is false when the
// variable was invalid (a problem is then recorded and def returned).
func (l *loader) durationOK(name string, def, min time.Duration) (d time.Duration, ok bool) {
	v := l.str(name)
	if v == "" {
		return def, true
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		l.fail(name, "%q is not a duration (use Go syntax like 90s or 2m)", v)
		return def, false
	}
	if d < min {
		if min == 0 {
			l.fail(name, "must not be negative, got %s", d)
		} else if min <= 1 {
			l.fail(name, "must be positive, got %s", d)
		} else {
			l.fail(name, "must be at least %s, got %s", min, d)
		}
		return def, false
	}
	return d, true
}

// integer parses a base-10 integer in [min, max].
func (l *loader) integer(name string, def, min, max int64) int64 {
	v := l.str(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		l.fail(name, "%q is not a whole number", v)
		return def
	}
	if n < min || n > max {
		if max == math.MaxInt64 {
			l.fail(name, "must be at least %d, got %d", min, n)
		} else {
			l.fail(name, "must be between %d and %d, got %d", min, max, n)
		}
		return def
	}
	return n
}

// hostPort checks a listen address: host:port with a numeric port (the host
// may be empty for every interface).
func (l *loader) hostPort(name, def string) string {
	v := l.str(name)
	if v == "" {
		return def
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		l.fail(name, "%q is not host:port (e.g. :8080 or 127.0.0.1:8080)", v)
		return def
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		l.fail(name, "%q: the port must be a number from 0 to 65535", v)
		return def
	}
	return v
}

// redisURL checks REDIS_URL with the parser the client will use. The value
// may hold a password, so messages quote only go-redis's own complaint, never
// the URL.
func (l *loader) redisURL() string {
	v := l.str(EnvRedisURL)
	if v == "" {
		return ""
	}
	if IsClusterURL(v) {
		if _, err := ClusterOptions(v); err != nil {
			l.fail(EnvRedisURL, "not a valid Redis Cluster URL (%s); want redis+cluster://[user:password@]host1:port1,host2:port2[?options] or rediss+cluster://...", err)
			return ""
		}
		return v
	}
	if _, err := redis.ParseURL(v); err != nil {
		// url.Parse errors repeat the whole URL; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		msg := printable(strings.TrimPrefix(err.Error(), "redis: "))
		l.fail(EnvRedisURL, "not a valid Redis URL (%s); want redis://[user:password@]host:port/db, rediss://..., unix:///path, or redis+cluster://host1:port1,host2:port2 for a Redis Cluster", msg)
		return ""
	}
	return v
}

// printable replaces control characters (which a URL's decoded query could
// smuggle into go-redis's message) so that every problem stays on one line.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
}

func (l *loader) keyPrefix() string {
	v := l.str(EnvKeyPrefix)
	if v == "" {
		return DefaultKeyPrefix
	}
	if !utf8.ValidString(v) {
		l.fail(EnvKeyPrefix, "%q is not valid UTF-8", v)
		return DefaultKeyPrefix
	}
	for _, r := range v {
		switch {
		case r == '{' || r == '}':
			l.fail(EnvKeyPrefix, "%q must not contain { or }: the store adds the hash tags itself", v)
			return DefaultKeyPrefix
		case unicode.IsSpace(r) || !unicode.IsPrint(r):
			l.fail(EnvKeyPrefix, "%q must not contain white space or control characters", v)
			return DefaultKeyPrefix
		}
	}
	return v
}

func (l *loader) registration() Registration {
	v := strings.ToLower(l.str(EnvRegistration))
	switch r := Registration(v); r {
	case "":
		return DefaultRegistration
	case RegistrationApproval, RegistrationOpen, RegistrationClosed:
		return r
	}
	l.fail(EnvRegistration, "%q is not one of approval, open, closed", l.str(EnvRegistration))
	return DefaultRegistration
}

// corsOrigins parses a comma-separated list of origins. Browsers send Origin
// as scheme://host[:port] in lower case with no path, and the HTTP layer
// compares exactly, so entries are normalised to that form here and anything
// that could never match is refused rather than silently ignored.
func (l *loader) corsOrigins() []string {
	v := l.str(EnvCORSOrigins)
	if v == "" {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	wildcard := false
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if item == "*" {
			wildcard = true
			continue
		}
		origin, ok := normalizeOrigin(item)
		if !ok {
			l.fail(EnvCORSOrigins, "%q is not an origin (want scheme://host[:port], e.g. https://app.example.com)", item)
			continue
		}
		if !seen[origin] {
			seen[origin] = true
			out = append(out, origin)
		}
	}
	if wildcard {
		if len(out) > 0 {
			l.fail(EnvCORSOrigins, "* allows every origin; use it alone, not together with other origins")
		}
		return []string{"*"}
	}
	return out
}

func normalizeOrigin(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil {
		return "", false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", false
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || u.Opaque != "" {
		return "", false
	}
	// A single trailing slash is a common way of writing an origin and
	// means the same; any other path cannot be part of one.
	if u.Path != "" && u.Path != "/" {
		return "", false
	}
	host := u.Hostname()
	if host == "" || strings.ContainsAny(host, "*") {
		return "", false
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", false
		}
	}
	if strings.HasSuffix(u.Host, ":") {
		return "", false
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), true
}

func (l *loader) logLevel() slog.Level {
	v := l.str(EnvLogLevel)
	switch strings.ToLower(v) {
	case "":
		return DefaultLogLevel
	case "debug":
		return slog.LevelDebug
	case "info":
		return slog.LevelInfo
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	l.fail(EnvLogLevel, "%q is not one of debug, info, warn, error", v)
	return DefaultLogLevel
}

func (l *loader) logFormat() LogFormat {
	v := l.str(EnvLogFormat)
	switch f := LogFormat(strings.ToLower(v)); f {
	case "":
		return DefaultLogFormat
	case LogText, LogJSON:
		return f
	}
	l.fail(EnvLogFormat, "%q is not one of text, json", v)
	return DefaultLogFormat
}

// secret reads a secret from the variable name or from the file named by
// fileVar. It returns the value and the variable it came from ("" when
// neither is set); ok is false when a problem was recorded. The value is
// never put into a message.
func (l *loader) secret(name, fileVar string) (value []byte, from string, ok bool) {
	direct := l.getenv(name) // not trimmed: white space may be part of a secret
	path := l.str(fileVar)
	switch {
	case direct != "" && path != "":
		l.fail(name, "set either %s or %s, not both", name, fileVar)
		return nil, "", false
	case direct != "":
		return []byte(direct), name, true
	case path == "":
		return nil, "", true
	}
	b, err := readSmallFile(path)
	if err != nil {
		l.fail(fileVar, "cannot read %q: %v", path, err)
		return nil, "", false
	}
	// Editors and `echo` end files with a newline that is not part of the
	// secret.
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		l.fail(fileVar, "%q is empty", path)
		return nil, "", false
	}
	return b, fileVar, true
}

// readSmallFile reads at most maxSecretFileSize bytes. Errors carry only the
// cause (the caller names the path), without os.PathError's repetition.
func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, pathCause(err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, errors.New("is a directory")
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return nil, pathCause(err)
	}
	if len(b) > maxSecretFileSize {
		return nil, fmt.Errorf("larger than %d KiB; a secret file holds only the secret", maxSecretFileSize>>10)
	}
	return b, nil
}

func pathCause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// admin reads the first admin's credentials. A password without a username
// is a mistake; a username without a password is allowed only with the
// embedded Redis, where the wiring generates a password and logs it (a
// throwaway dev setup); against a real Redis that would create an account
// nobody knows the password of.
func (l *loader) admin(realRedis bool) (username, password string) {
	username = l.str(EnvAdminUsername)
	pw, pwVar, pwOK := l.secret(EnvAdminPassword, EnvAdminPasswordFile)
	if username != "" {
		if err := presence.ValidateUsername(username); err != nil {
			msg := err.Error()
			var ve *presence.ValidationError
			if errors.As(err, &ve) {
				msg = ve.Message
			}
			l.fail(EnvAdminUsername, "%q %s", username, msg)
		}
	}
	if pwVar != "" {
		if err := presence.ValidatePassword(string(pw)); err != nil {
			l.fail(pwVar, "the password must be %d to %d characters", presence.MinPasswordLen, presence.MaxPasswordLen)
		}
	}
	switch {
	case pwVar != "" && username == "":
		l.fail(EnvAdminUsername, "required when %s is set", pwVar)
	case username != "" && pwVar == "" && pwOK && realRedis:
		l.fail(EnvAdminPassword, "required when %s and %s are set (or set %s)", EnvAdminUsername, EnvRedisURL, EnvAdminPasswordFile)
	}
	return username, string(pw)
}
