package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoginLimits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		env        map[string]string
		user, ip   LoginLimit
		proxies    []netip.Prefix
		wantString [2]string
	}{
		{
			name: "defaults", env: nil,
			user: LoginLimit{Max: 10, Window: 15 * time.Minute}, ip: LoginLimit{Max: 100, Window: 15 * time.Minute},
			wantString: [2]string{"10/15m0s", "100/15m0s"},
		},
		{
			name: "set", env: map[string]string{EnvLoginLimitUser: " 3/30s ", EnvLoginLimitIP: "1000000/24h"},
			user: LoginLimit{Max: 3, Window: 30 * time.Second}, ip: LoginLimit{Max: 1000000, Window: 24 * time.Hour},
			wantString: [2]string{"3/30s", "1000000/24h0m0s"},
		},
		{
			name: "off", env: map[string]string{EnvLoginLimitUser: "OFF", EnvLoginLimitIP: "0"},
			wantString: [2]string{"off", "off"},
		},
		{
			name: "proxies: prefixes and single addresses, masked, IPv4-mapped unmapped",
			env:  map[string]string{EnvTrustedProxies: "10.1.2.3/8, 192.168.1.7 ,,fd00::1/8, ::ffff:172.16.0.0/108, 2001:db8::1"},
			user: DefaultLoginLimitUser, ip: DefaultLoginLimitIP,
			proxies: []netip.Prefix{
				netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("fd00::/8"),
				netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("2001:db8::1/128"),
			},
			wantString: [2]string{"10/15m0s", "100/15m0s"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(envFunc(tc.env, ""))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.LoginLimitUser != tc.user || c.LoginLimitIP != tc.ip {
				t.Errorf("limits: got %+v and %+v, want %+v and %+v", c.LoginLimitUser, c.LoginLimitIP, tc.user, tc.ip)
			}
			if got := [2]string{c.LoginLimitUser.String(), c.LoginLimitIP.String()}; got != tc.wantString {
				t.Errorf("String: got %q, want %q", got, tc.wantString)
			}
			if !reflect.DeepEqual(c.TrustedProxies, tc.proxies) {
				t.Errorf("TrustedProxies: got %v, want %v", c.TrustedProxies, tc.proxies)
			}
		})
	}
}

func TestLoginLimitsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, variable, value, want string
	}{
		{"no window", EnvLoginLimitUser, "10", "is not <attempts>/<window>"},
		{"not a number", EnvLoginLimitUser, "ten/15m", "is not <attempts>/<window>"},
		{"bad window", EnvLoginLimitIP, "10/15", "is not a duration"},
		{"zero attempts", EnvLoginLimitUser, "0/15m", "between 1 and 1000000"},
		{"negative attempts", EnvLoginLimitUser, "-1/15m", "between 1 and 1000000"},
		{"too many attempts", EnvLoginLimitIP, "1000001/1m", "between 1 and 1000000"},
		{"window too short", EnvLoginLimitUser, "10/500ms", "between 1s and 24h0m0s"},
		{"window too long", EnvLoginLimitIP, "10/25h", "between 1s and 24h0m0s"},
		{"proxy not an address", EnvTrustedProxies, "10.0.0.0/8,proxy.internal", `"proxy.internal" is not an IP address or CIDR prefix`},
		{"proxy prefix too long", EnvTrustedProxies, "10.0.0.0/33", `"10.0.0.0/33" is not`},
		{"proxy with a zone", EnvTrustedProxies, "fe80::1%eth0", `"fe80::1%eth0" is not`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(envFunc(map[string]string{tc.variable: tc.value}, ""))
			errs := Errors(err)
			if len(errs) != 1 || errs[0].Var != tc.variable || !strings.Contains(errs[0].Message, tc.want) {
				t.Fatalf("got %v, want one problem of %s containing %q", err, tc.variable, tc.want)
			}
		})
	}
}
