package chaos

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/internal/redistest"
)

// Bounds the scenarios hold presenced to (baseEnv's settings).
const (
	ttl            = 3 * time.Second
	sweepInterval  = 200 * time.Millisecond
	requestTimeout = 2 * time.Second
	// answerSlack is what an answer may take beyond the request timeout:
	// writing it, and scheduling on a loaded 2-core machine.
	answerSlack = time.Second
	// offlineBound is the contract's promise: offline no later than TTL +
	// sweep interval + 1 s after the last heartbeat.
	offlineBound = ttl + sweepInterval + time.Second
)

// sample is one request of a scenario's clients, kept for the checks.
type sample struct {
	who  string
	what string
	sent time.Time
	r    reply
}

// recorder collects samples from many goroutines.
type recorder struct {
	mu      sync.Mutex
	samples []sample
}

func (rec *recorder) add(who, what string, sent time.Time, r reply) {
	rec.mu.Lock()
	rec.samples = append(rec.samples, sample{who: who, what: what, sent: sent, r: r})
	rec.mu.Unlock()
}

func (rec *recorder) all() []sample {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]sample(nil), rec.samples...)
}

// checkAnswers checks what every answer must be, whatever the fault: an
// answer (no transport error: presenced itself stays up), in time, never a
// 5xx other than 503, and every 503 a JSON error with Retry-After.
func checkAnswers(t *testing.T, samples []sample) {
	t.Helper()
	bad := 0
	for _, s := range samples {
		var problem string
		switch {
		case s.r.err != nil:
			problem = "no answer"
		case s.r.took > requestTimeout+answerSlack:
			problem = fmt.Sprintf("took %v, over the request timeout %v", s.r.took, requestTimeout)
		case s.r.status >= 500 && s.r.status != http.StatusServiceUnavailable:
			problem = "server error"
		case s.r.status == http.StatusServiceUnavailable && s.what != "readyz" && s.r.jsonError() != "":
			problem = s.r.jsonError()
		case s.r.status == http.StatusServiceUnavailable && s.r.header.Get("Retry-After") != "1":
			problem = "503 without Retry-After: 1"
		}
		if problem != "" {
			bad++
			if bad <= 10 {
				t.Errorf("%s %s sent %s: %s: %v", s.who, s.what, s.sent.Format("15:04:05.000"), problem, s.r)
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d bad answers in all", bad)
	}
}

// heartbeatLoop heartbeats a's session every period until done closes or,
// when until is set, until then.
func heartbeatLoop(wg *sync.WaitGroup, rec *recorder, base string, a *account, period time.Duration, until time.Time, done <-chan struct{}) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if !until.IsZero() && time.Now().After(until) {
				return
			}
			sent := time.Now()
			rec.add(a.name, "heartbeat", sent, call("POST", base+"/api/users/heartbeat/", a.access, nil))
			select {
			case <-done:
				return
			case <-time.After(period):
			}
		}
	}()
}

// lastOK returns the server's last_seen of who's last successful heartbeat
// sent before limit (zero when none), and when its answer arrived.
func lastOK(samples []sample, who string, limit time.Time) (last, answered time.Time) {
	for _, s := range samples {
		if s.who == who && s.what == "heartbeat" && s.r.status == http.StatusOK && s.sent.Before(limit) {
			if ls := serverTime(s.r.json()["last_seen"]); ls.After(last) {
				last, answered = ls, s.sent.Add(s.r.took)
			}
		}
	}
	return last, answered
}

// durableUser is what of a user must survive anything.
type durableUser struct {
	Username, Email, FirstName, LastName, Role, Status, CreatedAt string
}

func durableUsers(t *testing.T, base, admin string) map[int64]durableUser {
	t.Helper()
	r := call("GET", base+"/api/users/admin/users/?per_page=1000", admin, nil)
	if r.status != http.StatusOK {
		t.Fatalf("list users: %v", r)
	}
	out := map[int64]durableUser{}
	results, _ := r.json()["results"].([]any)
	for _, x := range results {
		u := x.(map[string]any)
		s := func(k string) string { v, _ := u[k].(string); return v }
		out[int64(u["id"].(float64))] = durableUser{s("username"), s("email"), s("first_name"), s("last_name"), s("role"), s("status"), s("created_at")}
	}
	return out
}

