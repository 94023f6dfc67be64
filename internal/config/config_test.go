package config

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Secrets used by the tests; every error message is checked not to contain
// them.
const (
	testSecret   = "0123456789abcdef0123456789abcdef-jwt" // 36 bytes
	testPassword = "correct-horse-battery"
	testRedisPW  = "s3cr3t-redis-pw"
)

// envFunc turns a map into a getenv; "{dir}" in a value becomes dir.
func envFunc(m map[string]string, dir string) func(string) string {
	return func(name string) string {
		return strings.ReplaceAll(m[name], "{dir}", dir)
	}
}

// writeFiles creates files (name -> content) in a fresh temp dir.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func defaults() Config {
	return Config{
		Addr:              ":8080",
		EmbeddedRedisAddr: "127.0.0.1:6380",
		TTL:               120 * time.Second,
		SweepInterval:     time.Second,
		AwayAfter:         5 * time.Minute,
		AccessTokenTTL:    15 * time.Minute,
		RefreshTokenTTL:   168 * time.Hour,
		KeyPrefix:         "presence:",
		Registration:      RegistrationApproval,
		Shards:            1,
		EventsMaxLen:      100000,
		BcryptCost:        10,
		RequestTimeout:    5 * time.Second,
		ShutdownTimeout:   15 * time.Second,
		DrainDelay:        5 * time.Second,
		LogLevel:          slog.LevelInfo,
		LogFormat:         LogText,
		SSEPingInterval:   15 * time.Second,
		SSEMaxStreams:     1000,
		LoginLimitUser:    DefaultLoginLimitUser,
		LoginLimitIP:      DefaultLoginLimitIP,
	}
}

// with returns the defaults changed by f.
func with(f func(c *Config)) Config {
	c := defaults()
	f(&c)
	return c
}

