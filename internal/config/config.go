package config

import (
	"errors"
	"log/slog"
	"net/netip"
	"net/url"
	"time"
)

// Names of the environment variables Load reads.
const (
	EnvAddr              = "PRESENCE_ADDR"
	EnvRedisURL          = "REDIS_URL"
	EnvEmbeddedRedisAddr = "PRESENCE_EMBEDDED_REDIS_ADDR"
	EnvJWTSecret         = "PRESENCE_JWT_SECRET"
	EnvJWTSecretFile     = "PRESENCE_JWT_SECRET_FILE"
	EnvTTL               = "PRESENCE_TTL"
	EnvSweepInterval     = "PRESENCE_SWEEP_INTERVAL"
	EnvAwayAfter         = "PRESENCE_AWAY_AFTER"
	EnvAccessTokenTTL    = "PRESENCE_ACCESS_TOKEN_TTL"
	EnvRefreshTokenTTL   = "PRESENCE_REFRESH_TOKEN_TTL"
	EnvKeyPrefix         = "PRESENCE_KEY_PREFIX"
	EnvRegistration      = "PRESENCE_REGISTRATION"
	EnvAdminUsername     = "PRESENCE_ADMIN_USERNAME"
	EnvAdminPassword     = "PRESENCE_ADMIN_PASSWORD"
	EnvAdminPasswordFile = "PRESENCE_ADMIN_PASSWORD_FILE"
	EnvCORSOrigins       = "PRESENCE_CORS_ORIGINS"
	EnvShards            = "PRESENCE_SHARDS"
	EnvEventsMaxLen      = "PRESENCE_EVENTS_MAXLEN"
	EnvBcryptCost        = "PRESENCE_BCRYPT_COST"
	EnvRequestTimeout    = "PRESENCE_REQUEST_TIMEOUT"
	EnvShutdownTimeout   = "PRESENCE_SHUTDOWN_TIMEOUT"
	EnvDrainDelay        = "PRESENCE_DRAIN_DELAY"
	EnvLogLevel          = "LOG_LEVEL"
	EnvLogFormat         = "LOG_FORMAT"
	EnvServiceKeys       = "PRESENCE_SERVICE_KEYS"
	EnvSSEPingInterval   = "PRESENCE_SSE_PING_INTERVAL"
	EnvSSEMaxStreams     = "PRESENCE_SSE_MAX_STREAMS"
)

// Defaults of the variables that have one.
const (
	DefaultAddr              = ":8080"
	DefaultEmbeddedRedisAddr = "127.0.0.1:6380"
	DefaultTTL               = 120 * time.Second
	DefaultSweepInterval     = time.Second
	DefaultAwayAfter         = 5 * time.Minute
	DefaultAccessTokenTTL    = 15 * time.Minute
	DefaultRefreshTokenTTL   = 168 * time.Hour
	DefaultKeyPrefix         = "presence:"
	DefaultRegistration      = RegistrationApproval
	DefaultShards            = 1
	DefaultEventsMaxLen      = 100000
	DefaultBcryptCost        = 10
	DefaultRequestTimeout    = 5 * time.Second
	DefaultShutdownTimeout   = 15 * time.Second
	DefaultDrainDelay        = 5 * time.Second
	DefaultLogLevel          = slog.LevelInfo
	DefaultLogFormat         = LogText
	DefaultSSEPingInterval   = 15 * time.Second
	DefaultSSEMaxStreams     = 1000
)

