package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redistest"
)

// leaveAround makes leaver i's session expire around at: the leavers stop
// heartbeating so that their deadlines (TTL after their last heartbeat) are
// spread over [at-600ms, at+1.2s] in 200 ms steps.
func leaveAround(at time.Time) func(i int) time.Time {
	return func(i int) time.Time {
		return at.Add(-ttl - 600*time.Millisecond + time.Duration(i)*200*time.Millisecond)
	}
}

// inFlight counts the requests sent before at and answered after it.
type inFlight struct {
	at     atomic.Pointer[time.Time]
	n      atomic.Int64
	broken atomic.Int64
}

func (f *inFlight) observe(_ *client, _ string, sent time.Time, r reply) {
	at := f.at.Load()
	if at == nil || !sent.Before(*at) || !sent.Add(r.took).After(*at) {
		return
	}
	f.n.Add(1)
	if r.err != nil {
		f.broken.Add(1)
	}
}

// TestKillAndRestart kills presenced with SIGKILL while 30 clients log in,
// heartbeat and log out and 10 more let their sessions expire around the
// kill, and restarts it at once. No transition may be lost or made twice,
// every session from before the kill keeps working, and nobody stays online
// past the offline bound.
func TestKillAndRestart(t *testing.T) {
	needChaos(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	n := startNode(t, "presenced", baseEnv(srv))
	admin := adminToken(t, n.base)
	cyc := createUsers(t, n.base, admin, "cycler", 30)
	lv := createUsers(t, n.base, admin, "leaver", 10)

	killAt := time.Now().Add(3500 * time.Millisecond)
	l := newLoad(t, newFleet(n), cyc, lv, leaveAround(killAt))
	fl := &inFlight{}
	l.onReply = fl.observe
	l.run()
	time.Sleep(time.Until(killAt))
	now := time.Now()
	fl.at.Store(&now)
	n.kill()
	killed := time.Now()
	n.restart()
	down := time.Since(killed)
	time.Sleep(2500 * time.Millisecond)
	l.finish()

	fig := l.verify(rdb)
	t.Logf("FIGURES kill: presenced down %v (SIGKILL to serving again), %d requests in flight at the kill (%d broken), %d requests, %d refused and retried, %d ambiguous; %d users (%d with an ambiguous login), %d logins, %d logouts, %d expiries (slowest %v after last_seen; %d of 10 leavers' last_seen equal to their last heartbeat's to the ms, the rest within its round trip), %d transitions checked",
		down.Round(time.Millisecond), fl.n.Load(), fl.broken.Load(), l.requests.Load(), l.refused.Load(), fig.ambiguous,
		fig.users, fig.tainted, fig.logins, fig.logouts, fig.expired, fig.maxOfflineLag.Round(time.Millisecond), fig.exactLastSeen, fig.transitions)
}

// TestReplicaKilled runs two presenced replicas on one Redis, the clients'
// requests alternating between them, and kills one with SIGKILL. While both
// run, both listeners and both sweepers race to settle every expiry; after
// the kill the survivor serves every session alone. Each change must be
// exactly one transition.
func TestReplicaKilled(t *testing.T) {
	needChaos(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	a := startNode(t, "replica-a", baseEnv(srv))
	b := startNode(t, "replica-b", baseEnv(srv))
	admin := adminToken(t, a.base)
	cyc := createUsers(t, a.base, admin, "cycler", 30)
	lv := createUsers(t, a.base, admin, "leaver", 10)

	killAt := time.Now().Add(3500 * time.Millisecond)
	l := newLoad(t, newFleet(a, b), cyc, lv, leaveAround(killAt))
	fl := &inFlight{}
	l.onReply = fl.observe
	l.run()
	time.Sleep(time.Until(killAt))
	if subs, err := rdb.PubSubNumSub(context.Background(), expiredChan).Result(); err != nil || subs[expiredChan] != 2 {
		t.Errorf("before the kill: %v subscribers (%v), want both replicas' listeners", subs, err)
	}
	now := time.Now()
	fl.at.Store(&now)
	l.f.markDead(0)
	a.kill()
	time.Sleep(2500 * time.Millisecond)
	l.finish()

	fig := l.verify(rdb)
	if r := call("GET", b.base+"/readyz", "", nil); r.status != http.StatusOK {
		t.Errorf("survivor /readyz: %v", r)
	}
	t.Logf("FIGURES replicas: %d requests in flight at the kill (%d broken), %d requests, %d ambiguous; %d users (%d with an ambiguous login), %d logins, %d logouts, %d expiries (slowest %v after last_seen; %d of 10 leavers' last_seen exact to the ms), %d transitions checked, none twice",
		fl.n.Load(), fl.broken.Load(), l.requests.Load(), fig.ambiguous,
		fig.users, fig.tainted, fig.logins, fig.logouts, fig.expired, fig.maxOfflineLag.Round(time.Millisecond), fig.exactLastSeen, fig.transitions)
}

// TestGracefulShutdown sends SIGTERM while clients keep presenced busy and
// eight slow logins (an expensive bcrypt cost) are being served. Every
// request sent before SIGTERM must get its answer, the logins with tokens
// that work after a restart; /readyz must answer 503 during the drain;
// presenced must exit 0 well within its shutdown timeout, and no transition
// may be lost.
func TestGracefulShutdown(t *testing.T) {
	needChaos(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	env := baseEnv(srv)
	env["PRESENCE_SHUTDOWN_TIMEOUT"] = "10s"
	// Between SIGTERM and closing its listener presenced keeps serving
	// with Connection: close on every response, so that no request on its
	// way over a keep-alive connection is cut by the close (a busy server
	// may not have read it yet). Without the phase, a few requests of each
	// run got a reset here.
	env["PRESENCE_DRAIN_DELAY"] = "1s"
	// The request timeout covers the password check too, and eight slow
	// checks at once on two cores take a while.
	env["PRESENCE_REQUEST_TIMEOUT"] = "10s"
	// Sessions must outlive the drain and the restart, so that every
	// transition can be counted against the clients exactly.
	const shutdownTTL = 10 * time.Second
	env["PRESENCE_TTL"] = shutdownTTL.String()
	n := startNode(t, "presenced", env)
	admin := adminToken(t, n.base)
	cyc := createUsers(t, n.base, admin, "cycler", 12)

	// Slow users: a bcrypt cost at which one login takes at least 100 ms on
	// this service (race detector or not) makes eight logins at once last
	// long enough to be surely in flight when SIGTERM arrives.
	store := newStore(t, rdb, ttl)
	var hash string
	for cost := 6; cost <= 14; cost++ {
		h, err := auth.NewHasher(cost).Hash(userPassword)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("calibrate%d", cost)
		if _, err := store.CreateUser(context.Background(), presence.NewUser{Username: name, Role: presence.RoleUser, Status: presence.StatusActive, PasswordHash: h}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		access, _ := login(t, n.base, name, userPassword)
		took := time.Since(start)
		call("POST", n.base+"/api/users/logout/", access, nil)
		if hash = h; took >= 100*time.Millisecond {
			t.Logf("slow logins: bcrypt cost %d, %v each", cost, took.Round(time.Millisecond))
			break
		}
	}
	var slow []*account
	for i := range 8 {
		name := fmt.Sprintf("slow%d", i)
		u, err := store.CreateUser(context.Background(), presence.NewUser{Username: name, Role: presence.RoleUser, Status: presence.StatusActive, PasswordHash: hash})
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, &account{id: u.ID, name: name})
	}

	l := newLoad(t, newFleet(n), cyc, nil, nil)
	fl := &inFlight{}
	l.onReply = fl.observe
	l.run()
	time.Sleep(1500 * time.Millisecond)

	var wg sync.WaitGroup
	slowReplies := make([]reply, len(slow))
	slowSent := time.Now()
	for i, a := range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slowReplies[i] = call("POST", n.base+"/api/users/login/", "", map[string]string{"username": a.name, "password": userPassword})
		}()
	}
	time.Sleep(100 * time.Millisecond)
	termAt := time.Now()
	fl.at.Store(&termAt)
	drainReady := make(chan reply, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		drainReady <- call("GET", n.base+"/readyz", "", nil)
	}()
	code, took := n.term(15 * time.Second)
	wg.Wait()
	if r := <-drainReady; r.status != http.StatusServiceUnavailable {
		t.Errorf("/readyz 200 ms after SIGTERM: %v, want 503 while draining", r)
	}
	if code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
	if took > 10*time.Second {
		t.Errorf("shutdown took %v, over PRESENCE_SHUTDOWN_TIMEOUT", took)
	}
	if took > shutdownTTL/2 {
		// Sessions would expire while the service is down, and the
		// transitions could not be counted exactly against the clients.
		t.Fatalf("shutdown took %v: too slow for this scenario (TTL %v)", took, shutdownTTL)
	}
	slowInFlight := 0
	for i, r := range slowReplies {
		if r.status != http.StatusOK {
			t.Errorf("%s: login in flight at SIGTERM: %v", slow[i].name, r)
			continue
		}
		if slowSent.Add(r.took).After(termAt) {
			slowInFlight++
		}
		var out struct {
			Tokens struct{ Access string } `json:"tokens"`
		}
		_ = json.Unmarshal(r.body, &out)
		slow[i].access = out.Tokens.Access
	}
	if slowInFlight == 0 {
		t.Errorf("no slow login was still in flight at SIGTERM; the scenario did not exercise the drain")
	}
	if fl.broken.Load() > 0 {
		t.Errorf("%d of %d requests in flight at SIGTERM got no answer", fl.broken.Load(), fl.n.Load())
	}

	n.restart()
	// Sessions started during the drain work on the restarted service.
	for _, a := range slow {
		if a.access == "" {
			continue
		}
		if r := call("POST", n.base+"/api/users/heartbeat/", a.access, nil); r.status != http.StatusOK {
			t.Errorf("%s: heartbeat after the restart: %v", a.name, r)
		}
		if r := call("POST", n.base+"/api/users/logout/", a.access, nil); r.status != http.StatusOK {
			t.Errorf("%s: logout after the restart: %v", a.name, r)
		}
		l.clients = append(l.clients, &client{acc: a, logins: 1, logouts: 1, lastSent: time.Now()})
	}
	time.Sleep(1500 * time.Millisecond)
	l.finish()
	fig := l.verify(rdb)
	t.Logf("FIGURES shutdown: exit 0 after %v (drain 1 s); %d client requests and %d slow logins in flight at SIGTERM, all answered; %d requests, %d ambiguous; %d users, %d logins, %d logouts, %d transitions checked",
		took.Round(time.Millisecond), fl.n.Load(), slowInFlight, l.requests.Load(), fig.ambiguous, fig.users, fig.logins, fig.logouts, fig.transitions)
}