func TestLoadValid(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		files map[string]string
		want  Config
	}{
		{name: "defaults", env: nil, want: defaults()},
		{
			name: "everything set",
			env: map[string]string{
				EnvAddr:              "127.0.0.1:9000",
				EnvRedisURL:          "redis://:" + testRedisPW + "@redis.internal:6379/2",
				EnvEmbeddedRedisAddr: "127.0.0.1:0",
				EnvJWTSecret:         testSecret,
				EnvTTL:               "90s",
				EnvSweepInterval:     "250ms",
				EnvAwayAfter:         "0",
				EnvAccessTokenTTL:    "5m",
				EnvRefreshTokenTTL:   "24h",
				EnvKeyPrefix:         "chat:presence:",
				EnvRegistration:      "open",
				EnvAdminUsername:     "root@example.com",
				EnvAdminPassword:     testPassword,
				EnvCORSOrigins:       "https://app.example.com, http://localhost:3000",
				EnvShards:            "16",
				EnvEventsMaxLen:      "5000",
				EnvBcryptCost:        "12",
				EnvRequestTimeout:    "2s",
				EnvShutdownTimeout:   "30s",
				EnvDrainDelay:        "0",
				EnvLogLevel:          "debug",
				EnvLogFormat:         "json",
				EnvSSEPingInterval:   "5s",
				EnvSSEMaxStreams:     "250",
				EnvLoginLimitUser:    "5/1m",
				EnvLoginLimitIP:      "off",
				EnvTrustedProxies:    "10.0.0.0/8, 192.168.1.7",
			},
			want: Config{
				Addr:              "127.0.0.1:9000",
				RedisURL:          "redis://:" + testRedisPW + "@redis.internal:6379/2",
				EmbeddedRedisAddr: "127.0.0.1:0",
				JWTSecret:         []byte(testSecret),
				TTL:               90 * time.Second,
				SweepInterval:     250 * time.Millisecond,
				AccessTokenTTL:    5 * time.Minute,
				RefreshTokenTTL:   24 * time.Hour,
				KeyPrefix:         "chat:presence:",
				Registration:      RegistrationOpen,
				AdminUsername:     "root@example.com",
				AdminPassword:     testPassword,
				CORSOrigins:       []string{"https://app.example.com", "http://localhost:3000"},
				Shards:            16,
				EventsMaxLen:      5000,
				BcryptCost:        12,
				RequestTimeout:    2 * time.Second,
				ShutdownTimeout:   30 * time.Second,
				DrainDelay:        0,
				LogLevel:          slog.LevelDebug,
				LogFormat:         LogJSON,
				SSEPingInterval:   5 * time.Second,
				SSEMaxStreams:     250,
				LoginLimitUser:    LoginLimit{Max: 5, Window: time.Minute},
				TrustedProxies:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")},
			},
		},
		{
			name: "white space around values is ignored",
			env:  map[string]string{EnvTTL: " 30s ", EnvKeyPrefix: "\tapp:\n", EnvRegistration: " closed", EnvLogLevel: "WARN ", EnvLogFormat: "Text"},
			want: with(func(c *Config) {
				c.TTL = 30 * time.Second
				c.KeyPrefix = "app:"
				c.Registration = RegistrationClosed
				c.LogLevel = slog.LevelWarn
			}),
		},
		{name: "log level error", env: map[string]string{EnvLogLevel: "error"}, want: with(func(c *Config) { c.LogLevel = slog.LevelError })},
		{name: "registration upper case", env: map[string]string{EnvRegistration: "OPEN"}, want: with(func(c *Config) { c.Registration = RegistrationOpen })},
		{name: "sweep interval equal to TTL", env: map[string]string{EnvTTL: "1s", EnvSweepInterval: "1s"}, want: with(func(c *Config) { c.TTL = time.Second })},
		{name: "sse settings at their limits", env: map[string]string{EnvSSEPingInterval: "1s", EnvSSEMaxStreams: "1000000"}, want: with(func(c *Config) { c.SSEPingInterval = time.Second; c.SSEMaxStreams = 1000000 })},
		{name: "away after set", env: map[string]string{EnvAwayAfter: "90s"}, want: with(func(c *Config) { c.AwayAfter = 90 * time.Second })},
		{name: "sweep interval at its minimum", env: map[string]string{EnvSweepInterval: "10ms"}, want: with(func(c *Config) { c.SweepInterval = 10 * time.Millisecond })},
		{name: "token TTLs at their minimum", env: map[string]string{EnvAccessTokenTTL: "1s", EnvRefreshTokenTTL: "2s"}, want: with(func(c *Config) { c.AccessTokenTTL = time.Second; c.RefreshTokenTTL = 2 * time.Second })},
		{name: "shards bounds low", env: map[string]string{EnvShards: "1"}, want: defaults()},
		{name: "shards bounds high", env: map[string]string{EnvShards: "16384"}, want: with(func(c *Config) { c.Shards = 16384 })},
		{name: "events maxlen minimum", env: map[string]string{EnvEventsMaxLen: "1000"}, want: with(func(c *Config) { c.EventsMaxLen = 1000 })},
		{name: "bcrypt cost minimum", env: map[string]string{EnvBcryptCost: "4"}, want: with(func(c *Config) { c.BcryptCost = 4 })},
		{name: "bcrypt cost maximum", env: map[string]string{EnvBcryptCost: "31"}, want: with(func(c *Config) { c.BcryptCost = 31 })},
		{name: "ipv6 listen address", env: map[string]string{EnvAddr: "[::1]:8080"}, want: with(func(c *Config) { c.Addr = "[::1]:8080" })},
		{name: "port zero", env: map[string]string{EnvAddr: "127.0.0.1:0"}, want: with(func(c *Config) { c.Addr = "127.0.0.1:0" })},
		{name: "cors wildcard", env: map[string]string{EnvCORSOrigins: "*"}, want: with(func(c *Config) { c.CORSOrigins = []string{"*"} })},
		{
			name: "cors origins normalised and deduplicated",
			env:  map[string]string{EnvCORSOrigins: "HTTPS://App.Example.com/,https://app.example.com,, http://[::1]:3000 ,"},
			want: with(func(c *Config) { c.CORSOrigins = []string{"https://app.example.com", "http://[::1]:3000"} }),
		},
		{name: "cors only commas", env: map[string]string{EnvCORSOrigins: " , ,"}, want: defaults()},
		{name: "unix socket redis", env: map[string]string{EnvRedisURL: "unix:///run/redis.sock", EnvJWTSecret: testSecret}, want: with(func(c *Config) { c.RedisURL = "unix:///run/redis.sock"; c.JWTSecret = []byte(testSecret) })},
		{name: "tls redis", env: map[string]string{EnvRedisURL: "rediss://redis:6380/0", EnvJWTSecret: testSecret}, want: with(func(c *Config) { c.RedisURL = "rediss://redis:6380/0"; c.JWTSecret = []byte(testSecret) })},
		{name: "embedded redis without secret", env: map[string]string{}, want: defaults()},
		{name: "embedded redis with secret", env: map[string]string{EnvJWTSecret: testSecret}, want: with(func(c *Config) { c.JWTSecret = []byte(testSecret) })},
		{name: "secret exactly 32 bytes", env: map[string]string{EnvJWTSecret: strings.Repeat("k", 32)}, want: with(func(c *Config) { c.JWTSecret = []byte(strings.Repeat("k", 32)) })},
		{name: "secret keeps surrounding white space", env: map[string]string{EnvJWTSecret: " " + testSecret + " "}, want: with(func(c *Config) { c.JWTSecret = []byte(" " + testSecret + " ") })},
		{
			name:  "secret file with trailing newline",
			env:   map[string]string{EnvJWTSecretFile: "{dir}/jwt", EnvRedisURL: "redis://localhost:6379/0"},
			files: map[string]string{"jwt": testSecret + "\n"},
			want:  with(func(c *Config) { c.JWTSecret = []byte(testSecret); c.RedisURL = "redis://localhost:6379/0" }),
		},
		{
			name:  "secret file with CRLF and several newlines",
			env:   map[string]string{EnvJWTSecretFile: "{dir}/jwt"},
			files: map[string]string{"jwt": testSecret + "\r\n\n"},
			want:  with(func(c *Config) { c.JWTSecret = []byte(testSecret) }),
		},
		{
			name:  "secret file keeps inner and leading bytes",
			env:   map[string]string{EnvJWTSecretFile: "{dir}/jwt"},
			files: map[string]string{"jwt": "  " + testSecret + "\nmore"},
			want:  with(func(c *Config) { c.JWTSecret = []byte("  " + testSecret + "\nmore") }),
		},
		{
			name: "admin with password",
			env:  map[string]string{EnvAdminUsername: "admin", EnvAdminPassword: testPassword},
			want: with(func(c *Config) { c.AdminUsername = "admin"; c.AdminPassword = testPassword }),
		},
		{
			name:  "admin password file",
			env:   map[string]string{EnvAdminUsername: "admin", EnvAdminPasswordFile: "{dir}/pw", EnvRedisURL: "redis://r:6379", EnvJWTSecret: testSecret},
			files: map[string]string{"pw": testPassword + "\n"},
			want: with(func(c *Config) {
				c.AdminUsername = "admin"
				c.AdminPassword = testPassword
				c.RedisURL = "redis://r:6379"
				c.JWTSecret = []byte(testSecret)
			}),
		},
		{
			name: "admin username without password in embedded mode",
			env:  map[string]string{EnvAdminUsername: "admin"},
			want: with(func(c *Config) { c.AdminUsername = "admin" }),
		},
		{
			name: "admin password of 8 and 128 characters",
			env:  map[string]string{EnvAdminUsername: "admin", EnvAdminPassword: strings.Repeat("é", 128)},
			want: with(func(c *Config) { c.AdminUsername = "admin"; c.AdminPassword = strings.Repeat("é", 128) }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			got, err := Load(envFunc(tt.env, dir))
			if err != nil {
				t.Fatalf("Load: got error %v, want none", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Load:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLoadInvalid(t *testing.T) {
	realRedis := func(m map[string]string) map[string]string {
		m[EnvRedisURL] = "redis://localhost:6379/0"
		if _, ok := m[EnvJWTSecret]; !ok {
			if _, ok := m[EnvJWTSecretFile]; !ok {
				m[EnvJWTSecret] = testSecret
			}
		}
		return m
	}
	type invalidCase struct {
		name  string
		env   map[string]string
		files map[string]string
		// want maps each variable that must be reported to a substring
		// of its message; no other variable may be reported.
		want map[string]string
	}
	tests := []invalidCase{
		{name: "ttl not a duration", env: map[string]string{EnvTTL: "abc"},
			want: map[string]string{EnvTTL: `"abc" is not a duration (use Go syntax like 90s or 2m)`}},
		{name: "ttl without unit", env: map[string]string{EnvTTL: "120"},
			want: map[string]string{EnvTTL: `"120" is not a duration`}},
		{name: "ttl too short", env: map[string]string{EnvTTL: "500ms"},
			want: map[string]string{EnvTTL: "must be at least 1s, got 500ms"}},
		{name: "ttl negative", env: map[string]string{EnvTTL: "-5s"},
			want: map[string]string{EnvTTL: "must be at least 1s, got -5s"}},
		{name: "away after too short", env: map[string]string{EnvAwayAfter: "10ms"},
			want: map[string]string{EnvAwayAfter: "must be at least 1s, got 10ms"}},
		{name: "sweep too short", env: map[string]string{EnvSweepInterval: "5ms"},
			want: map[string]string{EnvSweepInterval: "must be at least 10ms, got 5ms"}},
		{name: "sweep longer than ttl", env: map[string]string{EnvSweepInterval: "3m"},
			want: map[string]string{EnvSweepInterval: "must not be longer than PRESENCE_TTL (2m0s), got 3m0s"}},
		{name: "sweep longer than a custom ttl", env: map[string]string{EnvTTL: "1s", EnvSweepInterval: "2s"},
			want: map[string]string{EnvSweepInterval: "must not be longer than PRESENCE_TTL (1s)"}},
		{name: "invalid ttl skips the sweep cross check", env: map[string]string{EnvTTL: "x", EnvSweepInterval: "3m"},
			want: map[string]string{EnvTTL: "not a duration"}},
		{name: "sweep not a duration", env: map[string]string{EnvSweepInterval: "often"},
			want: map[string]string{EnvSweepInterval: `"often" is not a duration`}},
		{name: "access ttl zero", env: map[string]string{EnvAccessTokenTTL: "0"},
			want: map[string]string{EnvAccessTokenTTL: "must be at least 1s, got 0s"}},
		{name: "access ttl sub-second", env: map[string]string{EnvAccessTokenTTL: "500ms"},
			want: map[string]string{EnvAccessTokenTTL: "must be at least 1s"}},
		{name: "refresh shorter than access", env: map[string]string{EnvRefreshTokenTTL: "10m"},
			want: map[string]string{EnvRefreshTokenTTL: "must be longer than PRESENCE_ACCESS_TOKEN_TTL (15m0s), got 10m0s"}},
		{name: "refresh equal to access", env: map[string]string{EnvAccessTokenTTL: "1h", EnvRefreshTokenTTL: "60m"},
			want: map[string]string{EnvRefreshTokenTTL: "must be longer than PRESENCE_ACCESS_TOKEN_TTL"}},
		{name: "refresh not a duration", env: map[string]string{EnvRefreshTokenTTL: "7d"},
			want: map[string]string{EnvRefreshTokenTTL: `"7d" is not a duration`}},
		{name: "request timeout zero", env: map[string]string{EnvRequestTimeout: "0s"},
			want: map[string]string{EnvRequestTimeout: "must be positive, got 0s"}},
		{name: "shutdown timeout negative", env: map[string]string{EnvShutdownTimeout: "-1s"},
			want: map[string]string{EnvShutdownTimeout: "must be positive, got -1s"}},
		{name: "drain delay negative", env: map[string]string{EnvDrainDelay: "-1s"},
			want: map[string]string{EnvDrainDelay: "must not be negative, got -1s"}},
		{name: "shards zero", env: map[string]string{EnvShards: "0"},
			want: map[string]string{EnvShards: "must be between 1 and 16384, got 0"}},
		{name: "shards too many", env: map[string]string{EnvShards: "16385"},
			want: map[string]string{EnvShards: "must be between 1 and 16384, got 16385"}},
		{name: "shards not a number", env: map[string]string{EnvShards: "1.5"},
			want: map[string]string{EnvShards: `"1.5" is not a whole number`}},
		{name: "sse ping too short", env: map[string]string{EnvSSEPingInterval: "100ms"},
			want: map[string]string{EnvSSEPingInterval: "must be at least 1s, got 100ms"}},
		{name: "sse max streams zero", env: map[string]string{EnvSSEMaxStreams: "0"},
			want: map[string]string{EnvSSEMaxStreams: "must be between 1 and 1000000, got 0"}},
		{name: "sse max streams not a number", env: map[string]string{EnvSSEMaxStreams: "many"},
			want: map[string]string{EnvSSEMaxStreams: "is not a whole number"}},
		{name: "events maxlen too small", env: map[string]string{EnvEventsMaxLen: "999"},
			want: map[string]string{EnvEventsMaxLen: "must be at least 1000, got 999"}},
		{name: "events maxlen zero", env: map[string]string{EnvEventsMaxLen: "0"},
			want: map[string]string{EnvEventsMaxLen: "must be at least 1000, got 0"}},
		{name: "events maxlen overflow", env: map[string]string{EnvEventsMaxLen: "99999999999999999999"},
			want: map[string]string{EnvEventsMaxLen: "is not a whole number"}},
		{name: "bcrypt cost too low", env: map[string]string{EnvBcryptCost: "3"},
			want: map[string]string{EnvBcryptCost: "must be between 4 and 31, got 3"}},
		{name: "bcrypt cost too high", env: map[string]string{EnvBcryptCost: "32"},
			want: map[string]string{EnvBcryptCost: "must be between 4 and 31, got 32"}},
		{name: "key prefix with space", env: map[string]string{EnvKeyPrefix: "my app:"},
			want: map[string]string{EnvKeyPrefix: `"my app:" must not contain white space`}},
		{name: "key prefix with hash tag", env: map[string]string{EnvKeyPrefix: "{app}:"},
			want: map[string]string{EnvKeyPrefix: "must not contain { or }: the store adds the hash tags itself"}},
		{name: "key prefix with closing brace", env: map[string]string{EnvKeyPrefix: "app}"},
			want: map[string]string{EnvKeyPrefix: "must not contain { or }"}},
		{name: "key prefix with control character", env: map[string]string{EnvKeyPrefix: "app\x00:"},
			want: map[string]string{EnvKeyPrefix: "control characters"}},
		{name: "key prefix not utf-8", env: map[string]string{EnvKeyPrefix: "app\xff:"},
			want: map[string]string{EnvKeyPrefix: "is not valid UTF-8"}},
		{name: "addr without port", env: map[string]string{EnvAddr: "8080"},
			want: map[string]string{EnvAddr: `"8080" is not host:port (e.g. :8080 or 127.0.0.1:8080)`}},
		{name: "addr with named port", env: map[string]string{EnvAddr: ":http"},
			want: map[string]string{EnvAddr: "the port must be a number from 0 to 65535"}},
		{name: "addr port out of range", env: map[string]string{EnvAddr: ":70000"},
			want: map[string]string{EnvAddr: "the port must be a number from 0 to 65535"}},
		{name: "addr empty port", env: map[string]string{EnvAddr: "localhost:"},
			want: map[string]string{EnvAddr: "the port must be a number"}},
		{name: "embedded redis addr", env: map[string]string{EnvEmbeddedRedisAddr: "localhost"},
			want: map[string]string{EnvEmbeddedRedisAddr: "is not host:port"}},
		{name: "registration unknown", env: map[string]string{EnvRegistration: "invite"},
			want: map[string]string{EnvRegistration: `"invite" is not one of approval, open, closed`}},
		{name: "log level unknown", env: map[string]string{EnvLogLevel: "verbose"},
			want: map[string]string{EnvLogLevel: `"verbose" is not one of debug, info, warn, error`}},
		{name: "log level warning is not warn", env: map[string]string{EnvLogLevel: "warning"},
			want: map[string]string{EnvLogLevel: "is not one of"}},
		{name: "log format unknown", env: map[string]string{EnvLogFormat: "xml"},
			want: map[string]string{EnvLogFormat: `"xml" is not one of text, json`}},
		{name: "cors other scheme", env: map[string]string{EnvCORSOrigins: "ftp://files.example.com"},
			want: map[string]string{EnvCORSOrigins: `"ftp://files.example.com" is not an origin (want scheme://host[:port], e.g. https://app.example.com)`}},
		{name: "cors with path", env: map[string]string{EnvCORSOrigins: "https://a.example.com/app"},
			want: map[string]string{EnvCORSOrigins: `"https://a.example.com/app" is not an origin`}},
		{name: "cors bare host", env: map[string]string{EnvCORSOrigins: "app.example.com"},
			want: map[string]string{EnvCORSOrigins: `"app.example.com" is not an origin`}},
		{name: "cors wildcard subdomain", env: map[string]string{EnvCORSOrigins: "https://*.example.com"},
			want: map[string]string{EnvCORSOrigins: "is not an origin"}},
		{name: "cors with query", env: map[string]string{EnvCORSOrigins: "https://a.example.com?x=1"},
			want: map[string]string{EnvCORSOrigins: "is not an origin"}},
		{name: "cors with user", env: map[string]string{EnvCORSOrigins: "https://me@a.example.com"},
			want: map[string]string{EnvCORSOrigins: "is not an origin"}},
		{name: "cors empty port", env: map[string]string{EnvCORSOrigins: "https://a.example.com:"},
			want: map[string]string{EnvCORSOrigins: "is not an origin"}},
		{name: "cors wildcard mixed", env: map[string]string{EnvCORSOrigins: "*, https://a.example.com"},
			want: map[string]string{EnvCORSOrigins: "* allows every origin; use it alone"}},
		{name: "jwt secret required with real redis", env: map[string]string{EnvRedisURL: "redis://localhost:6379/0"},
			want: map[string]string{EnvJWTSecret: "required when REDIS_URL is set (or set PRESENCE_JWT_SECRET_FILE)"}},
		{name: "jwt secret too short", env: map[string]string{EnvJWTSecret: strings.Repeat("k", 31)},
			want: map[string]string{EnvJWTSecret: "the secret must be at least 32 bytes"}},
		{name: "jwt secret and file", env: map[string]string{EnvJWTSecret: testSecret, EnvJWTSecretFile: "{dir}/jwt"},
			files: map[string]string{"jwt": testSecret},
			want:  map[string]string{EnvJWTSecret: "set either PRESENCE_JWT_SECRET or PRESENCE_JWT_SECRET_FILE, not both"}},
		{name: "jwt secret file missing", env: realRedis(map[string]string{EnvJWTSecretFile: "{dir}/nope"}),
			want: map[string]string{EnvJWTSecretFile: "/nope\": no such file or directory"}},
		{name: "jwt secret file empty", env: map[string]string{EnvJWTSecretFile: "{dir}/jwt"},
			files: map[string]string{"jwt": "\n"},
			want:  map[string]string{EnvJWTSecretFile: "is empty"}},
		{name: "jwt secret file is a directory", env: map[string]string{EnvJWTSecretFile: "{dir}/d"},
			files: map[string]string{"d/": ""},
			want:  map[string]string{EnvJWTSecretFile: "is a directory"}},
		{name: "jwt secret file too large", env: map[string]string{EnvJWTSecretFile: "{dir}/big"},
			files: map[string]string{"big": strings.Repeat("x", 70<<10)},
			want:  map[string]string{EnvJWTSecretFile: "larger than 64 KiB"}},
		{name: "jwt secret file too short", env: map[string]string{EnvJWTSecretFile: "{dir}/jwt"},
			files: map[string]string{"jwt": strings.Repeat("k", 31) + "\n"},
			want:  map[string]string{EnvJWTSecretFile: "the secret must be at least 32 bytes"}},
		{name: "admin username invalid", env: map[string]string{EnvAdminUsername: "bad name", EnvAdminPassword: testPassword},
			want: map[string]string{EnvAdminUsername: `"bad name" may contain only letters, digits and @.+-_`}},
		{name: "admin username too short", env: map[string]string{EnvAdminUsername: "ab", EnvAdminPassword: testPassword},
			want: map[string]string{EnvAdminUsername: `"ab" must be 3 to 150 characters`}},
		{name: "admin password too short", env: map[string]string{EnvAdminUsername: "admin", EnvAdminPassword: "short77"},
			want: map[string]string{EnvAdminPassword: "the password must be 8 to 128 characters"}},
		{name: "admin password too long", env: map[string]string{EnvAdminUsername: "admin", EnvAdminPassword: strings.Repeat("p", 129)},
			want: map[string]string{EnvAdminPassword: "the password must be 8 to 128 characters"}},
		{name: "admin password without username", env: map[string]string{EnvAdminPassword: testPassword},
			want: map[string]string{EnvAdminUsername: "required when PRESENCE_ADMIN_PASSWORD is set"}},
		{name: "admin password file without username", env: map[string]string{EnvAdminPasswordFile: "{dir}/pw"},
			files: map[string]string{"pw": testPassword},
			want:  map[string]string{EnvAdminUsername: "required when PRESENCE_ADMIN_PASSWORD_FILE is set"}},
		{name: "admin username without password with real redis", env: realRedis(map[string]string{EnvAdminUsername: "admin"}),
			want: map[string]string{EnvAdminPassword: "required when PRESENCE_ADMIN_USERNAME and REDIS_URL are set (or set PRESENCE_ADMIN_PASSWORD_FILE)"}},
		{name: "admin password and file", env: map[string]string{EnvAdminUsername: "admin", EnvAdminPassword: testPassword, EnvAdminPasswordFile: "{dir}/pw"},
			files: map[string]string{"pw": testPassword},
			want:  map[string]string{EnvAdminPassword: "not both"}},
		{name: "admin password file unreadable", env: realRedis(map[string]string{EnvAdminUsername: "admin", EnvAdminPasswordFile: "{dir}/missing"}),
			want: map[string]string{EnvAdminPasswordFile: "no such file or directory"}},
		{name: "admin password file too short", env: map[string]string{EnvAdminUsername: "admin", EnvAdminPasswordFile: "{dir}/pw"},
			files: map[string]string{"pw": "short\n"},
			want:  map[string]string{EnvAdminPasswordFile: "the password must be 8 to 128 characters"}},
		{
			name: "every problem is reported at once",
			env: map[string]string{
				EnvTTL: "abc", EnvShards: "0", EnvLogLevel: "loud", EnvRedisURL: "redis://localhost:6379",
				EnvAdminUsername: "admin", EnvCORSOrigins: "nope",
			},
			want: map[string]string{
				EnvTTL: "not a duration", EnvShards: "between 1 and 16384", EnvLogLevel: "not one of",
				EnvJWTSecret: "required", EnvAdminPassword: "required", EnvCORSOrigins: "not an origin",
			},
		},
	}
	// REDIS_URL cases, which all need a secret so that REDIS_URL is the
	// only complaint.
	redisCases := []struct{ name, url, want string }{
		{"redis url without scheme", "localhost:6379", "not a valid Redis URL (invalid URL scheme: localhost); want redis://"},
		{"redis url http scheme", "http://localhost:6379", "invalid URL scheme: http"},
		{"redis url bad database", "redis://user:" + testRedisPW + "@localhost:6379/notanumber", `invalid database number: "notanumber"`},
		{"redis url bad port", "redis://user:" + testRedisPW + "@localhost:badport/0", `invalid port ":badport" after host`},
		{"redis url bad option", "redis://localhost:6379/0?colour=blue", "unexpected option: colour"},
		{"redis url control characters", "redis://localhost:6379/0?a%0Ab=1", "unexpected option: a?b"},
		{"redis url empty unix path", "unix://", "empty unix socket path"},
	}
	for _, rc := range redisCases {
		tests = append(tests, invalidCase{name: rc.name, env: map[string]string{EnvRedisURL: rc.url, EnvJWTSecret: testSecret}, want: map[string]string{EnvRedisURL: rc.want}})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			got, err := Load(envFunc(tt.env, dir))
			if err == nil {
				t.Fatalf("Load: got no error, want problems with %v", keys(tt.want))
			}
			if !reflect.DeepEqual(got, Config{}) {
				t.Errorf("Load: got %+v with an error, want the zero Config", got)
			}
			errs := Errors(err)
			reported := map[string]bool{}
			for _, e := range errs {
				reported[e.Var] = true
				want, ok := tt.want[e.Var]
				if !ok {
					t.Errorf("unexpected problem %q", e)
					continue
				}
				if !strings.Contains(e.Message, want) {
					t.Errorf("problem with %s: got %q, want it to contain %q", e.Var, e.Message, want)
				}
			}
			for name := range tt.want {
				if !reported[name] {
					t.Errorf("no problem reported for %s; got %v", name, err)
				}
			}
			if lines := strings.Count(err.Error(), "\n") + 1; lines != len(errs) {
				t.Errorf("error text has %d lines, want one per problem (%d):\n%v", lines, len(errs), err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "PRESENCE_") && !strings.HasPrefix(line, "REDIS_URL: ") && !strings.HasPrefix(line, "LOG_") {
					t.Errorf("error line %q does not start with a variable name", line)
				}
			}
			for _, secret := range []string{testSecret, testPassword, testRedisPW, strings.Repeat("k", 31), "short77"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains a secret value", err)
				}
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestErrorsOrder(t *testing.T) {
	_, err := Load(envFunc(map[string]string{EnvAddr: "x", EnvTTL: "x", EnvLogFormat: "x"}, ""))
	var got []string
	for _, e := range Errors(err) {
		got = append(got, e.Var)
	}
	want := []string{EnvAddr, EnvTTL, EnvLogFormat}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Errors: got %v, want %v", got, want)
	}
	if got := Errors(nil); got != nil {
		t.Errorf("Errors(nil): got %v, want nil", got)
	}
}

func TestEmbedded(t *testing.T) {
	tests := []struct {
		url  string
		want bool
	}{
		{"", true},
		{"redis://localhost:6379/0", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			if got := (Config{RedisURL: tt.url}).Embedded(); got != tt.want {
				t.Errorf("Embedded(): got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	c, err := Load(envFunc(map[string]string{
		EnvRedisURL:      "redis://user:" + testRedisPW + "@redis:6379/0",
		EnvJWTSecret:     testSecret,
		EnvAdminUsername: "admin",
		EnvAdminPassword: testPassword,
		EnvCORSOrigins:   "https://app.example.com",
	}, ""))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	out := buf.String()
	for _, secret := range []string{testSecret, testPassword, testRedisPW} {
		if strings.Contains(out, secret) {
			t.Errorf("log line %s contains a secret", out)
		}
	}
	var line struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line %q: %v", out, err)
	}
	want := map[string]any{
		"redis":              "redis://user:xxxxx@redis:6379/0",
		"jwt_secret_set":     true,
		"admin_username":     "admin",
		"admin_password_set": true,
		"ttl":                float64(120 * time.Second),
		"log_level":          "INFO",
		"key_prefix":         "presence:",
	}
	for k, v := range want {
		if got := line.Config[k]; !reflect.DeepEqual(got, v) {
			t.Errorf("config.%s: got %v, want %v", k, got, v)
		}
	}

	embedded := defaults()
	buf.Reset()
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", embedded)
	if !strings.Contains(buf.String(), `"redis":"embedded at 127.0.0.1:6380"`) {
		t.Errorf("embedded log line: got %s, want redis to read embedded at 127.0.0.1:6380", buf.String())
	}
}
