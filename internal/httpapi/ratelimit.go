package httpapi

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// LoginLimiter bounds password guessing; *redisstore.LoginLimiter implements
// it with sliding windows per username and per client address.
type LoginLimiter interface {
	// Acquire records a login attempt at username from the client address
	// ip and returns its ID; when a limit is reached it records nothing and
	// returns how long until an attempt is allowed (wait > 0).
	Acquire(ctx context.Context, username, ip string) (id string, wait time.Duration, err error)
	// Succeeded takes back the attempt id, whose password was right: only
	// failures count against the limits.
	Succeeded(ctx context.Context, username, ip, id string) error
}

// tooManyAttempts refuses a login while a brute-force limit is reached.
type tooManyAttempts struct {
	wait time.Duration
}

func (e *tooManyAttempts) Error() string { return "login attempts limited for " + e.wait.String() }

// msgTooManyAttempts is the same whichever limit refused, so that the answer
// tells nothing about the account.
const msgTooManyAttempts = "Too many failed login attempts. Try again later."

// retryAfterSeconds is wait in whole seconds, rounded up, at least 1.
func retryAfterSeconds(wait time.Duration) string {
	return strconv.FormatInt(max(1, int64((wait+time.Second-1)/time.Second)), 10)
}

// clientIP returns the address a request comes from, as the key of the
// per-address login limit. It is the TCP peer, unless the peer is a trusted
// proxy (Config.TrustedProxies): then it is the right-most address of
// X-Forwarded-For that is not a trusted proxy, the one the last proxy we trust
// saw. Entries left of it could be written by anyone. An IPv6 client counts as
// its /64, which one subscriber usually holds whole (a guesser would otherwise
// have 2^64 addresses). "" when the peer address cannot be read.
func (s *server) clientIP(r *http.Request) string {
	peer, ok := parseIP(r.RemoteAddr)
	if !ok {
		return ""
	}
	client := peer
	if s.trustedProxy(peer) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, ok := parseIP(strings.TrimSpace(hops[i]))
			if !ok {
				// Garbage: nothing left of it can be believed; the last
				// trusted hop is the client as far as we know.
				break
			}
			client = hop
			if !s.trustedProxy(hop) {
				break
			}
		}
	}
	if client.Is6() {
		return netip.PrefixFrom(client, 64).Masked().String()
	}
	return client.String()
}

func (s *server) trustedProxy(a netip.Addr) bool {
	for _, p := range s.trustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseIP reads "host:port" or a bare address, IPv4-mapped IPv6 as IPv4,
// without zone.
func parseIP(s string) (netip.Addr, bool) {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
