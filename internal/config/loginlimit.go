package config

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Login brute-force limits (PRESENCE_LOGIN_LIMIT_USER, PRESENCE_LOGIN_LIMIT_IP)
// and the proxies whose X-Forwarded-For is believed (PRESENCE_TRUSTED_PROXIES).
const (
	EnvLoginLimitUser = "PRESENCE_LOGIN_LIMIT_USER"
	EnvLoginLimitIP   = "PRESENCE_LOGIN_LIMIT_IP"
	EnvTrustedProxies = "PRESENCE_TRUSTED_PROXIES"
)

// Defaults of the login limits: ten failed guesses of one account per quarter
// hour is plenty for a person who mistyped and nothing for a guesser; a
// hundred per client address leaves room for an office behind one NAT.
var (
	DefaultLoginLimitUser = LoginLimit{Max: 10, Window: 15 * time.Minute}
	DefaultLoginLimitIP   = LoginLimit{Max: 100, Window: 15 * time.Minute}
)

// Bounds of a login limit.
const (
	MinLoginWindow = time.Second
	MaxLoginWindow = 24 * time.Hour
	MaxLoginMax    = 1000000
)

// LoginLimit is a sliding-window limit of failed logins: at most Max within
// any Window. The zero value is no limit.
type LoginLimit struct {
	// Max is how many failed attempts the window holds, 1 to MaxLoginMax.
	Max int
	// Window is the length of the sliding window, MinLoginWindow to
	// MaxLoginWindow.
	Window time.Duration
}

// Off reports whether l limits nothing.
func (l LoginLimit) Off() bool { return l.Max == 0 }

// String is l as the variable spells it: "10/15m0s" or "off".
func (l LoginLimit) String() string {
	if l.Off() {
		return "off"
	}
	return strconv.Itoa(l.Max) + "/" + l.Window.String()
}

// loginLimit parses "<max>/<window>" (e.g. 10/15m), or "off" (also "0") for
// no limit.
func (l *loader) loginLimit(name string, def LoginLimit) LoginLimit {
	v := l.str(name)
	switch strings.ToLower(v) {
	case "":
		return def
	case "off", "0":
		return LoginLimit{}
	}
	maxStr, winStr, ok := strings.Cut(v, "/")
	n, err := strconv.Atoi(strings.TrimSpace(maxStr))
	if !ok || err != nil {
		l.fail(name, "%q is not <attempts>/<window> (e.g. 10/15m) or off", v)
		return def
	}
	win, err := time.ParseDuration(strings.TrimSpace(winStr))
	if err != nil {
		l.fail(name, "%q: the window %q is not a duration (use Go syntax like 15m)", v, winStr)
		return def
	}
	if n < 1 || n > MaxLoginMax {
		l.fail(name, "%q: the number of attempts must be between 1 and %d (or off)", v, MaxLoginMax)
		return def
	}
	if win < MinLoginWindow || win > MaxLoginWindow {
		l.fail(name, "%q: the window must be between %s and %s", v, MinLoginWindow, MaxLoginWindow)
		return def
	}
	return LoginLimit{Max: n, Window: win}
}

// trustedProxies parses a comma-separated list of CIDR prefixes or single
// addresses (a single address is its /32 or /128).
func (l *loader) trustedProxies() []netip.Prefix {
	v := l.str(EnvTrustedProxies)
	if v == "" {
		return nil
	}
	var out []netip.Prefix
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var p netip.Prefix
		var err error
		if strings.Contains(item, "/") {
			p, err = netip.ParsePrefix(item)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(item); err == nil && a.Zone() == "" {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil || !p.IsValid() {
			l.fail(EnvTrustedProxies, "%q is not an IP address or CIDR prefix (e.g. 10.0.0.0/8, 192.168.1.7, fd00::/8)", item)
			continue
		}
		p = p.Masked()
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		out = append(out, p)
	}
	return out
}
