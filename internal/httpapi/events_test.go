package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/metrics"
	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
	"github.com/presenced/presenced/internal/redistest"
)

// redisHarnessOpts adjust a harness on a real redis-server.
type redisHarnessOpts struct {
	store  redisstore.Config
	api    func(*Config)
	server func(*http.Server)
}

// newRedisHarness is newHarness on a real redis-server started for the
// test: the event stream's blocking XREAD is tested where it runs in
// production (miniredis implements blocking commands its own way).
func newRedisHarness(t *testing.T, o redisHarnessOpts) *harness {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	if o.store.TTL == 0 {
		o.store.TTL = time.Minute
	}
	o.store.Logger = slog.New(slog.DiscardHandler)
	store, err := redisstore.New(rdb, o.store)
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	if err := store.Prepare(context.Background()); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	tokens, err := auth.NewTokens(auth.TokenConfig{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatalf("NewTokens: %v", err)
	}
	d := &deps{store: store, tokens: tokens, hasher: auth.NewHasher(bcrypt.MinCost), metrics: metrics.New(), logs: &syncBuffer{}}
	cfg := Config{
		Store: store, Tokens: tokens, Hasher: d.hasher, Metrics: d.metrics,
		Logger: slog.New(slog.NewTextHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if o.api != nil {
		o.api(&cfg)
	}
	handler, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewUnstartedServer(handler)
	if o.server != nil {
		o.server(ts.Config)
	}
	ts.Start()
	t.Cleanup(ts.Close)
	h := &harness{t: t, deps: d, url: ts.URL}
	h.client = &http.Client{
		Transport:     &validatingTransport{t: t, router: specRouter(t), base: ts.Client().Transport},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return h
}

// sseEvent is one event of a stream, or one comment line.
type sseEvent struct {
	ID, Event, Data string
	Comment         string
}

// sseStream is an open event stream read by a goroutine of the test.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	cancel context.CancelFunc
	items  chan sseEvent
	// done is closed when the stream ended (EOF or error).
	done chan struct{}
	// ready is the id of the ready event, once next has seen it.
	ready string
	// beforeReady counts the events next returned before it.
	beforeReady int
	seen        int
}

// eventsPath is the event stream's path under the first prefix.
const eventsPath = "/api/users/admin/events/"

// openEvents opens the event stream with client (its own transport, not
// the validating one, which would wait for the end of the body), with a
// bearer token or the query and headers given, and expects 200.
func (h *harness) openEvents(client *http.Client, token, query string, header http.Header) *sseStream {
	h.t.Helper()
	s, status, body := h.tryEvents(client, token, query, header)
	if status != http.StatusOK {
		h.t.Fatalf("open events: status %d, body %s", status, body)
	}
	return s
}

// tryEvents opens the event stream; on a status other than 200 it returns
// the status and the body.
func (h *harness) tryEvents(client *http.Client, token, query string, header http.Header) (*sseStream, int, string) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", h.url+eventsPath+query, nil)
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		h.t.Fatalf("open events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, string(body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		h.t.Errorf("Content-Type: got %q, want text/event-stream", ct)
	}
	s := &sseStream{t: h.t, resp: resp, cancel: cancel, items: make(chan sseEvent, 4096), done: make(chan struct{})}
	go s.read()
	h.t.Cleanup(s.close)
	return s, http.StatusOK, ""
}

// read parses the stream into s.items until it ends.
func (s *sseStream) read() {
	defer close(s.done)
	sc := bufio.NewScanner(s.resp.Body)
	var ev sseEvent
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Event != "" || len(data) > 0 || ev.ID != "" {
				ev.Data = strings.Join(data, "\n")
				s.items <- ev
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"):
			s.items <- sseEvent{Comment: strings.TrimSpace(line[1:])}
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.ID = value
			case "event":
				ev.Event = value
			case "data":
				data = append(data, value)
			}
		}
	}
}