// Limits that Load enforces.
const (
	// MinSSEPingInterval is the shortest event-stream ping interval: each
	// ping also re-checks the stream's session in Redis.
	MinSSEPingInterval = time.Second
	// MaxSSEMaxStreams bounds the event-stream cap; each stream holds a
	// connection (a file descriptor) and a goroutine.
	MaxSSEMaxStreams = 1000000

	// MinTTL is the shortest presence TTL: below a second the heartbeat
	// traffic needed to stay online would dwarf everything else.
	MinTTL = time.Second
	// MinSweepInterval is the shortest sweep period; faster would only burn
	// Redis round trips.
	MinSweepInterval = 10 * time.Millisecond
	// MinTokenTTL is the shortest token lifetime: JWT expiry times have
	// one-second precision, so a shorter token could be born expired.
	MinTokenTTL = time.Second
	// MinSecretLen is the shortest JWT secret, in bytes (HS256 wants a key
	// at least as long as its 32-byte output).
	MinSecretLen = 32
	// MaxShards is the number of Redis Cluster hash slots; more shards than
	// slots cannot spread any further.
	MaxShards = 16384
	// MinEventsMaxLen is the smallest cap of the transitions stream. The
	// stream is always capped (an uncapped one grows forever), and a cap
	// below this would drop events before a briefly disconnected consumer
	// could read them.
	MinEventsMaxLen = 1000
	// MinBcryptCost and MaxBcryptCost are bcrypt's own bounds.
	MinBcryptCost = 4
	MaxBcryptCost = 31
	// maxSecretFileSize bounds what a _FILE variable may point at, so that a
	// mistake like /dev/zero fails fast instead of eating memory.
	maxSecretFileSize = 64 << 10
)

// Registration says what happens to accounts created through the public
// register endpoint.
type Registration string

// Registration modes.
const (
	// RegistrationApproval creates pending accounts that an admin approves.
	RegistrationApproval Registration = "approval"
	// RegistrationOpen creates active accounts and logs them in at once.
	RegistrationOpen Registration = "open"
	// RegistrationClosed refuses public registration (403).
	RegistrationClosed Registration = "closed"
)

// LogFormat is the encoding of log lines.
type LogFormat string

// Log formats.
const (
	// LogText is slog's key=value text: the default, because a developer
	// running the binary by hand reads it more easily.
	LogText LogFormat = "text"
	// LogJSON is one JSON object per line, for log collectors in production.
	LogJSON LogFormat = "json"
)

