package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

// knownVars are the variables Load may name in a problem.
var knownVars = map[string]bool{
	EnvAddr: true, EnvRedisURL: true, EnvEmbeddedRedisAddr: true, EnvJWTSecret: true,
	EnvJWTSecretFile: true, EnvTTL: true, EnvSweepInterval: true, EnvAccessTokenTTL: true,
	EnvRefreshTokenTTL: true, EnvKeyPrefix: true, EnvRegistration: true, EnvAdminUsername: true,
	EnvAdminPassword: true, EnvAdminPasswordFile: true, EnvCORSOrigins: true, EnvShards: true,
	EnvEventsMaxLen: true, EnvBcryptCost: true, EnvRequestTimeout: true, EnvShutdownTimeout: true, EnvDrainDelay: true,
	EnvLogLevel: true, EnvLogFormat: true, EnvSSEPingInterval: true, EnvSSEMaxStreams: true,
	EnvLoginLimitUser: true, EnvLoginLimitIP: true, EnvTrustedProxies: true,
	EnvAwayAfter: true, EnvServiceKeys: true,
}

// FuzzLoad feeds Load arbitrary environments. The input is NAME=VALUE
// lines; the value of a *_FILE variable is written to a file whose path is
// passed instead, so the fuzzer explores file contents without reading
// arbitrary paths. Load must never panic, must name a known variable in
// every problem, one problem per line, and a Config it accepts must satisfy
// every documented rule.
func FuzzLoad(f *testing.F) {
	f.Add("PRESENCE_TTL=90s\nPRESENCE_SWEEP_INTERVAL=100ms")
	f.Fuzz(func(t *testing.T, input string) {
		env := map[string]string{}
		for _, line := range strings.Split(input, "\n") {
			name, value, _ := strings.Cut(line, "=")
			env[name] = value
		}
		var dir string
		for name, value := range env {
			if !strings.HasSuffix(name, "_FILE") || !knownVars[name] {
				continue
			}
			if dir == "" {
				dir = t.TempDir()
			}
			p := filepath.Join(dir, strings.ToLower(name))
			if err := os.WriteFile(p, []byte(value), 0o600); err != nil {
				t.Fatal(err)
			}
			env[name] = p
		}
		getenv := func(name string) string { return env[name] }

		c, err := Load(getenv)
		again, err2 := Load(getenv)
		if !reflect.DeepEqual(c, again) || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("Load is not deterministic: %+v, %v then %+v, %v", c, err, again, err2)
		}
		if err != nil {
			checkProblems(t, err)
			return
		}
		checkValid(t, c)
	})
}

func checkProblems(t *testing.T, err error) {
	t.Helper()
	errs := Errors(err)
	if len(errs) == 0 {
		t.Fatalf("error %q holds no *Error", err)
	}
	if lines := strings.Count(err.Error(), "\n") + 1; lines != len(errs) {
		t.Fatalf("error text has %d lines for %d problems: %q", lines, len(errs), err)
	}
	for _, e := range errs {
		if !knownVars[e.Var] {
			t.Errorf("problem names unknown variable %q: %q", e.Var, e)
		}
		if strings.IndexFunc(e.Message, func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }) >= 0 {
			t.Errorf("problem %q contains a control character", e)
		}
	}
}

func checkValid(t *testing.T, c Config) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("accepted config breaks a rule: "+format+"\n%+v", append(args, c)...)
	}
	if c.TTL < MinTTL {
		fail("TTL %s < %s", c.TTL, MinTTL)
	}
	if c.SweepInterval < MinSweepInterval || c.SweepInterval > c.TTL {
		fail("SweepInterval %s outside [%s, TTL %s]", c.SweepInterval, MinSweepInterval, c.TTL)
	}
	if c.AccessTokenTTL < MinTokenTTL || c.RefreshTokenTTL <= c.AccessTokenTTL {
		fail("token TTLs access %s refresh %s", c.AccessTokenTTL, c.RefreshTokenTTL)
	}
	if c.DrainDelay < 0 {
		fail("negative drain delay %s", c.DrainDelay)
	}
	if c.RequestTimeout <= 0 || c.ShutdownTimeout <= 0 {
		fail("timeouts request %s shutdown %s", c.RequestTimeout, c.ShutdownTimeout)
	}
	if c.Shards < 1 || c.Shards > MaxShards {
		fail("Shards %d", c.Shards)
	}
	if c.EventsMaxLen < MinEventsMaxLen {
		fail("EventsMaxLen %d", c.EventsMaxLen)
	}
	if c.BcryptCost < MinBcryptCost || c.BcryptCost > MaxBcryptCost {
		fail("BcryptCost %d", c.BcryptCost)
	}
	if c.SSEPingInterval < MinSSEPingInterval || c.SSEMaxStreams < 1 || c.SSEMaxStreams > MaxSSEMaxStreams {
		fail("SSE ping %s max streams %d", c.SSEPingInterval, c.SSEMaxStreams)
	}
	if c.KeyPrefix == "" || strings.ContainsAny(c.KeyPrefix, "{} \t\r\n") {
		fail("KeyPrefix %q", c.KeyPrefix)
	}
	switch c.Registration {
	case RegistrationApproval, RegistrationOpen, RegistrationClosed:
	default:
		fail("Registration %q", c.Registration)
	}
	if c.LogFormat != LogText && c.LogFormat != LogJSON {
		fail("LogFormat %q", c.LogFormat)
	}
	if c.JWTSecret != nil && len(c.JWTSecret) < MinSecretLen {
		fail("JWTSecret of %d bytes", len(c.JWTSecret))
	}
	if !c.Embedded() && len(c.JWTSecret) == 0 {
		fail("real Redis without a JWT secret")
	}
	if c.AdminPassword != "" && c.AdminUsername == "" {
		fail("admin password without username")
	}
	if c.AdminUsername != "" && c.AdminPassword == "" && !c.Embedded() {
		fail("admin username without password on a real Redis")
	}
	for _, o := range c.CORSOrigins {
		if o == "*" {
			if len(c.CORSOrigins) != 1 {
				fail("* among other origins")
			}
			continue
		}
		if n, ok := normalizeOrigin(o); !ok || n != o {
			fail("CORS origin %q is not normalised (%q, %v)", o, n, ok)
		}
	}
	for _, l := range []LoginLimit{c.LoginLimitUser, c.LoginLimitIP} {
		if !l.Off() && (l.Max < 1 || l.Max > MaxLoginMax || l.Window < MinLoginWindow || l.Window > MaxLoginWindow) {
			fail("login limit %+v", l)
		}
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			fail("trusted proxy %v", p)
		}
	}
}