// close drops the connection, as a client that goes away does.
func (s *sseStream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// take records a ready event and reports whether ev is an event to return.
func (s *sseStream) take(ev sseEvent) bool {
	switch {
	case ev.Comment != "":
		return false
	case ev.Event == "ready":
		if s.ready != "" {
			s.t.Errorf("second ready event %+v", ev)
		}
		if ev.Data != "{}" || ev.ID == "" {
			s.t.Errorf("ready event: got %+v, want an id and data {}", ev)
		}
		s.ready, s.beforeReady = ev.ID, s.seen
		return false
	}
	s.seen++
	return true
}

// next returns the next status event, skipping comments and the ready
// event, or fails after timeout.
func (s *sseStream) next(timeout time.Duration) sseEvent {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-s.items:
			if s.take(ev) {
				return ev
			}
		case <-s.done:
			select {
			case ev := <-s.items:
				if s.take(ev) {
					return ev
				}
				continue
			default:
			}
			s.t.Fatalf("stream ended while waiting for an event")
		case <-deadline:
			s.t.Fatalf("no event within %v", timeout)
		}
	}
}

// nextN returns the next n events.
func (s *sseStream) nextN(n int, timeout time.Duration) []sseEvent {
	s.t.Helper()
	out := make([]sseEvent, 0, n)
	deadline := time.Now().Add(timeout)
	for len(out) < n {
		out = append(out, s.next(time.Until(deadline)))
	}
	return out
}

// quiet checks that no event arrives for d.
func (s *sseStream) quiet(d time.Duration) {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev := <-s.items:
			if s.take(ev) {
				s.t.Fatalf("got event %+v, want none", ev)
			}
		case <-deadline:
			return
		}
	}
}

// ended waits for the server to end the stream.
func (s *sseStream) ended(timeout time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// eventData is the data of a status event.
type eventData struct {
	UserID       int64   `json:"user_id"`
	Username     string  `json:"username"`
	OnlineStatus string  `json:"online_status"`
	LastSeen     *string `json:"last_seen"`
	Reason       string  `json:"reason"`
	At           string  `json:"at"`
}

func (ev sseEvent) decode(t *testing.T) eventData {
	t.Helper()
	if ev.Event != "status" {
		t.Fatalf("event type: got %q, want status", ev.Event)
	}
	var d eventData
	dec := json.NewDecoder(strings.NewReader(ev.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("event data %q: %v", ev.Data, err)
	}
	if !timeRE.MatchString(d.At) || d.LastSeen != nil && !timeRE.MatchString(*d.LastSeen) {
		t.Errorf("event times: got at %q last_seen %v, want times like 2026-11-26T10:11:12.345Z", d.At, d.LastSeen)
	}
	return d
}

// streamClient is a client with its own transport, closed with the test.
func streamClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// session starts a session of u in the store; the user goes online if they
// were offline.
func (h *harness) session(u presence.User) presence.SessionRef {
	h.t.Helper()
	sess, user, err := h.store.StartSession(context.Background(), u.ID, presence.SessionStart{
		RefreshID: "r-" + u.Username, RefreshExpires: time.Now().Add(time.Hour),
	})
	if err != nil {
		h.t.Fatalf("StartSession(%s): %v", u.Username, err)
	}
	return presence.SessionRef{UserID: u.ID, SessionID: sess.ID, TokenVersion: user.TokenVersion}
}

// endSession logs a session out in the store.
func (h *harness) endSession(ref presence.SessionRef) {
	h.t.Helper()
	if err := h.store.EndSession(context.Background(), ref, presence.ReasonLogout); err != nil {
		h.t.Fatalf("EndSession: %v", err)
	}
}

// streamEnd is the current end of the transitions stream.
func (h *harness) streamEnd() string {
	h.t.Helper()
	_, pos, err := h.store.ReadTransitions(context.Background(), "$", 1, 0)
	if err != nil {
		h.t.Fatalf("ReadTransitions: %v", err)
	}
	return pos
}

// transitionsAfter is every transition of the stream after pos.
func (h *harness) transitionsAfter(pos string) []presence.Transition {
	h.t.Helper()
	var out []presence.Transition
	for {
		trs, next, err := h.store.ReadTransitions(context.Background(), pos, 1000, 0)
		if err != nil {
			h.t.Fatalf("ReadTransitions: %v", err)
		}
		if len(trs) == 0 {
			return out
		}
		out = append(out, trs...)
		pos = next
	}
}

// wantTransitions checks that events are exactly trs, in order.
func wantTransitions(t *testing.T, events []sseEvent, trs []presence.Transition) {
	t.Helper()
	if len(events) != len(trs) {
		t.Fatalf("got %d events, want %d", len(events), len(trs))
	}
	for i, ev := range events {
		d := ev.decode(t)
		tr := trs[i]
		if ev.ID != tr.ID || d.UserID != tr.UserID || d.Username != tr.Username ||
			d.OnlineStatus != string(tr.OnlineStatus) || d.Reason != string(tr.Reason) {
			t.Fatalf("event %d: got id %s %+v, want %+v", i, ev.ID, d, tr)
		}
	}
}

func TestEventsOrdering(t *testing.T) {
	h := newRedisHarness(t, redisHarnessOpts{})
	_, admin := h.userWithLogin("root", presence.RoleAdmin)
	start := h.streamEnd()
	s := h.openEvents(streamClient(t), admin.Access, "", nil)

	// Interleaved logins and logouts of several users, one at a time.
	var users []presence.User
	for i := range 5 {
		users = append(users, h.user(fmt.Sprintf("user%d", i), presence.RoleUser, presence.StatusActive))
	}
	type step struct {
		user   string
		status string
		reason string
	}
	var want []step
	refs := map[int64]presence.SessionRef{}
	for round := range 4 {
		for i, u := range users {
			if (round+i)%2 == 0 {
				refs[u.ID] = h.session(u)
				want = append(want, step{u.Username, "online", "login"})
			} else if ref, ok := refs[u.ID]; ok {
				h.endSession(ref)
				delete(refs, u.ID)
				want = append(want, step{u.Username, "offline", "logout"})
			}
		}
	}
	events := s.nextN(len(want), 5*time.Second)
	for i, ev := range events {
		d := ev.decode(t)
		if got := (step{d.Username, d.OnlineStatus, d.Reason}); got != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, got, want[i])
		}
	}
	// Exactly the stream, ids included, and nothing more.
	wantTransitions(t, events, h.transitionsAfter(start))
	s.quiet(200 * time.Millisecond)
	// The ready event came first, at the end of the stream as it was.
	if s.ready != start || s.beforeReady != 0 {
		t.Errorf("ready: got id %q after %d events, want id %q before any", s.ready, s.beforeReady, start)
	}
}