// Config is presenced's whole configuration. Load fills and validates it; a
// Config that Load returned without error satisfies every rule documented on
// its fields.
type Config struct {
	// Addr is the HTTP listen address (PRESENCE_ADDR), host:port with a
	// numeric port; port 0 picks a free one. Default ":8080".
	Addr string
	// RedisURL is the Redis to use (REDIS_URL): a single server as a URL
	// that go-redis's ParseURL accepts (redis://, rediss://, unix://), or a
	// Redis Cluster as redis+cluster://host1:port1,host2:port2 (see
	// ClusterOptions and RedisCluster). Default "": run an embedded
	// in-process Redis (see Embedded).
	RedisURL string
	// EmbeddedRedisAddr is where the embedded Redis listens when RedisURL is
	// empty (PRESENCE_EMBEDDED_REDIS_ADDR). Default "127.0.0.1:6380". It has
	// no password: keep it on loopback.
	EmbeddedRedisAddr string
	// JWTSecret is the HS256 signing key (PRESENCE_JWT_SECRET, or the content
	// of the file named by PRESENCE_JWT_SECRET_FILE with trailing newlines
	// removed), at least MinSecretLen bytes. Required when RedisURL is set;
	// with the embedded Redis it may be nil and the wiring generates a random
	// one (tokens then die with the process, like the data). Default nil.
	JWTSecret []byte
	// TTL is how long a session stays live after its last heartbeat or
	// authenticated request (PRESENCE_TTL), at least MinTTL. Default 120s.
	TTL time.Duration
	// SweepInterval is the period of the backup sweep that finds expired
	// sessions whose keyspace event was lost (PRESENCE_SWEEP_INTERVAL),
	// between MinSweepInterval and TTL. Default 1s.
	SweepInterval time.Duration
	// AwayAfter is how long a user with live sessions may show no activity
	// (heartbeats with "active": false only) before they are away
	// (PRESENCE_AWAY_AFTER); "0" disables away detection, otherwise at least
	// MinTTL. Default 5m.
	AwayAfter time.Duration
	// AccessTokenTTL is the lifetime of access tokens
	// (PRESENCE_ACCESS_TOKEN_TTL), at least MinTokenTTL. Default 15m.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of refresh tokens, and so of a session
	// that keeps refreshing (PRESENCE_REFRESH_TOKEN_TTL), longer than
	// AccessTokenTTL. Default 168h.
	RefreshTokenTTL time.Duration
	// KeyPrefix starts every Redis key (PRESENCE_KEY_PREFIX): no white space
	// or control characters, and no braces, because the store adds the
	// {hash tags} itself. Default "presence:".
	KeyPrefix string
	// Registration is the public registration mode (PRESENCE_REGISTRATION).
	// Default RegistrationApproval.
	Registration Registration
	// AdminUsername is the first admin, created at start-up if absent and
	// never overwritten (PRESENCE_ADMIN_USERNAME); a valid username. Default
	// "": no admin is created.
	AdminUsername string
	// AdminPassword is the first admin's password (PRESENCE_ADMIN_PASSWORD or
	// PRESENCE_ADMIN_PASSWORD_FILE), 8 to 128 characters. Set only together
	// with AdminUsername. Empty while AdminUsername is set happens only with
	// the embedded Redis: the wiring then generates one and logs it once.
	// Default "".
	AdminPassword string
	// CORSOrigins are the origins allowed to call the API from a browser
	// (PRESENCE_CORS_ORIGINS, comma separated), each normalised to
	// scheme://host[:port] in lower case, or the single entry "*" for any
	// origin. Default nil: no cross-origin access.
	CORSOrigins []string
	// Shards is how many hash-tag shards the hot Redis indexes are spread
	// over, for Redis Cluster (PRESENCE_SHARDS), 1 to MaxShards. Default 1.
	Shards int
	// EventsMaxLen is the approximate cap of the transitions stream
	// (PRESENCE_EVENTS_MAXLEN), at least MinEventsMaxLen. Default 100000.
	EventsMaxLen int64
	// BcryptCost is the bcrypt cost of new password hashes
	// (PRESENCE_BCRYPT_COST), MinBcryptCost to MaxBcryptCost. Default 10.
	BcryptCost int
	// RequestTimeout bounds the Redis work of one HTTP request
	// (PRESENCE_REQUEST_TIMEOUT), positive. Default 5s.
	RequestTimeout time.Duration
	// ShutdownTimeout is how long shutdown waits for in-flight requests
	// (PRESENCE_SHUTDOWN_TIMEOUT), positive. Default 15s.
	ShutdownTimeout time.Duration
	// DrainDelay is how long, after SIGTERM and before the listener
	// closes, the instance keeps serving while /readyz answers 503 and
	// every response closes its connection (PRESENCE_DRAIN_DELAY, 0 or
	// more; 0 skips the phase). It ends early once no client connection is
	// open. Load balancers need it to stop routing here, and keep-alive
	// clients to move off their connections, before the listener closes:
	// closing an idle connection races a request already on its way over
	// it. Default 5s.
	DrainDelay time.Duration
	// LogLevel is the minimum level logged (LOG_LEVEL: debug, info, warn or
	// error, any case). Default slog.LevelInfo.
	LogLevel slog.Level
	// LogFormat is the log encoding (LOG_FORMAT: text or json). Default
	// LogText, for people reading a terminal; set json in production.
	LogFormat LogFormat
	// ServiceKeys are the credentials of trusted services that may call
	// heartbeat/batch/ (PRESENCE_SERVICE_KEYS: comma-separated
	// name:sha256hex, the SHA-256 of each service's API key; see
	// ServiceKey). Default nil: no service may.
	ServiceKeys []ServiceKey
	// SSEPingInterval is the interval of the event stream's comment
	// heartbeats, and of each stream's re-check of its session
	// (PRESENCE_SSE_PING_INTERVAL), at least MinSSEPingInterval. Default 15s.
	SSEPingInterval time.Duration
	// SSEMaxStreams caps the concurrent event streams of one instance
	// (PRESENCE_SSE_MAX_STREAMS), 1 to MaxSSEMaxStreams. Default 1000.
	SSEMaxStreams int
	// LoginLimitUser bounds failed logins per username, whoever tries
	// (PRESENCE_LOGIN_LIMIT_USER: "<attempts>/<window>", e.g. 10/15m, or
	// off). Default DefaultLoginLimitUser (10/15m).
	LoginLimitUser LoginLimit
	// LoginLimitIP bounds failed logins per client address, whatever the
	// username (PRESENCE_LOGIN_LIMIT_IP). Default DefaultLoginLimitIP
	// (100/15m).
	LoginLimitIP LoginLimit
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// address (PRESENCE_TRUSTED_PROXIES: comma-separated CIDR prefixes or
	// addresses). Default nil: the client is the TCP peer, and
	// X-Forwarded-For is ignored (anyone can write it).
	TrustedProxies []netip.Prefix
}

