package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redistest"
)

// refsString renders refs as "uid:sid" for comparisons.
func refsString(refs []presence.SessionRef) string {
	parts := make([]string, len(refs))
	for i, r := range refs {
		parts[i] = fmt.Sprintf("%d:%s", r.UserID, r.SessionID)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func TestTouchSessions(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	alice := f.user(t, "alice", presence.StatusActive)
	bob := f.user(t, "bob", presence.StatusActive)
	carol := f.user(t, "carol", presence.StatusActive)
	a1 := f.login(t, alice)
	a2 := f.login(t, alice)
	b1 := f.login(t, bob)
	c1 := f.login(t, carol)

	// Steady state: every session refreshed, deadlines moved.
	f.clock.Advance(6 * time.Second)
	res, err := f.store.TouchSessions(f.ctx, []presence.SessionRef{a1, a2, b1, c1})
	if err != nil {
		t.Fatalf("TouchSessions: %v", err)
	}
	if res.Refreshed != 4 || len(res.Unknown) != 0 || len(res.Revoked) != 0 {
		t.Fatalf("steady state: got %+v, want 4 refreshed", res)
	}
	wantDeadline := float64(f.clock.Now().Add(10 * time.Second).UnixMilli())
	if got := f.mr.Exists(f.store.k.live(a1.UserID, a1.SessionID)); !got {
		t.Fatalf("live key of %v missing after refresh", a1)
	}
	if got, _ := f.rdb.ZScore(f.ctx, f.store.k.deadlines(0), member(b1.UserID, b1.SessionID)).Result(); got != wantDeadline {
		t.Fatalf("deadline of bob: got %v, want %v", got, wantDeadline)
	}
	// The refresh kept them past the original TTL.
	f.clock.Advance(6 * time.Second)
	if r := f.sweep(t); len(r.Expired) != 0 {
		t.Fatalf("sweep after a batch refresh expired %v, want none", r.Expired)
	}

	// Bob logs out, carol's TTL runs out (she is revived), dave never existed,
	// a2 is named twice, and a session id alice never had is revoked.
	if err := f.store.EndSession(f.ctx, b1, presence.ReasonLogout); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(11 * time.Second)
	if _, err := f.store.Touch(f.ctx, a1); err != nil { // a1 revived by a single touch first
		t.Fatal(err)
	}
	f.sweep(t) // carol and a2 are settled; alice stays online through a1
	if got := f.status(t, carol.ID); got.OnlineStatus != presence.Offline {
		t.Fatalf("carol after expiry: got %s, want offline", got.OnlineStatus)
	}
	dave := presence.SessionRef{UserID: 9999, SessionID: "1"}
	never := presence.SessionRef{UserID: alice.ID, SessionID: "77"}
	bad := presence.SessionRef{UserID: 0, SessionID: "1"}
	before := len(f.transitions())
	res, err = f.store.TouchSessions(f.ctx, []presence.SessionRef{b1, a1, dave, c1, a2, never, bad, a2})
	if err != nil {
		t.Fatalf("TouchSessions: %v", err)
	}
	if res.Refreshed != 4 {
		t.Errorf("refreshed: got %d, want 4 (a1, c1, a2 twice)", res.Refreshed)
	}
	if got, want := refsString(res.Unknown), refsString([]presence.SessionRef{dave, bad}); got != want {
		t.Errorf("unknown: got %s, want %s", got, want)
	}
	if got, want := refsString(res.Revoked), refsString([]presence.SessionRef{b1, never}); got != want {
		t.Errorf("revoked: got %s, want %s", got, want)
	}
	if got := f.status(t, carol.ID); got.OnlineStatus != presence.Online {
		t.Errorf("carol after the batch revived her session: got %s, want online", got.OnlineStatus)
	}
	if tr := f.transitions()[before:]; fmt.Sprint(tr) != "[online/heartbeat]" {
		t.Errorf("transitions of the batch: got %v, want [online/heartbeat]", tr)
	}
	// The ended session was not brought back.
	if f.mr.Exists(f.store.k.live(b1.UserID, b1.SessionID)) {
		t.Errorf("bob's ended session has a live key again")
	}
	if _, err := f.rdb.ZScore(f.ctx, f.store.k.deadlines(0), member(b1.UserID, b1.SessionID)).Result(); err != redis.Nil {
		t.Errorf("bob's ended session is in the deadline index again (err %v)", err)
	}
}

func TestTouchSessionsInactiveAndRevoked(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	u := f.user(t, "erin", presence.StatusActive)
	ref := f.login(t, u)
	other := f.user(t, "frank", presence.StatusActive)
	oref := f.login(t, other)
	suspended := presence.StatusSuspended
	if _, err := f.store.UpdateUser(f.ctx, u.ID, presence.UserUpdate{Status: &suspended}); err != nil {
		t.Fatal(err)
	}
	if err := f.store.EndAllSessions(f.ctx, other.ID, presence.ReasonLogout); err != nil {
		t.Fatal(err)
	}
	res, err := f.store.TouchSessions(f.ctx, []presence.SessionRef{ref, oref})
	if err != nil {
		t.Fatal(err)
	}
	if res.Refreshed != 0 || refsString(res.Revoked) != refsString([]presence.SessionRef{ref, oref}) {
		t.Fatalf("got %+v, want both revoked", res)
	}
}

func TestTouchSessionsLimits(t *testing.T) {
	f := newFixture(t, Config{})
	res, err := f.store.TouchSessions(f.ctx, nil)
	if err != nil || res.Refreshed != 0 || res.Unknown != nil || res.Revoked != nil {
		t.Fatalf("empty batch: got %+v %v, want nothing", res, err)
	}
	if _, err := f.store.TouchSessions(f.ctx, make([]presence.SessionRef, MaxBatch+1)); err == nil {
		t.Fatalf("batch of %d: got no error", MaxBatch+1)
	}
}

// TestIntegrationTouchSessionsOneRoundTrip checks on a real redis-server
// that a steady-state batch is one pipeline of exactly two commands per
// session, and that the slow path loads revive.lua after a SCRIPT FLUSH.
func TestIntegrationTouchSessionsOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	var roundTrips, commands atomic.Int64
	rdb.AddHook(countingHook{&roundTrips, &commands})
	st, err := New(rdb, Config{Prefix: "batch:", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(t.Context()); err != nil {
		t.Fatal(err)
	}
	var refs []presence.SessionRef
	for i := range 50 {
		u := newUser(t, st, fmt.Sprintf("user%d", i))
		refs = append(refs, loginAt(t, st, u))
	}
	roundTrips.Store(0)
	commands.Store(0)
	res, err := st.TouchSessions(t.Context(), refs)
	if err != nil || res.Refreshed != len(refs) {
		t.Fatalf("TouchSessions: got %+v %v", res, err)
	}
	if rt, n := roundTrips.Load(), commands.Load(); rt != 1 || n != int64(2*len(refs)) {
		t.Fatalf("steady state: got %d round trips and %d commands, want 1 and %d", rt, n, 2*len(refs))
	}

	// Let the TTLs run out and forget the scripts: the batch still revives.
	time.Sleep(1100 * time.Millisecond)
	if err := rdb.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	res, err = st.TouchSessions(t.Context(), refs)
	if err != nil || res.Refreshed != len(refs) || len(res.Revoked)+len(res.Unknown) != 0 {
		t.Fatalf("after expiry: got %+v %v, want all %d revived", res, err, len(refs))
	}
	for _, r := range refs {
		if n, _ := rdb.Exists(t.Context(), st.k.live(r.UserID, r.SessionID)).Result(); n != 1 {
			t.Fatalf("session %v not live after revival", r)
		}
	}
}

// countingHook counts round trips (a command or a pipeline) and commands.
type countingHook struct{ roundTrips, commands *atomic.Int64 }

func (h countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !connSetup(cmd) {
			h.roundTrips.Add(1)
			h.commands.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !connSetup(cmds[0]) {
			h.roundTrips.Add(1)
			h.commands.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

// connSetup reports whether cmd is one go-redis sends to set up a new
// connection (HELLO, CLIENT SETINFO...): not part of the work measured.
func connSetup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "auth", "select":
		return true
	}
	return false
}

// TestTouchSessionsMarkedKey: a session revived by an idle heartbeat has a
// marked live key; a batch refresh is activity and takes activate.lua, as
// Touch would.
func TestTouchSessionsMarkedKey(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	u := f.user(t, "gina", presence.StatusActive)
	ref := f.login(t, u)
	f.clock.Advance(11 * time.Second)
	if _, err := f.store.TouchIdle(f.ctx, ref); err != nil {
		t.Fatalf("TouchIdle: %v", err)
	}
	key := f.store.k.live(ref.UserID, ref.SessionID)
	if v, _ := f.mr.Get(key); v == "" || v[0] < 'a' {
		t.Fatalf("live key after an idle revival: got %q, want a marked value", v)
	}
	f.clock.Advance(time.Second)
	res, err := f.store.TouchSessions(f.ctx, []presence.SessionRef{ref})
	if err != nil || res.Refreshed != 1 {
		t.Fatalf("TouchSessions: got %+v %v, want 1 refreshed", res, err)
	}
	want := fmt.Sprint(f.clock.Now().UnixMilli())
	if v, _ := f.mr.Get(key); v != want {
		t.Errorf("live key after the batch: got %q, want the activity %s, unmarked", v, want)
	}
	if got := f.status(t, u.ID); got.OnlineStatus != presence.Online {
		t.Errorf("status: got %s, want online", got.OnlineStatus)
	}
}

// TestIntegrationTouchCoalesced runs many concurrent Touch calls, which
// share pipelines: each still gets its own answer (live sessions refreshed,
// ended ones revoked, never brought back), and a call whose request was
// cancelled does not fail the others.
func TestIntegrationTouchCoalesced(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	var roundTrips, commands atomic.Int64
	rdb.AddHook(countingHook{&roundTrips, &commands})
	st, err := New(rdb, Config{Prefix: "coalesce:", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(t.Context()); err != nil {
		t.Fatal(err)
	}
	const users = 60
	refs := make([]presence.SessionRef, users)
	for i := range refs {
		refs[i] = loginAt(t, st, newUser(t, st, fmt.Sprintf("c%d", i)))
	}
	for i := 0; i < users; i += 3 { // every third session is ended
		if err := st.EndSession(t.Context(), refs[i], presence.ReasonLogout); err != nil {
			t.Fatal(err)
		}
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	roundTrips.Store(0)
	const workers, rounds = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				i := (w*rounds + r) % users
				ctx := t.Context()
				if w == 0 && r%5 == 0 {
					ctx = cancelled // fails itself, never its neighbours
				}
				_, err := st.Touch(ctx, refs[i])
				switch {
				case ctx == cancelled:
				case i%3 == 0 && !errors.Is(err, presence.ErrSessionRevoked):
					errs <- fmt.Errorf("ended session %d: got %v, want ErrSessionRevoked", i, err)
				case i%3 != 0 && err != nil:
					errs <- fmt.Errorf("live session %d: got %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := 0; i < users; i += 3 {
		if n, _ := rdb.Exists(t.Context(), st.k.live(refs[i].UserID, refs[i].SessionID)).Result(); n != 0 {
			t.Errorf("ended session %d has a live key again", i)
		}
	}
	t.Logf("%d touches in %d round trips", workers*rounds, roundTrips.Load())
}
