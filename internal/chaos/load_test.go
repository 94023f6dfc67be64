package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fleet is the presenced nodes the clients talk to, round robin over the
// live ones (as a load balancer would).
type fleet struct {
	mu    sync.Mutex
	nodes []*node
	dead  []bool
	next  atomic.Uint64
}

func newFleet(nodes ...*node) *fleet {
	return &fleet{nodes: nodes, dead: make([]bool, len(nodes))}
}

// pick returns the base URL of the next live node.
func (f *fleet) pick() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		i := int(f.next.Add(1) % uint64(len(f.nodes)))
		if !f.dead[i] {
			return f.nodes[i].base
		}
	}
}

// markDead takes node i out of the rotation (the load balancer noticed).
func (f *fleet) markDead(i int) {
	f.mu.Lock()
	f.dead[i] = true
	f.mu.Unlock()
}

// client is one user's client: it logs in, heartbeats, logs out, again and
// again, and counts what it did. A request whose connection broke after it
// was sent is ambiguous: it may or may not have happened.
type client struct {
	acc *account
	// leaveAt, for a leaver, is when it stops heartbeating for good, without
	// logging out; zero for a cycler.
	leaveAt time.Time

	mu              sync.Mutex
	logins, logouts int // confirmed
	ambiguousLogins int
	ambiguous       int       // ambiguous requests of any kind
	lastOK          time.Time // server last_seen of the last confirmed heartbeat or login
	lastOKEnd       time.Time // when its answer arrived
	lastSent        time.Time // when its last request was sent
	problems        []string
}

func (c *client) problem(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.problems) < 5 {
		c.problems = append(c.problems, fmt.Sprintf(format, args...))
	}
}

// tainted reports whether an ambiguous login may have left a session nobody
// holds (it then expires by itself).
func (c *client) tainted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ambiguousLogins > 0
}

// load runs clients against a fleet.
type load struct {
	t       *testing.T
	f       *fleet
	clients []*client
	stop    chan struct{}
	wg      sync.WaitGroup
	// requests counts every answered request; refused the retried refusals.
	requests, refused atomic.Int64
	// extra runs in each request's goroutine on each reply (may be nil).
	onReply func(c *client, what string, sent time.Time, r reply)
}

// send sends one request to a live node. A refused connection did nothing,
// so it is retried (for up to 10 s: a node restarting); any other transport
// error, and a 503, is returned as ambiguous.
func (l *load) send(c *client, what, method, path, token string, body any) (r reply, ambiguous bool) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		sent := time.Now()
		c.mu.Lock()
		c.lastSent = sent
		c.mu.Unlock()
		r = call(method, l.f.pick()+path, token, body)
		if l.onReply != nil {
			l.onReply(c, what, sent, r)
		}
		if r.err == nil {
			l.requests.Add(1)
			switch {
			case r.status == http.StatusServiceUnavailable:
				// The request's deadline may have run out after Redis
				// did the work: as ambiguous as a broken connection.
			case r.status >= 500:
				c.problem("%s: %v", what, r)
				return r, false
			default:
				return r, false
			}
		} else if isRefused(r.err) && time.Now().Before(deadline) {
			l.refused.Add(1)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		c.mu.Lock()
		c.ambiguous++
		c.mu.Unlock()
		return r, true
	}
}

// run starts every client.
func (l *load) run() {
	l.stop = make(chan struct{})
	for _, c := range l.clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if c.leaveAt.IsZero() {
				l.cycle(c)
			} else {
				l.leave(c)
			}
		}()
	}
}

// finish asks the clients to stop (cyclers log out first) and waits.
func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// After a SIGKILL a client's pool can hold several dead keep-alive
// connections, and net/http does not retry a POST on one: each attempt on a
// dead connection is ambiguous. Repeating a little later, enough times to
// use them all up, tells a dead connection from a real failure.
const (
	maxAmbiguous   = 20
	ambiguousPause = 20 * time.Millisecond
)