// Embedded reports whether presenced runs its own in-process Redis, which it
// does when REDIS_URL is unset.
func (c Config) Embedded() bool { return c.RedisURL == "" }

// RedisCluster reports whether RedisURL names a Redis Cluster; the wiring
// then builds a cluster client from ClusterOptions(RedisURL).
func (c Config) RedisCluster() bool { return IsClusterURL(c.RedisURL) }

// LogValue renders the configuration for a start-up log line without any
// secret: the JWT secret and admin password appear only as set or not, and a
// password inside REDIS_URL is masked.
func (c Config) LogValue() slog.Value {
	redis := "embedded at " + c.EmbeddedRedisAddr
	if !c.Embedded() {
		redis = redactURL(c.RedisURL)
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("redis", redis),
		slog.Bool("jwt_secret_set", len(c.JWTSecret) > 0),
		slog.Duration("ttl", c.TTL),
		slog.Duration("sweep_interval", c.SweepInterval),
		slog.Duration("away_after", c.AwayAfter),
		slog.Duration("access_token_ttl", c.AccessTokenTTL),
		slog.Duration("refresh_token_ttl", c.RefreshTokenTTL),
		slog.String("key_prefix", c.KeyPrefix),
		slog.String("registration", string(c.Registration)),
		slog.String("admin_username", c.AdminUsername),
		slog.Bool("admin_password_set", c.AdminPassword != ""),
		slog.Any("cors_origins", c.CORSOrigins),
		slog.Int("shards", c.Shards),
		slog.Int64("events_maxlen", c.EventsMaxLen),
		slog.Int("bcrypt_cost", c.BcryptCost),
		slog.Duration("request_timeout", c.RequestTimeout),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Duration("drain_delay", c.DrainDelay),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("log_format", string(c.LogFormat)),
		slog.Any("service_keys", serviceNames(c.ServiceKeys)),
		slog.Duration("sse_ping_interval", c.SSEPingInterval),
		slog.Int("sse_max_streams", c.SSEMaxStreams),
		slog.String("login_limit_user", c.LoginLimitUser.String()),
		slog.String("login_limit_ip", c.LoginLimitIP.String()),
		slog.Any("trusted_proxies", c.TrustedProxies),
	)
}

// redactURL masks the password of a URL; a URL that does not parse is
// replaced entirely, since we cannot tell where its password is.
func redactURL(raw string) string {
	if IsClusterURL(raw) {
		return redactClusterURL(raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Error is one invalid variable. Load joins every Error it finds with
// errors.Join; each reads "NAME: problem".
type Error struct {
	// Var is the environment variable at fault.
	Var string
	// Message says what is wrong and, where it helps, what would be right.
	// It never contains a secret value.
	Message string
}

func (e *Error) Error() string { return e.Var + ": " + e.Message }

// Errors returns the individual *Error values inside an error returned by
// Load, in the order Load found them; nil when err holds none.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if e, ok := err.(*Error); ok {
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		walk(errors.Unwrap(err))
	}
	walk(err)
	return out
}