func TestEventsResume(t *testing.T) {
	tests := []struct {
		name string
		// resume opens the second stream after lastID.
		resume func(h *harness, c *http.Client, token, lastID string) *sseStream
	}{
		{"Last-Event-ID header", func(h *harness, c *http.Client, token, lastID string) *sseStream {
			return h.openEvents(c, token, "", http.Header{"Last-Event-ID": {lastID}})
		}},
		{"last_event_id parameter with a ticket", func(h *harness, c *http.Client, token, lastID string) *sseStream {
			return h.openEvents(c, "", "?ticket="+h.ticket(token)+"&last_event_id="+url.QueryEscape(lastID), nil)
		}},
		{"header wins over the parameter", func(h *harness, c *http.Client, token, lastID string) *sseStream {
			return h.openEvents(c, token, "?last_event_id=0", http.Header{"Last-Event-ID": {lastID}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newRedisHarness(t, redisHarnessOpts{})
			_, admin := h.userWithLogin("root", presence.RoleAdmin)
			c := streamClient(t)
			start := h.streamEnd()
			s := h.openEvents(c, admin.Access, "", nil)
			alice := h.user("alice", presence.RoleUser, presence.StatusActive)
			for range 3 {
				h.endSession(h.session(alice))
			}
			got := s.nextN(4, 5*time.Second)
			// The connection drops after the fourth event, with two of
			// the six still unread or in flight.
			s.close()
			for range 3 {
				h.endSession(h.session(alice))
			}
			s2 := tt.resume(h, c, admin.Access, got[3].ID)
			got = append(got, s2.nextN(8, 5*time.Second)...)
			wantTransitions(t, got, h.transitionsAfter(start))
			s2.quiet(200 * time.Millisecond)
			// Ready once the backlog was sent, at its last event.
			if last := got[len(got)-1].ID; s2.ready != last || s2.beforeReady != 8 {
				t.Errorf("ready: got id %q after %d events, want id %q after 8", s2.ready, s2.beforeReady, last)
			}
		})
	}

	t.Run("from the oldest retained with 0", func(t *testing.T) {
		h := newRedisHarness(t, redisHarnessOpts{})
		_, admin := h.userWithLogin("root", presence.RoleAdmin)
		s := h.openEvents(streamClient(t), admin.Access, "?last_event_id=0", nil)
		got := s.nextN(1, 5*time.Second)
		wantTransitions(t, got, h.transitionsAfter("0"))
		if d := got[0].decode(t); d.Username != "root" || d.OnlineStatus != "online" {
			t.Errorf("got %+v, want root's login", d)
		}
	})

	t.Run("malformed position", func(t *testing.T) {
		h := newRedisHarness(t, redisHarnessOpts{})
		_, admin := h.userWithLogin("root", presence.RoleAdmin)
		for _, id := range []string{"abc", "1-2-3", "1,2", strings.Repeat("1", 5000)} {
			_, status, body := h.tryEvents(streamClient(t), admin.Access, "", http.Header{"Last-Event-ID": {id}})
			if status != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
				t.Errorf("Last-Event-ID %.20q: got %d %s, want 400 with an error", id, status, body)
			}
		}
		h.do("GET", eventsPath+"?last_event_id=nope", admin.Access, nil).wantStatus(t, http.StatusBadRequest)
	})
}

// ticket takes an event-stream ticket with the access token.
func (h *harness) ticket(access string) string {
	h.t.Helper()
	res := h.do("POST", "/api/users/admin/events/ticket/", access, nil)
	if res.status != http.StatusOK {
		h.t.Fatalf("ticket: %d %s", res.status, res.body)
	}
	var out struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expires_in"`
	}
	res.decode(h.t, &out)
	if out.Ticket == "" || out.ExpiresIn != 30 {
		h.t.Fatalf("ticket: got %s, want a ticket that expires in 30", res.body)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-store" {
		h.t.Errorf("ticket Cache-Control: got %q, want no-store", cc)
	}
	return out.Ticket
}