// loginOnce logs c in, retrying ambiguous attempts; it returns false when it
// could not (the scenario is then broken).
func (l *load) loginOnce(c *client) (access string, ok bool) {
	for range maxAmbiguous {
		r, amb := l.send(c, "login", "POST", "/api/users/login/", "", map[string]string{"username": c.acc.name, "password": userPassword})
		if amb {
			c.mu.Lock()
			c.ambiguousLogins++
			c.mu.Unlock()
			time.Sleep(ambiguousPause)
			continue
		}
		if r.status != http.StatusOK {
			c.problem("login: %v", r)
			return "", false
		}
		var out struct {
			User struct {
				LastSeen string `json:"last_seen"`
			} `json:"user"`
			Tokens struct{ Access string } `json:"tokens"`
		}
		_ = json.Unmarshal(r.body, &out)
		c.mu.Lock()
		c.logins++
		c.lastOK = serverTime(out.User.LastSeen)
		c.lastOKEnd = time.Now()
		c.mu.Unlock()
		return out.Tokens.Access, true
	}
	c.problem("login: ambiguous %d times in a row", maxAmbiguous)
	return "", false
}

// heartbeat sends one heartbeat; a confirmed one moves lastOK.
func (l *load) heartbeat(c *client, access string) {
	r, amb := l.send(c, "heartbeat", "POST", "/api/users/heartbeat/", access, nil)
	switch {
	case amb:
	case r.status == http.StatusOK:
		c.mu.Lock()
		c.lastOK = serverTime(r.json()["last_seen"])
		c.lastOKEnd = time.Now()
		c.mu.Unlock()
	default:
		c.problem("heartbeat: %v", r)
	}
}

// logout ends the session named by access; an ambiguous logout is repeated,
// and a repeat that finds the session gone (401) confirms the first.
func (l *load) logout(c *client, access string) {
	for range maxAmbiguous {
		r, amb := l.send(c, "logout", "POST", "/api/users/logout/", access, nil)
		if amb {
			time.Sleep(ambiguousPause)
			continue
		}
		if r.status != http.StatusOK && r.status != http.StatusUnauthorized {
			c.problem("logout: %v", r)
			return
		}
		c.mu.Lock()
		c.logouts++
		c.mu.Unlock()
		return
	}
	c.problem("logout: ambiguous %d times in a row", maxAmbiguous)
}

// cycle is a cycler: log in, heartbeat a few times, log out, until stopped.
func (l *load) cycle(c *client) {
	for !l.stopped() {
		access, ok := l.loginOnce(c)
		if !ok {
			return
		}
		for range 1 + rand.IntN(4) {
			time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
			l.heartbeat(c, access)
		}
		l.logout(c, access)
	}
}

// leave is a leaver: log in, heartbeat every 200 ms until leaveAt, then go
// silent without logging out.
func (l *load) leave(c *client) {
	access, ok := l.loginOnce(c)
	if !ok {
		return
	}
	for time.Now().Before(c.leaveAt) && !l.stopped() {
		l.heartbeat(c, access)
		time.Sleep(200 * time.Millisecond)
	}
}

// newLoad makes cyclers of accounts cyc and leavers of accounts lv, leaver i
// leaving at leaveAt(i).
func newLoad(t *testing.T, f *fleet, cyc, lv []*account, leaveAt func(i int) time.Time) *load {
	l := &load{t: t, f: f}
	for _, a := range cyc {
		l.clients = append(l.clients, &client{acc: a})
	}
	for i, a := range lv {
		l.clients = append(l.clients, &client{acc: a, leaveAt: leaveAt(i)})
	}
	return l
}

// loadFigures is what verify counted.
type loadFigures struct {
	users, tainted, transitions, logins, logouts, expired, ambiguous int
	// exactLastSeen counts leavers whose last_seen is, to the
	// millisecond, what their last heartbeat answered.
	exactLastSeen int
	maxOfflineLag time.Duration
}

