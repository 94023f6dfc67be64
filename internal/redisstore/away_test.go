package redisstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redistest"
)

func TestManualStatusOverrides(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	u := f.user(t, "alice", presence.StatusActive)
	other := f.user(t, "bob", presence.StatusActive)

	// An override never makes a user without a live session look present.
	got, err := f.store.SetOnlineStatus(f.ctx, u.ID, presence.Away, time.Time{}, presence.ReasonManual)
	if err != nil || got.OnlineStatus != presence.Offline {
		t.Fatalf("away without sessions: got %s %v, want offline", got.OnlineStatus, err)
	}
	ref := f.login(t, u)
	if got := f.status(t, u.ID); got.OnlineStatus != presence.Away {
		t.Fatalf("login with a sticky away: got %s, want away", got.OnlineStatus)
	}
	// Heartbeats keep reporting the override (the fast path hands over).
	if st, err := f.store.Touch(f.ctx, ref); err != nil || st.OnlineStatus != presence.Away {
		t.Fatalf("Touch while away: got %+v %v", st, err)
	}
	if st, err := f.store.Touch(f.ctx, ref); err != nil || st.OnlineStatus != presence.Away {
		t.Fatalf("second Touch while away: got %+v %v", st, err)
	}

	// Invisible: offline for everyone, last_seen frozen at the switch.
	f.clock.Advance(time.Second)
	switched := f.clock.Now().UTC()
	got, err = f.store.SetOnlineStatus(f.ctx, u.ID, presence.Offline, time.Time{}, presence.ReasonAdmin)
	if err != nil || got.OnlineStatus != presence.Offline || !got.LastSeen.Equal(switched) || got.LiveSessions != 0 {
		t.Fatalf("invisible: got %s last_seen %v live %d %v", got.OnlineStatus, got.LastSeen, got.LiveSessions, err)
	}
	f.clock.Advance(2 * time.Second)
	if st, _ := f.store.Touch(f.ctx, ref); st.OnlineStatus != presence.Offline {
		t.Fatalf("Touch while invisible: got %s", st.OnlineStatus)
	}
	checkInvisible := func() {
		t.Helper()
		if got := f.status(t, u.ID); got.OnlineStatus != presence.Offline || !got.LastSeen.Equal(switched) || got.LiveSessions != 0 {
			t.Fatalf("User: got %s last_seen %v live %d", got.OnlineStatus, got.LastSeen, got.LiveSessions)
		}
		st, _ := f.store.Statuses(f.ctx, []int64{u.ID})
		if st[u.ID].OnlineStatus != presence.Offline || !st[u.ID].LastSeen.Equal(switched) {
			t.Fatalf("Statuses: got %+v", st[u.ID])
		}
		if n, _ := f.store.CountOnline(f.ctx); n != 0 {
			t.Fatalf("CountOnline: %d", n)
		}
		if on, _ := f.store.OnlineUsers(f.ctx); len(on) != 0 {
			t.Fatalf("OnlineUsers: %v", on)
		}
		p, _ := f.store.ListUsers(f.ctx, presence.ListQuery{PerPage: 10, OnlineStatus: presence.Online})
		if len(p.Users) != 0 {
			t.Fatalf("online listing: %v", p.Users)
		}
		sessions, _ := f.store.Sessions(f.ctx, u.ID)
		for _, s := range sessions {
			if s.Live {
				t.Fatalf("Sessions shows a live session of an invisible user")
			}
		}
	}
	checkInvisible()
	// Nothing about the invisible user's activity reaches the stream.
	before := f.transitions()
	ref2 := f.login(t, u)
	_, _ = f.store.Touch(f.ctx, ref2)
	_ = f.store.EndSession(f.ctx, ref2, presence.ReasonLogout)
	if after := f.transitions(); len(after) != len(before) {
		t.Fatalf("invisible user's login/logout made transitions: %v", after[len(before):])
	}
	checkInvisible()

	// Online clears the override.
	if got, _ := f.store.SetOnlineStatus(f.ctx, u.ID, presence.Online, time.Time{}, presence.ReasonManual); got.OnlineStatus != presence.Online {
		t.Fatalf("clear: got %s, want online", got.OnlineStatus)
	}
	if st, _ := f.store.Touch(f.ctx, ref); st.OnlineStatus != presence.Online {
		t.Fatalf("Touch after clear: got %s", st.OnlineStatus)
	}

	// An override with an expiry clears itself at the next heartbeat after it.
	until := f.clock.Now().Add(3 * time.Second)
	if got, _ := f.store.SetOnlineStatus(f.ctx, u.ID, presence.Away, until, presence.ReasonManual); got.OnlineStatus != presence.Away {
		t.Fatalf("away until: got %s", got.OnlineStatus)
	}
	f.clock.Advance(4 * time.Second)
	if st, _ := f.store.Touch(f.ctx, ref); st.OnlineStatus != presence.Online {
		t.Fatalf("Touch after the override expired: got %s, want online", st.OnlineStatus)
	}
	if _, err := f.store.SetOnlineStatus(f.ctx, 9999, presence.Away, time.Time{}, presence.ReasonAdmin); !errors.Is(err, presence.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := f.store.SetOnlineStatus(f.ctx, other.ID, "busy", time.Time{}, presence.ReasonAdmin); err == nil {
		t.Fatal("invalid status accepted")
	}
	want := []string{"away/login", "offline/admin", "online/manual", "away/manual", "online/heartbeat"}
	if got := f.transitions(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
}

func TestIdleHeartbeatsDoNotCountAsActivity(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	u := f.user(t, "alice", presence.StatusActive)
	ref := f.login(t, u)
	active := f.clock.Now().UnixMilli()
	f.clock.Advance(5 * time.Second)
	if st, err := f.store.TouchIdle(f.ctx, ref); err != nil || st.OnlineStatus != presence.Online {
		t.Fatalf("TouchIdle: %+v %v", st, err)
	}
	v, _ := f.rdb.Get(f.ctx, f.store.k.live(u.ID, ref.SessionID)).Result()
	if v != fmt.Sprint(active) {
		t.Fatalf("live value after an idle heartbeat %q, want the last activity %d", v, active)
	}
	if ttl := f.mr.TTL(f.store.k.live(u.ID, ref.SessionID)); ttl != 10*time.Second {
		t.Fatalf("TTL after idle heartbeat %v, want 10s", ttl)
	}
	// An idle heartbeat after expiry revives the session as idle.
	f.clock.Advance(11 * time.Second)
	f.sweep(t)
	if st, err := f.store.TouchIdle(f.ctx, ref); err != nil || st.OnlineStatus != presence.Away {
		t.Fatalf("idle revive: got %+v %v, want away", st, err)
	}
	if st, err := f.store.Touch(f.ctx, ref); err != nil || st.OnlineStatus != presence.Online {
		t.Fatalf("active heartbeat after idle revive: got %+v %v, want online", st, err)
	}
}

// TestIntegrationIdleScanMakesUsersAway runs idle.lua's ZSCAN on a real
// redis-server (miniredis's ZSCAN ignores COUNT).
func TestIntegrationIdleScanMakesUsersAway(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	st, err := New(rdb, Config{TTL: time.Hour, AwayAfter: time.Minute, SweepInterval: time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	const users = 300
	var refs []presence.SessionRef
	for i := 0; i < users; i++ {
		u := newUser(t, st, fmt.Sprintf("idle%d", i))
		refs = append(refs, loginAt(t, st, u))
	}
	// Half keep being active, half only send idle heartbeats.
	clk.Advance(61 * time.Second)
	for i, r := range refs {
		var err error
		if i%2 == 0 {
			_, err = st.Touch(ctx, r)
		} else {
			_, err = st.TouchIdle(ctx, r)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// One pass takes about AwayAfter/5 = 12 calls at a 1s interval.
	made := 0
	for i := 0; i < 13; i++ {
		n, err := st.ScanIdle(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		made += n
	}
	if made != users/2 {
		t.Fatalf("idle scan made %d users away, want %d", made, users/2)
	}
	for i, r := range refs {
		u, _ := st.User(ctx, r.UserID)
		want := presence.Online
		if i%2 == 1 {
			want = presence.Away
		}
		if u.OnlineStatus != want {
			t.Fatalf("user %d: %s, want %s", i, u.OnlineStatus, want)
		}
	}
	// Activity brings an away user back, in the heartbeat's one call.
	if s, err := st.Touch(ctx, refs[1]); err != nil || s.OnlineStatus != presence.Online {
		t.Fatalf("Touch of an away user: %+v %v", s, err)
	}
	if s, _ := st.Touch(ctx, refs[1]); s.OnlineStatus != presence.Online {
		t.Fatalf("second Touch: %+v", s)
	}
}

func TestIntegrationReadTransitions(t *testing.T) {
	for _, shards := range []int{1, 3} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client(t)
			ctx := context.Background()
			st, err := New(rdb, Config{Shards: shards, TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Prepare(ctx); err != nil {
				t.Fatal(err)
			}
			if _, _, err := st.ReadTransitions(ctx, "bogus", 10, 0); !errors.Is(err, presence.ErrInvalidCursor) {
				t.Fatalf("bogus position: %v", err)
			}
			// "$" resolves to the current end: nothing old, nothing missed.
			old := newUser(t, st, "old")
			loginAt(t, st, old)
			_, pos, err := st.ReadTransitions(ctx, "$", 10, 0)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for i := 0; i < 5; i++ {
				u := newUser(t, st, fmt.Sprintf("u%d", i))
				loginAt(t, st, u)
				ids = append(ids, u.ID)
			}
			got, next, err := st.ReadTransitions(ctx, pos, 3, 0)
			if err != nil || len(got) != 3 {
				t.Fatalf("first read: %d %v", len(got), err)
			}
			rest, _, err := st.ReadTransitions(ctx, next, 10, 0)
			if err != nil || len(rest) != 2 {
				t.Fatalf("second read: %d %v", len(rest), err)
			}
			seen := map[int64]bool{}
			for _, tr := range append(got, rest...) {
				if tr.OnlineStatus != presence.Online || tr.Reason != presence.ReasonLogin || tr.Username == "" || tr.At.IsZero() {
					t.Fatalf("transition %+v", tr)
				}
				seen[tr.UserID] = true
			}
			for _, id := range ids {
				if !seen[id] {
					t.Fatalf("user %d missing", id)
				}
			}
			// Resuming from an event's own ID yields the events after it.
			again, _, _ := st.ReadTransitions(ctx, got[0].ID, 10, 0)
			if len(again) != 4 {
				t.Fatalf("resume from first event: %d, want 4", len(again))
			}
			// Blocking read wakes up on a new transition.
			done := make(chan []presence.Transition)
			_, end, _ := st.ReadTransitions(ctx, "$", 10, 0)
			go func() {
				tr, _, _ := st.ReadTransitions(ctx, end, 10, 5*time.Second)
				done <- tr
			}()
			time.Sleep(50 * time.Millisecond)
			late := newUser(t, st, "late")
			loginAt(t, st, late)
			select {
			case tr := <-done:
				if len(tr) != 1 || tr[0].UserID != late.ID {
					t.Fatalf("blocking read got %+v", tr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("blocking read did not wake")
			}
		})
	}
}

func TestTickets(t *testing.T) {
	f := newFixture(t, Config{})
	ref := presence.SessionRef{UserID: 7, SessionID: "3", TokenVersion: 2}
	tk, err := f.store.IssueTicket(f.ctx, ref, 30*time.Second)
	if err != nil || len(tk) < 30 {
		t.Fatalf("IssueTicket: %q %v", tk, err)
	}
	got, err := f.store.RedeemTicket(f.ctx, tk)
	if err != nil || got != ref {
		t.Fatalf("RedeemTicket: %+v %v", got, err)
	}
	if _, err := f.store.RedeemTicket(f.ctx, tk); !errors.Is(err, presence.ErrNotFound) {
		t.Fatalf("second redeem: %v", err)
	}
	tk2, _ := f.store.IssueTicket(f.ctx, ref, 30*time.Second)
	f.mr.FastForward(31 * time.Second)
	if _, err := f.store.RedeemTicket(f.ctx, tk2); !errors.Is(err, presence.ErrNotFound) {
		t.Fatalf("expired ticket: %v", err)
	}
	for _, bad := range []string{"", "nope", string(make([]byte, 100))} {
		if _, err := f.store.RedeemTicket(f.ctx, bad); !errors.Is(err, presence.ErrNotFound) {
			t.Fatalf("ticket %q: %v", bad, err)
		}
	}
}

// Regression tests for bugs found while documenting the schema.

func TestEndAllKeepsLastActivityAsLastSeen(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	u := f.user(t, "alice", presence.StatusActive)
	ref := f.login(t, u)
	f.clock.Advance(2 * time.Second)
	_, _ = f.store.Touch(f.ctx, ref)
	last := f.clock.Now().UTC()
	f.clock.Advance(5 * time.Second)
	if err := f.store.EndAllSessions(f.ctx, u.ID, presence.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	if got := f.status(t, u.ID); !got.LastSeen.Equal(last) {
		t.Fatalf("last_seen %v after force-logout, want the last activity %v", got.LastSeen, last)
	}
}

func TestExpiredRefreshEndsPresenceToo(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	u := f.user(t, "alice", presence.StatusActive)
	sess, _, err := f.store.StartSession(f.ctx, u.ID, presence.SessionStart{RefreshID: "r1", RefreshExpires: f.clock.Now().Add(3 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	ref := presence.SessionRef{UserID: u.ID, SessionID: sess.ID}
	f.clock.Advance(4 * time.Second) // refresh expired, presence TTL not yet
	if err := f.store.RotateRefresh(f.ctx, ref, "r1", "r2", f.clock.Now().Add(time.Hour)); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("rotate after refresh expiry: %v", err)
	}
	if got := f.status(t, u.ID); got.OnlineStatus != presence.Offline {
		t.Fatalf("user %s after their only session ended, want offline", got.OnlineStatus)
	}
	if n, _ := f.store.CountOnline(f.ctx); n != 0 {
		t.Fatalf("online set holds %d users", n)
	}
}

func TestListenerSkipsADeadlineAHeartbeatJustMoved(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	u := f.user(t, "alice", presence.StatusActive)
	ref := f.login(t, u)
	m := member(u.ID, ref.SessionID)
	f.clock.Advance(11 * time.Second)
	f.mr.Del(f.store.k.live(u.ID, ref.SessionID))
	// The heartbeat's ZADD XX landed, its revive has not run yet.
	f.rdb.ZAddXX(f.ctx, f.store.k.deadlines(0), redisZ(f.clock.Now().Add(10*time.Second), m))
	if r, _ := f.store.ExpireSessions(f.ctx, 0, []string{m}); len(r.Expired) != 0 {
		t.Fatalf("listener settled a session whose deadline is in the future: %+v", r)
	}
	if got := f.status(t, u.ID); got.OnlineStatus != presence.Online {
		t.Fatalf("user flapped to %s", got.OnlineStatus)
	}
}

func TestOverrideUntilClearsWithoutAHeartbeat(t *testing.T) {
	f := newFixture(t, Config{TTL: time.Hour, AwayAfter: time.Hour})
	u := f.user(t, "alice", presence.StatusActive)
	f.login(t, u)
	if got, _ := f.store.SetOnlineStatus(f.ctx, u.ID, presence.Offline, f.clock.Now().Add(time.Minute), presence.ReasonManual); got.OnlineStatus != presence.Offline {
		t.Fatalf("invisible: got %s", got.OnlineStatus)
	}
	f.clock.Advance(2 * time.Minute)
	if _, err := f.store.ScanIdle(f.ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got := f.status(t, u.ID); got.OnlineStatus != presence.Online {
		t.Fatalf("after the override's until and one idle scan: got %s, want online", got.OnlineStatus)
	}
}

func TestExpiryToAwayIsCountedAsAway(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second, AwayAfter: 5 * time.Second})
	u := f.user(t, "alice", presence.StatusActive)
	a, b := f.login(t, u), f.login(t, u)
	f.clock.Advance(4 * time.Second)
	_, _ = f.store.Touch(f.ctx, a)
	_, _ = f.store.TouchIdle(f.ctx, b)
	f.clock.Advance(4 * time.Second)
	_, _ = f.store.TouchIdle(f.ctx, b)
	if _, err := f.store.ScanIdle(f.ctx, 0); err != nil { // b idle, a still active
		t.Fatal(err)
	}
	if got := f.status(t, u.ID); got.OnlineStatus != presence.Online {
		t.Fatalf("one active session left: got %s", got.OnlineStatus)
	}
	f.clock.Advance(7 * time.Second) // a's deadline (14s) passed, b's (18s) not
	r := f.sweep(t)
	if len(r.Expired) != 1 || r.Expired[0].Status != presence.Away || r.Expired[0].WentOffline {
		t.Fatalf("sweep: %+v, want one session ended with the user away", r.Expired)
	}
	want := "[online/login away/expired]"
	if got := fmt.Sprint(f.transitions()); got != want {
		t.Fatalf("transitions %s, want %s", got, want)
	}
}

func TestAnnounceRecordsSchemaAndTTL(t *testing.T) {
	f := newFixture(t, Config{TTL: 7 * time.Second})
	if v, _ := f.rdb.HGet(f.ctx, f.store.k.meta(), "ttl_ms").Result(); v != "" {
		t.Fatalf("Prepare wrote ttl_ms %q; only Announce may", v)
	}
	if err := f.store.Announce(f.ctx); err != nil {
		t.Fatal(err)
	}
	m, _ := f.rdb.HGetAll(f.ctx, f.store.k.meta()).Result()
	if m["schema"] != "1" || m["ttl_ms"] != "7000" || m["shards"] != "1" {
		t.Fatalf("meta %v", m)
	}
}