// TestRedisOutage stops redis-server (AOF on) for 5 s while clients
// heartbeat, then starts it again. During the outage every API answer is a
// quick 503 JSON error with Retry-After, /readyz fails and /healthz does not;
// afterwards the listener is subscribed again, the sweep has taken every user
// whose sessions expired during the outage offline with last_seen = their
// last heartbeat, everyone still heartbeating is online, and no durable user
// data is lost, including writes made just before the stop.
func TestRedisOutage(t *testing.T) {
	needChaos(t)
	const outage = 5 * time.Second
	srv := redistest.Start(t, redistest.WithAOF())
	rdb := srv.Client(t)
	n := startNode(t, "presenced", baseEnv(srv))
	admin := adminToken(t, n.base)

	steady := createUsers(t, n.base, admin, "steady", 12)
	leavers := createUsers(t, n.base, admin, "leaver", 12)
	probe := createUsers(t, n.base, admin, "probe", 1)[0]
	victim := createUsers(t, n.base, admin, "victim", 1)[0]
	for _, a := range append(append([]*account{probe}, steady...), leavers...) {
		a.access, a.refresh = login(t, n.base, a.name, userPassword)
	}

	rec := &recorder{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	stopAt := time.Now().Add(2500 * time.Millisecond)
	for _, a := range steady {
		heartbeatLoop(&wg, rec, n.base, a, 250*time.Millisecond, time.Time{}, done)
	}
	// Leavers stop between 1.6 s and 0.3 s before the stop: their sessions
	// expire (TTL 3 s) while Redis is down.
	for i, a := range leavers {
		until := stopAt.Add(-1600*time.Millisecond + time.Duration(i)*100*time.Millisecond)
		heartbeatLoop(&wg, rec, n.base, a, 250*time.Millisecond, until, done)
	}
	// The prober asks everything, all the time.
	wg.Add(1)
	go func() {
		defer wg.Done()
		probes := []struct {
			what, method, path string
			token              bool
			body               any
		}{
			{"healthz", "GET", "/healthz", false, nil},
			{"readyz", "GET", "/readyz", false, nil},
			{"profile", "GET", "/api/users/profile/", true, nil},
			{"status", "POST", "/api/users/status/", true, map[string]any{"ids": []int64{steady[0].id, leavers[0].id}}},
			{"login", "POST", "/api/users/login/", false, map[string]string{"username": probe.name, "password": userPassword}},
			{"list", "GET", "/api/users/admin/users/?per_page=5", true, nil},
		}
		for i := 0; ; i++ {
			p := probes[i%len(probes)]
			token := ""
			if p.token {
				token = probe.access
				if p.what == "list" {
					token = admin
				}
			}
			sent := time.Now()
			rec.add("probe", p.what, sent, call(p.method, n.base+p.path, token, p.body))
			select {
			case <-done:
				return
			case <-time.After(40 * time.Millisecond):
			}
		}
	}()

	time.Sleep(time.Until(stopAt.Add(-300 * time.Millisecond)))
	// Durable writes just before the stop must survive it.
	for i, a := range steady[:4] {
		r := call("PUT", fmt.Sprintf("%s/api/users/admin/users/%d/", n.base, a.id), admin, map[string]string{"first_name": "Written" + strconv.Itoa(i)})
		if r.status != http.StatusOK {
			t.Fatalf("update %s: %v", a.name, r)
		}
	}
	before := durableUsers(t, n.base, admin)
	time.Sleep(time.Until(stopAt))
	srv.Stop()
	stoppedAt := time.Now()
	// Every endpoint of the API once, all at once, while Redis is down.
	time.Sleep(300 * time.Millisecond)
	endpoints := everyEndpoint(t, n.base, admin, probe, victim.id)
	time.Sleep(time.Until(stoppedAt.Add(outage)))
	restartAt := time.Now()
	srv.Restart(t)
	var readyAt time.Time
	if !waitFor(10*time.Second, func() bool {
		if call("GET", n.base+"/readyz", "", nil).status == http.StatusOK {
			readyAt = time.Now()
			return true
		}
		return false
	}) {
		t.Fatalf("/readyz still failing 10s after Redis came back")
	}
	t.Logf("Redis down %v; presenced ready %v after Redis restarted", restartAt.Sub(stoppedAt).Round(time.Millisecond), readyAt.Sub(restartAt).Round(time.Millisecond))

	// A new session whose expiry, later, shows the listener receives events
	// again.
	eventsBefore := metric(t, n, "presenced_listener_events_total")
	late := createUsers(t, n.base, admin, "late", 1)[0]
	late.access, _ = login(t, n.base, late.name, userPassword)

	time.Sleep(2500 * time.Millisecond)
	close(done)
	wg.Wait()
	samples := rec.all()

	// 1. Every answer, at any time: in time, JSON, no 500.
	checkAnswers(t, samples)

	// 2. During the outage: 503 for the API and readyz, 200 for healthz.
	byStatus := map[string]map[int]int{}
	var maxTook time.Duration
	var tooks []time.Duration
	inOutage := 0
	for _, s := range samples {
		if s.r.err != nil || s.sent.Before(stoppedAt) || s.sent.Add(s.r.took).After(restartAt) {
			continue
		}
		inOutage++
		if byStatus[s.what] == nil {
			byStatus[s.what] = map[int]int{}
		}
		byStatus[s.what][s.r.status]++
		maxTook = max(maxTook, s.r.took)
		tooks = append(tooks, s.r.took)
		want := http.StatusServiceUnavailable
		if s.what == "healthz" {
			want = http.StatusOK
		}
		if s.r.status != want {
			t.Errorf("%s %s during the outage: got %v, want %d", s.who, s.what, s.r, want)
		}
	}
	if inOutage < 40 {
		t.Errorf("only %d requests fell inside the outage; the scenario did not exercise it", inOutage)
	}
	t.Logf("during the outage: %d requests, answer times p50 %v p99 %v max %v, by kind and status %v",
		inOutage, pct(tooks, 50), pct(tooks, 99), maxTook.Round(time.Millisecond), byStatus)

	// Every endpoint, the API's and the operations', answered during the
	// outage as the API promises: 503 with Retry-After wherever Redis is
	// needed; heartbeat/batch/ refuses first (no service key is configured).
	for _, e := range endpoints {
		want := http.StatusServiceUnavailable
		switch e.what {
		case "GET /healthz", "GET /metrics", "GET /api/openapi.yaml":
			want = http.StatusOK
		case "POST /api/users/heartbeat/batch/":
			want = http.StatusUnauthorized
		}
		if e.r.status != want {
			t.Errorf("%s while Redis is down: got %v, want %d", e.what, e.r, want)
		}
	}
	checkAnswers(t, endpoints)

	// 3. Recovery: every steady client's heartbeats succeed again within 2 s
	// of readiness.
	for _, a := range steady {
		for _, s := range samples {
			if s.who == a.name && s.what == "heartbeat" && s.sent.After(readyAt.Add(2*time.Second)) && s.r.status != http.StatusOK {
				t.Errorf("%s heartbeat %v after recovery: %v", a.name, s.sent.Sub(readyAt).Round(time.Millisecond), s.r)
			}
		}
	}

	// 4. Leavers: offline, last_seen = their last successful heartbeat,
	// settled no later than the sweep interval + 1 s after readiness.
	limit := readyAt.Add(sweepInterval + time.Second)
	if !waitFor(time.Until(limit)+time.Second, func() bool {
		for _, a := range leavers {
			if st, _ := userState(t, rdb, a.id); st != "offline" {
				return false
			}
		}
		return true
	}) {
		t.Errorf("leavers still online at %v after readiness", time.Since(readyAt))
	}
	trs, total := readTransitions(t, rdb)
	exact := 0
	for _, a := range leavers {
		want, answered := lastOK(samples, a.name, stopAt)
		_, ls := userState(t, rdb, a.id)
		if !lastSeenOK(ls, want, answered) {
			t.Errorf("%s: last_seen %s, want the last heartbeat %s (answered %s)", a.name, ls.Format(time.StampMilli), want.Format(time.StampMilli), answered.Format(time.StampMilli))
		}
		if ls.Equal(want) {
			exact++
		}
		checkAlternation(t, a.name, trs[a.id], "offline")
		if l := trs[a.id]; len(l) > 0 {
			last := l[len(l)-1]
			if last.reason != "expired" || !last.lastSeen.Equal(ls) || last.at.After(limit) {
				t.Errorf("%s: last transition %v, want offline(expired) with last_seen %s by %s", a.name, last, ls.Format(time.StampMilli), limit.Format(time.StampMilli))
			}
		}
	}

	// 5. Steady users: online at the end; an expiry during the outage, if
	// Redis settled one before their next heartbeat, has last_seen = a
	// heartbeat from before the stop.
	for _, a := range steady {
		checkAlternation(t, a.name, trs[a.id], "online")
		for _, tr := range trs[a.id] {
			if first, _ := lastOK(samples, a.name, stoppedAt); tr.reason == "expired" && (tr.lastSeen.Before(first) || tr.lastSeen.After(stoppedAt)) {
				t.Errorf("%s: %v: last_seen is not the last heartbeat before the outage", a.name, tr)
			}
		}
		if st, _ := userState(t, rdb, a.id); st != "online" {
			t.Errorf("%s: %s at the end, want online", a.name, st)
		}
	}

	// 6. Nothing durable lost.
	after := durableUsers(t, n.base, admin)
	for id, u := range before {
		if after[id] != u {
			t.Errorf("user %d: before the outage %+v, after %+v", id, u, after[id])
		}
	}
	for i, a := range steady[:4] {
		if got := after[a.id].FirstName; got != "Written"+strconv.Itoa(i) {
			t.Errorf("%s: first_name written just before the stop: got %q", a.name, got)
		}
	}

	// 7. The listener subscribed again, and receives events.
	if !waitFor(5*time.Second, func() bool { return metric(t, n, "presenced_listener_events_total") > eventsBefore }) {
		t.Errorf("listener received no expiry event after the outage")
	}
	subs, err := rdb.PubSubNumSub(context.Background(), expiredChan).Result()
	if err != nil || subs[expiredChan] != 1 {
		t.Errorf("PUBSUB NUMSUB %s: got %v (%v), want 1 subscriber", expiredChan, subs, err)
	}
	if got := metric(t, n, "presenced_listener_reconnects_total"); got < 1 {
		t.Errorf("listener_reconnects_total: got %v, want at least 1", got)
	}
	if got := metric(t, n, "presenced_listener_connected"); got != 1 {
		t.Errorf("listener_connected: got %v, want 1", got)
	}
	t.Logf("FIGURES outage: Redis down %v, %d users checked (%d expired during the outage, %d with last_seen = their last heartbeat to the ms, the others within its round trip), %d requests in the outage (slowest %v) and each of the %d operations of the API once, %d transitions checked, %d durable users compared",
		restartAt.Sub(stoppedAt).Round(100*time.Millisecond), len(steady)+len(leavers), len(leavers), exact, inOutage, maxTook.Round(time.Millisecond), len(endpoints), total, len(before))
}

// TestRedisFrozen stops redis-server with SIGSTOP for 4 s: connections stay
// open but nothing answers, as with a hung or partitioned server. Requests
// must still end within the request timeout with a 503, and /healthz must
// stay up.
func TestRedisFrozen(t *testing.T) {
	needChaos(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	info, err := rdb.Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	pid := infoInt(info, "process_id")
	n := startNode(t, "presenced", baseEnv(srv))
	admin := adminToken(t, n.base)
	users := createUsers(t, n.base, admin, "user", 16)
	for _, a := range users {
		a.access, a.refresh = login(t, n.base, a.name, userPassword)
	}
	rec := &recorder{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, a := range users {
		heartbeatLoop(&wg, rec, n.base, a, 100*time.Millisecond, time.Time{}, done)
	}
	for _, what := range []string{"healthz", "readyz"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				sent := time.Now()
				rec.add("probe", what, sent, call("GET", n.base+"/"+what, "", nil))
				select {
				case <-done:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}

	time.Sleep(time.Second)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP redis-server: %v", err)
	}
	frozenAt := time.Now()
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	time.Sleep(4 * time.Second)
	_ = syscall.Kill(pid, syscall.SIGCONT)
	thawedAt := time.Now()
	time.Sleep(2 * time.Second)
	close(done)
	wg.Wait()

	samples := rec.all()
	checkAnswers(t, samples)
	frozen, healthz := 0, 0
	var maxTook time.Duration
	for _, s := range samples {
		if s.r.err != nil || s.sent.Before(frozenAt) || s.sent.Add(s.r.took).After(thawedAt) {
			continue
		}
		maxTook = max(maxTook, s.r.took)
		switch s.what {
		case "healthz":
			healthz++
			if s.r.status != http.StatusOK || s.r.took > 200*time.Millisecond {
				t.Errorf("healthz while Redis is frozen: %v", s.r)
			}
		default:
			frozen++
			if s.r.status != http.StatusServiceUnavailable {
				t.Errorf("%s %s while Redis is frozen: got %v, want 503", s.who, s.what, s.r)
			}
		}
	}
	if frozen < 16 || healthz < 20 {
		t.Errorf("only %d requests and %d healthz completed inside the freeze", frozen, healthz)
	}
	for _, a := range users {
		for _, s := range samples {
			if s.who == a.name && s.sent.After(thawedAt.Add(time.Second)) && s.r.status != http.StatusOK {
				t.Errorf("%s heartbeat %v after the thaw: %v", a.name, s.sent.Sub(thawedAt).Round(time.Millisecond), s.r)
			}
		}
	}
	t.Logf("FIGURES frozen: Redis frozen %v, %d requests answered inside the freeze (slowest %v, request timeout %v), %d healthz",
		thawedAt.Sub(frozenAt).Round(100*time.Millisecond), frozen, maxTook.Round(time.Millisecond), requestTimeout, healthz)
}

// infoInt returns an integer field of an INFO reply.
func infoInt(info, name string) int {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// pct returns the p-th percentile of ds (which it sorts), rounded to the
// millisecond.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[(len(ds)-1)*p/100].Round(time.Millisecond)
}

// everyEndpoint calls every operation of the OpenAPI document under
// /api/users/ (the same handlers serve /api/auth/) and the operations routes,
// all at once, as admin, with a valid body, on user id; it returns the
// answers, each named "METHOD path".
func everyEndpoint(t *testing.T, base, admin string, probe *account, id int64) []sample {
	t.Helper()
	doc, err := api.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string]any{
		"POST /api/users/register/":                           map[string]string{"username": "newbie1", "password": "long-password-1"},
		"POST /api/users/login/":                              map[string]string{"username": probe.name, "password": userPassword},
		"POST /api/users/refresh/":                            map[string]string{"refresh": probe.refresh},
		"POST /api/users/verify/":                             map[string]string{"token": probe.access},
		"POST /api/users/status/":                             map[string]any{"ids": []int64{id}},
		"POST /api/users/me/status/":                          map[string]string{"status": "away"},
		"POST /api/users/admin/users/":                        map[string]string{"username": "newbie2", "password": "long-password-1"},
		"PUT /api/users/admin/users/{id}/":                    map[string]string{"first_name": "Changed"},
		"POST /api/users/admin/users/{id}/set-online-status/": map[string]string{"status": "away"},
		"POST /api/users/heartbeat/batch/":                    map[string]any{"sessions": []any{}},
	}
	rec := &recorder{}
	var wg sync.WaitGroup
	for path, item := range doc.Paths.Map() {
		if strings.HasPrefix(path, "/api/auth/") {
			continue
		}
		for method := range item.Operations() {
			what := method + " " + path
			url := base + strings.ReplaceAll(path, "{id}", strconv.FormatInt(id, 10))
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent := time.Now()
				rec.add("endpoint", what, sent, call(method, url, admin, bodies[what]))
			}()
		}
	}
	wg.Wait()
	out := rec.all()
	if len(out) < 25 {
		t.Errorf("only %d operations in the OpenAPI document", len(out))
	}
	return out
}