// verify waits until every user is offline (no later than the offline bound
// after the last request) and checks the transitions stream against what
// the clients did:
//   - every user's transitions alternate online/offline and end offline (a
//     duplicate or a lost transition breaks the alternation);
//   - a client with no ambiguous login made exactly one online (login) and
//     one offline (logout) transition per cycle, or, for a leaver, one
//     online (login) and one offline (expired) with last_seen = its last
//     confirmed heartbeat;
//   - every offline by expiry came within the offline bound of last_seen.
func (l *load) verify(rdb *redis.Client) loadFigures {
	t := l.t
	t.Helper()
	var last time.Time
	for _, c := range l.clients {
		for _, p := range c.problems {
			t.Errorf("%s: %s", c.acc.name, p)
		}
		last = maxTime(last, c.lastSent)
	}
	limit := last.Add(offlineBound)
	if !waitFor(time.Until(limit)+500*time.Millisecond, func() bool {
		for _, c := range l.clients {
			if st, _ := userState(t, rdb, c.acc.id); st != "offline" {
				return false
			}
		}
		return true
	}) {
		for _, c := range l.clients {
			if st, _ := userState(t, rdb, c.acc.id); st != "offline" {
				t.Errorf("%s still %s %v after the last request (bound %v)", c.acc.name, st, time.Since(last).Round(time.Millisecond), offlineBound)
			}
		}
	}
	trs, total := readTransitions(t, rdb)
	fig := loadFigures{users: len(l.clients), transitions: total}
	for _, c := range l.clients {
		name := c.acc.name
		list := trs[c.acc.id]
		on, off := checkAlternation(t, name, list, "offline")
		fig.logins += c.logins
		fig.logouts += c.logouts
		fig.ambiguous += c.ambiguous
		for _, tr := range list {
			if tr.reason == "expired" {
				fig.expired++
				lag := tr.at.Sub(tr.lastSeen)
				fig.maxOfflineLag = max(fig.maxOfflineLag, lag)
				if lag > offlineBound {
					t.Errorf("%s: %v: offline %v after last_seen, over the bound %v", name, tr, lag, offlineBound)
				}
			}
		}
		if c.tainted() {
			fig.tainted++
			if on > c.logins+c.ambiguousLogins || on == 0 {
				t.Errorf("%s: %d online transitions for %d logins (%d ambiguous)", name, on, c.logins, c.ambiguousLogins)
			}
			continue
		}
		count := func(status, reason string) int {
			n := 0
			for _, tr := range list {
				if tr.status == status && tr.reason == reason {
					n++
				}
			}
			return n
		}
		if c.leaveAt.IsZero() {
			if on != c.logins || count("online", "login") != c.logins || off != c.logouts || count("offline", "logout") != c.logouts {
				t.Errorf("%s: %d logins and %d logouts, but transitions %v", name, c.logins, c.logouts, list)
			}
			continue
		}
		if on != 1 || off != 1 || len(list) != 2 || list[0].reason != "login" || list[1].reason != "expired" {
			t.Errorf("%s (leaver): transitions %v, want login then expired", name, list)
			continue
		}
		// last_seen is the last heartbeat: between presenced reading its
		// clock for it and the answer arriving (the sweep may re-date the
		// deadline to when Redis ran the heartbeat, see lastSeenOK). An
		// ambiguous heartbeat after it may have moved it, to about when it
		// was sent.
		got := list[1].lastSeen
		latest := c.lastOKEnd
		if c.ambiguous > 0 {
			latest = c.lastSent.Add(requestTimeout)
		}
		if !lastSeenOK(got, c.lastOK, latest) {
			t.Errorf("%s (leaver): last_seen %s, want its last heartbeat %s (answered %s; ambiguous requests: %d)",
				name, got.Format(time.StampMilli), c.lastOK.Format(time.StampMilli), c.lastOKEnd.Format(time.StampMilli), c.ambiguous)
		}
		if got.Equal(c.lastOK) {
			fig.exactLastSeen++
		}
	}
	return fig
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// lastSeenOK reports whether a last_seen written by the expiry is the last
// heartbeat, whose answer said last (presenced's clock when it handled it) and
// arrived at answered. The expiry writes the session's deadline minus the
// TTL; the deadline is presenced's clock plus the TTL, unless the sweep found
// the live key still alive at that deadline because Redis ran the heartbeat's
// SET ... PX a little later than presenced read its clock (under load, tens of
// milliseconds): it then moves the deadline to the key's real expiry, which
// dates last_seen to when Redis ran the heartbeat. Either is the last
// heartbeat, and lies in [last, answered].
func lastSeenOK(got, last, answered time.Time) bool {
	return !got.Before(last) && !got.After(answered)
}