func TestEventsAuth(t *testing.T) {
	h := newRedisHarness(t, redisHarnessOpts{})
	_, admin := h.userWithLogin("root", presence.RoleAdmin)
	_, mod := h.userWithLogin("mod", presence.RoleModerator)
	_, user := h.userWithLogin("alice", presence.RoleUser)
	c := streamClient(t)

	t.Run("no token or ticket", func(t *testing.T) {
		h.do("GET", eventsPath, "", nil).want(t, http.StatusUnauthorized, bodyNotAuth)
		h.do("GET", eventsPath+"?ticket=", "", nil).want(t, http.StatusUnauthorized, bodyNotAuth)
		h.do("POST", "/api/users/admin/events/ticket/", "", nil).want(t, http.StatusUnauthorized, bodyNotAuth)
	})
	t.Run("user role", func(t *testing.T) {
		h.do("GET", eventsPath, user.Access, nil).want(t, http.StatusForbidden, bodyForbidden)
		h.do("POST", "/api/auth/admin/events/ticket/", user.Access, nil).want(t, http.StatusForbidden, bodyForbidden)
	})
	t.Run("moderator and admin, bearer or ticket", func(t *testing.T) {
		h.openEvents(c, mod.Access, "", nil).close()
		h.openEvents(c, admin.Access, "", nil).close()
		h.openEvents(c, "", "?ticket="+h.ticket(mod.Access), nil).close()
	})
	t.Run("a ticket works once", func(t *testing.T) {
		tk := h.ticket(admin.Access)
		h.openEvents(c, "", "?ticket="+tk, nil).close()
		h.do("GET", eventsPath+"?ticket="+tk, "", nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	})
	t.Run("two racing uses of one ticket: one wins", func(t *testing.T) {
		tk := h.ticket(admin.Access)
		var wg sync.WaitGroup
		statuses := make([]int, 8)
		for i := range statuses {
			wg.Go(func() {
				s, status, _ := h.tryEvents(c, "", "?ticket="+tk, nil)
				statuses[i] = status
				if s != nil {
					s.close()
				}
			})
		}
		wg.Wait()
		won := 0
		for _, st := range statuses {
			switch st {
			case http.StatusOK:
				won++
			case http.StatusUnauthorized:
			default:
				t.Errorf("status %d, want 200 or 401", st)
			}
		}
		if won != 1 {
			t.Errorf("%d requests opened a stream with one ticket, want 1", won)
		}
	})
	t.Run("unknown ticket", func(t *testing.T) {
		h.do("GET", eventsPath+"?ticket=forged", "", nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("GET", eventsPath+"?ticket="+strings.Repeat("x", 100), "", nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	})
	t.Run("the header wins over a ticket", func(t *testing.T) {
		tk := h.ticket(admin.Access)
		h.do("GET", eventsPath+"?ticket="+tk, user.Access, nil).want(t, http.StatusForbidden, bodyForbidden)
		// The ticket was not consumed.
		h.openEvents(c, "", "?ticket="+tk, nil).close()
	})
	t.Run("a ticket of a user who lost the role", func(t *testing.T) {
		u, tok := h.userWithLogin("demoted", presence.RoleModerator)
		tk := h.ticket(tok.Access)
		role := presence.RoleUser
		if _, err := h.store.UpdateUser(context.Background(), u.ID, presence.UserUpdate{Role: &role}); err != nil {
			t.Fatal(err)
		}
		h.do("GET", eventsPath+"?ticket="+tk, "", nil).want(t, http.StatusForbidden, bodyForbidden)
	})
	t.Run("a ticket of a session that ended", func(t *testing.T) {
		_, tok := h.userWithLogin("leaver", presence.RoleAdmin)
		tk := h.ticket(tok.Access)
		h.do("POST", "/api/users/logout/", tok.Access, nil).wantStatus(t, http.StatusOK)
		h.do("GET", eventsPath+"?ticket="+tk, "", nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	})
	t.Run("a token never appears in the log", func(t *testing.T) {
		if strings.Contains(h.logs.String(), "ticket=") {
			t.Errorf("log contains a ticket:\n%s", h.logs.String())
		}
	})
}

// TestEventsTicketExpires moves miniredis's clock past the ticket's life.
func TestEventsTicketExpires(t *testing.T) {
	h := newHarness(t)
	_, admin := h.userWithLogin("root", presence.RoleAdmin)
	tk := h.ticket(admin.Access)
	h.mr.FastForward(ticketTTL + time.Second)
	h.do("GET", eventsPath+"?ticket="+tk, "", nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
}

func TestEventsPingAndRecheck(t *testing.T) {
	h := newRedisHarness(t, redisHarnessOpts{api: func(c *Config) { c.EventPing = 50 * time.Millisecond }})
	c := streamClient(t)

	t.Run("comment heartbeats", func(t *testing.T) {
		_, admin := h.userWithLogin("root", presence.RoleAdmin)
		s := h.openEvents(c, admin.Access, "", nil)
		pings := 0
		deadline := time.After(2 * time.Second)
		for pings < 3 {
			select {
			case ev := <-s.items:
				if ev.Comment == "ping" {
					pings++
				} else if s.take(ev) {
					t.Fatalf("got %+v, want only pings", ev)
				}
			case <-deadline:
				t.Fatalf("got %d pings in 2s, want 3 at 50ms", pings)
			}
		}
	})
	for _, tt := range []struct {
		name string
		end  func(u presence.User, tok tokenPair)
	}{
		{"logout", func(_ presence.User, tok tokenPair) {
			h.do("POST", "/api/users/logout/", tok.Access, nil).wantStatus(t, http.StatusOK)
		}},
		{"suspension", func(u presence.User, _ tokenPair) {
			st := presence.StatusSuspended
			if _, err := h.store.UpdateUser(context.Background(), u.ID, presence.UserUpdate{Status: &st}); err != nil {
				t.Fatal(err)
			}
		}},
		{"demotion", func(u presence.User, _ tokenPair) {
			role := presence.RoleUser
			if _, err := h.store.UpdateUser(context.Background(), u.ID, presence.UserUpdate{Role: &role}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run("the stream ends after "+tt.name, func(t *testing.T) {
			u, tok := h.userWithLogin("staff-"+tt.name, presence.RoleModerator)
			s := h.openEvents(c, tok.Access, "", nil)
			if s.ended(200 * time.Millisecond) {
				t.Fatal("stream ended before the session did")
			}
			tt.end(u, tok)
			if !s.ended(2 * time.Second) {
				t.Fatal("stream still open 2s after the session ended")
			}
		})
	}
}

// TestEventsSurviveServerTimeouts runs the stream on a server with short
// read and write timeouts, which the handler must lift for the stream.
func TestEventsSurviveServerTimeouts(t *testing.T) {
	h := newRedisHarness(t, redisHarnessOpts{server: func(s *http.Server) {
		s.ReadTimeout = 200 * time.Millisecond
		s.WriteTimeout = 200 * time.Millisecond
	}})
	_, admin := h.userWithLogin("root", presence.RoleAdmin)
	s := h.openEvents(streamClient(t), admin.Access, "", nil)
	time.Sleep(time.Second)
	alice := h.user("alice", presence.RoleUser, presence.StatusActive)
	h.session(alice)
	if d := s.next(3 * time.Second).decode(t); d.Username != "alice" {
		t.Errorf("got %+v, want alice's login", d)
	}
}

func TestEventsCapAndCleanup(t *testing.T) {
	const streamCap = 20
	h := newRedisHarness(t, redisHarnessOpts{api: func(c *Config) { c.MaxEventStreams = streamCap }})
	_, admin := h.userWithLogin("root", presence.RoleAdmin)
	c := streamClient(t)
	// Warm up the connections and pools, then measure the baseline.
	h.openEvents(c, admin.Access, "", nil).close()
	c.Transport.(*http.Transport).CloseIdleConnections()
	baseline := settledGoroutines(t, 0, 3*time.Second)

	streams := make([]*sseStream, streamCap)
	for i := range streams {
		streams[i] = h.openEvents(c, admin.Access, "", nil)
	}
	_, status, body := h.tryEvents(c, admin.Access, "", nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "Too many event streams") {
		t.Fatalf("stream over the cap: got %d %s, want 503", status, body)
	}
	res := h.do("GET", eventsPath, admin.Access, nil)
	res.wantStatus(t, http.StatusServiceUnavailable)
	if res.header.Get("Retry-After") == "" {
		t.Errorf("503 over the cap has no Retry-After")
	}

	// One client goes away: its slot is free at once.
	streams[0].close()
	deadline := time.Now().Add(time.Second)
	for {
		s, status, _ := h.tryEvents(c, admin.Access, "", nil)
		if status == http.StatusOK {
			streams[0] = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed 1s after a client went away: status %d", status)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Every stream still gets events.
	alice := h.user("alice", presence.RoleUser, presence.StatusActive)
	h.session(alice)
	for i, s := range streams {
		if d := s.next(5 * time.Second).decode(t); d.Username != "alice" {
			t.Fatalf("stream %d: got %+v, want alice", i, d)
		}
	}

	// Everyone goes away: every goroutine of the streams ends (the feed's
	// within one blocking read).
	for _, s := range streams {
		s.close()
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	if n := settledGoroutines(t, baseline, 5*time.Second); n > baseline {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: got %d, want the baseline %d\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
	}
}

// settledGoroutines waits until the number of goroutines is at most want
// (or, with want 0, stops changing) and returns it.
func settledGoroutines(t *testing.T, want int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := runtime.NumGoroutine()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n := runtime.NumGoroutine()
		if want > 0 && n <= want || want == 0 && n == last {
			return n
		}
		last = n
	}
	return runtime.NumGoroutine()
}

func TestEventsStreamsDone(t *testing.T) {
	done := make(chan struct{})
	h := newRedisHarness(t, redisHarnessOpts{api: func(c *Config) { c.StreamsDone = done }})
	_, admin := h.userWithLogin("root", presence.RoleAdmin)
	s := h.openEvents(streamClient(t), admin.Access, "", nil)
	close(done)
	if !s.ended(time.Second) {
		t.Fatal("stream still open 1s after StreamsDone was closed")
	}
}

// TestEventsManySubscribers holds many streams on one instance and checks
// that each gets every transition, in order.
func TestEventsManySubscribers(t *testing.T) {
	for _, n := range []int{200, 2000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if n > 200 && testing.Short() {
				t.Skip("-short: 200 subscribers only")
			}
			h := newRedisHarness(t, redisHarnessOpts{api: func(c *Config) { c.MaxEventStreams = n }})
			_, admin := h.userWithLogin("root", presence.RoleAdmin)
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}}
			t.Cleanup(c.Transport.(*http.Transport).CloseIdleConnections)
			start := time.Now()
			streams := make([]*sseStream, n)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var errs []error
			// Streams open 100 at a time: the test measures how many one
			// instance holds, not whether 2000 simultaneous connects fit in
			// the Redis pool on a loaded CI machine (real clients spread
			// their reconnects: EventSource waits the retry interval).
			sem := make(chan struct{}, 100)
			for i := range streams {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					s, status, body := h.tryEvents(c, admin.Access, "", nil)
					if status != http.StatusOK {
						mu.Lock()
						errs = append(errs, fmt.Errorf("stream %d: %d %s", i, status, body))
						mu.Unlock()
						return
					}
					streams[i] = s
				})
			}
			wg.Wait()
			if len(errs) > 0 {
				t.Fatalf("%d streams failed to open, first: %v", len(errs), errs[0])
			}
			opened := time.Since(start)

			from := h.streamEnd()
			alice := h.user("alice", presence.RoleUser, presence.StatusActive)
			sent := time.Now()
			for range 5 {
				h.endSession(h.session(alice))
			}
			want := h.transitionsAfter(from)
			var slowest time.Duration
			for _, s := range streams {
				wantTransitions(t, s.nextN(len(want), 20*time.Second), want)
				slowest = max(slowest, time.Since(sent))
			}
			t.Logf("%d concurrent streams: opened in %v; all %d got all %d transitions within %v of the first",
				n, opened.Round(time.Millisecond), n, len(want), slowest.Round(time.Millisecond))
			for _, s := range streams {
				s.close()
			}
		})
	}
}

// TestEventsFeedIsShared checks the point of the feed: streams that are
// caught up take the feed's batches, so one transition costs a few Redis
// reads in all, not one per stream.
func TestEventsFeedIsShared(t *testing.T) {
	var counting *countingStore
	h := newRedisHarness(t, redisHarnessOpts{api: func(c *Config) {
		counting = &countingStore{Store: c.Store}
		c.Store = counting
	}})
	_, admin := h.userWithLogin("root", presence.RoleAdmin)
	c := streamClient(t)
	const n = 50
	streams := make([]*sseStream, n)
	for i := range streams {
		streams[i] = h.openEvents(c, admin.Access, "", nil)
	}
	alice := h.user("alice", presence.RoleUser, presence.StatusActive)
	// A first transition brings every stream onto the feed's path.
	ref := h.session(alice)
	for _, s := range streams {
		s.next(5 * time.Second)
	}
	time.Sleep(100 * time.Millisecond)
	before := counting.count()
	h.endSession(ref)
	for i, s := range streams {
		if d := s.next(5 * time.Second).decode(t); d.Username != "alice" || d.OnlineStatus != "offline" {
			t.Fatalf("stream %d: got %+v, want alice offline", i, d)
		}
	}
	// The feed's own read, plus at most a few streams that raced it.
	if reads := counting.count() - before; reads > n/5 {
		t.Errorf("one transition to %d streams took %d ReadTransitions calls, want far fewer than one per stream", n, reads)
	}
}

// countingStore counts the non-blocking ReadTransitions calls (the streams'
// own reads; the feed's blocking ones are not counted).
type countingStore struct {
	presence.Store
	mu    sync.Mutex
	reads int
}

func (c *countingStore) ReadTransitions(ctx context.Context, after string, count int, block time.Duration) ([]presence.Transition, string, error) {
	if block == 0 {
		c.mu.Lock()
		c.reads++
		c.mu.Unlock()
	}
	return c.Store.ReadTransitions(ctx, after, count, block)
}

func (c *countingStore) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}
