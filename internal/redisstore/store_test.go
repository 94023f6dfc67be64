package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
)

// clock is a settable clock that also moves miniredis's TTLs.
type clock struct {
	mu  sync.Mutex
	now time.Time
	mr  *miniredis.Miniredis
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	if c.mr != nil {
		c.mr.FastForward(d)
	}
}

type fixture struct {
	store *Store
	mr    *miniredis.Miniredis
	rdb   *redis.Client
	clock *clock
	ctx   context.Context
	mu    sync.Mutex
	trans []string
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	f := &fixture{mr: mr, rdb: rdb, clock: &clock{now: time.UnixMilli(1_780_000_000_000), mr: mr}, ctx: context.Background()}
	mr.SetTime(f.clock.now)
	if cfg.TTL == 0 {
		cfg.TTL = 10 * time.Second
	}
	cfg.Now = f.clock.Now
	cfg.OnTransition = func(s presence.OnlineStatus, r presence.Reason) {
		f.mu.Lock()
		f.trans = append(f.trans, string(s)+"/"+string(r))
		f.mu.Unlock()
	}
	st, err := New(rdb, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := st.Prepare(f.ctx); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	f.store = st
	return f
}

func (f *fixture) transitions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.trans...)
}

func (f *fixture) user(t *testing.T, name string, status presence.AccountStatus) presence.User {
	t.Helper()
	u, err := f.store.CreateUser(f.ctx, presence.NewUser{Username: name, Role: presence.RoleUser, Status: status, PasswordHash: "hash-" + name})
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

func (f *fixture) login(t *testing.T, u presence.User) presence.SessionRef {
	t.Helper()
	sess, got, err := f.store.StartSession(f.ctx, u.ID, presence.SessionStart{UserAgent: "test", RefreshID: "r1", RefreshExpires: f.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatalf("StartSession(%d): %v", u.ID, err)
	}
	return presence.SessionRef{UserID: u.ID, SessionID: sess.ID, TokenVersion: got.TokenVersion}
}

func (f *fixture) status(t *testing.T, id int64) presence.User {
	t.Helper()
	u, err := f.store.User(f.ctx, id)
	if err != nil {
		t.Fatalf("User(%d): %v", id, err)
	}
	return u
}

func (f *fixture) sweep(t *testing.T) SweepResult {
	t.Helper()
	var all SweepResult
	for sh := 0; sh < f.store.Shards(); sh++ {
		r, err := f.store.SweepShard(f.ctx, sh, 1000)
		if err != nil {
			t.Fatalf("SweepShard: %v", err)
		}
		all.Examined += r.Examined
		all.Expired = append(all.Expired, r.Expired...)
	}
	return all
}

func TestCreateUserAndLookup(t *testing.T) {
	for _, shards := range []int{1, 4} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			f := newFixture(t, Config{Shards: shards})
			a := f.user(t, "Alice", presence.StatusActive)
			b := f.user(t, "bob", presence.StatusPending)
			if a.ID == b.ID || a.ID <= 0 || b.ID <= 0 {
				t.Fatalf("ids %d %d, want distinct positive", a.ID, b.ID)
			}
			if a.Username != "Alice" || a.Status != presence.StatusActive || a.OnlineStatus != presence.Offline || a.CreatedAt.IsZero() {
				t.Fatalf("got %+v", a)
			}
			_, err := f.store.CreateUser(f.ctx, presence.NewUser{Username: "ALICE", PasswordHash: "x"})
			if !errors.Is(err, presence.ErrUsernameTaken) {
				t.Fatalf("duplicate username: got %v, want ErrUsernameTaken", err)
			}
			id, err := f.store.UserIDByUsername(f.ctx, "aLiCe")
			if err != nil || id != a.ID {
				t.Fatalf("UserIDByUsername: got %d %v, want %d", id, err, a.ID)
			}
			if _, err := f.store.UserIDByUsername(f.ctx, "nobody"); !errors.Is(err, presence.ErrNotFound) {
				t.Fatalf("unknown username: got %v", err)
			}
			h, err := f.store.PasswordHash(f.ctx, a.ID)
			if err != nil || h != "hash-Alice" {
				t.Fatalf("PasswordHash: got %q %v", h, err)
			}
			// The password hash never appears in the public user hash.
			fields, _ := f.rdb.HGetAll(f.ctx, f.store.k.user(a.ID)).Result()
			for k, v := range fields {
				if v == "hash-Alice" {
					t.Fatalf("password hash found in user hash field %q", k)
				}
			}
			if n, _ := f.store.CountUsers(f.ctx); n != 2 {
				t.Fatalf("CountUsers: got %d, want 2", n)
			}
			if _, err := f.store.User(f.ctx, 999999); !errors.Is(err, presence.ErrNotFound) {
				t.Fatalf("unknown user: got %v", err)
			}
		})
	}
}

func TestLoginHeartbeatLogout(t *testing.T) {
	f := newFixture(t, Config{})
	u := f.user(t, "alice", presence.StatusActive)
	ref := f.login(t, u)
	if got := f.status(t, u.ID); got.OnlineStatus != presence.Online || got.LiveSessions != 1 {
		t.Fatalf("after login: got %s with %d sessions, want online with 1", got.OnlineStatus, got.LiveSessions)
	}
	// A second session does not make a second transition.
	sess2, again, err := f.store.StartSession(f.ctx, u.ID, presence.SessionStart{RefreshID: "x", RefreshExpires: f.clock.Now().Add(time.Hour)})
	if err != nil || again.LiveSessions != 2 {
		t.Fatalf("second login reports %d live sessions (%v), want 2", again.LiveSessions, err)
	}
	ref2 := presence.SessionRef{UserID: u.ID, SessionID: sess2.ID, TokenVersion: again.TokenVersion}
	if ref2.SessionID == ref.SessionID {
		t.Fatalf("second session reused id %s", ref.SessionID)
	}
	f.clock.Advance(5 * time.Second)
	st, err := f.store.Touch(f.ctx, ref)
	if err != nil || st.OnlineStatus != presence.Online {
		t.Fatalf("Touch: got %+v %v", st, err)
	}
	if err := f.store.EndSession(f.ctx, ref, presence.ReasonLogout); err != nil {
		t.Fatalf("EndSession: %v", err)
	}
	if got := f.status(t, u.ID); got.OnlineStatus != presence.Online {
		t.Fatalf("after ending one of two sessions: got %s, want online", got.OnlineStatus)
	}
	// The ended session can never heartbeat again.
	if _, err := f.store.Touch(f.ctx, ref); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("Touch after logout: got %v, want ErrSessionRevoked", err)
	}
	if err := f.store.EndSession(f.ctx, ref, presence.ReasonLogout); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("double logout: got %v, want ErrSessionRevoked", err)
	}
	if err := f.store.EndSession(f.ctx, ref2, presence.ReasonLogout); err != nil {
		t.Fatalf("EndSession 2: %v", err)
	}
	got := f.status(t, u.ID)
	if got.OnlineStatus != presence.Offline || !got.LastSeen.Equal(f.clock.Now().UTC()) {
		t.Fatalf("after last logout: got %s last_seen %v, want offline at %v", got.OnlineStatus, got.LastSeen, f.clock.Now())
	}
	want := []string{"online/login", "offline/logout"}
	if tr := f.transitions(); fmt.Sprint(tr) != fmt.Sprint(want) {
		t.Fatalf("transitions: got %v, want %v", tr, want)
	}
	// Nothing of the sessions is left in the index.
	if n, _ := f.rdb.ZCard(f.ctx, f.store.k.deadlines(0)).Result(); n != 0 {
		t.Fatalf("deadline index has %d entries after logout, want 0", n)
	}
}

func TestInactiveCannotLogin(t *testing.T) {
	f := newFixture(t, Config{})
	for _, st := range []presence.AccountStatus{presence.StatusPending, presence.StatusSuspended, presence.StatusBanned} {
		u := f.user(t, "u-"+string(st), st)
		if _, _, err := f.store.StartSession(f.ctx, u.ID, presence.SessionStart{RefreshExpires: f.clock.Now().Add(time.Hour)}); !errors.Is(err, presence.ErrAccountInactive) {
			t.Errorf("%s: got %v, want ErrAccountInactive", st, err)
		}
	}
	if _, _, err := f.store.StartSession(f.ctx, 4242, presence.SessionStart{}); !errors.Is(err, presence.ErrNotFound) {
		t.Errorf("unknown user: got %v, want ErrNotFound", err)
	}
}

func TestExpiryBySweep(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	u := f.user(t, "alice", presence.StatusActive)
	ref := f.login(t, u)
	f.clock.Advance(4 * time.Second)
	if _, err := f.store.Touch(f.ctx, ref); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	lastHB := f.clock.Now().UTC()
	f.clock.Advance(9 * time.Second) // 1s before the deadline
	if r := f.sweep(t); len(r.Expired) != 0 {
		t.Fatalf("sweep before deadline expired %v", r.Expired)
	}
	f.clock.Advance(2 * time.Second)
	r := f.sweep(t)
	if len(r.Expired) != 1 || !r.Expired[0].WentOffline {
		t.Fatalf("sweep after deadline: got %+v, want one offline", r)
	}
	got := f.status(t, u.ID)
	if got.OnlineStatus != presence.Offline || !got.LastSeen.Equal(lastHB) {
		t.Fatalf("got %s last_seen %v, want offline last_seen %v (the last heartbeat)", got.OnlineStatus, got.LastSeen, lastHB)
	}
	// Idempotent: a second sweep, and the listener's path, do nothing.
	if r := f.sweep(t); len(r.Expired) != 0 {
		t.Fatalf("second sweep expired %v", r.Expired)
	}
	if r, err := f.store.ExpireSessions(f.ctx, 0, []string{member(u.ID, ref.SessionID)}); err != nil || len(r.Expired) != 0 {
		t.Fatalf("listener after sweep: got %+v %v, want nothing", r, err)
	}
	if tr := f.transitions(); fmt.Sprint(tr) != "[online/login offline/expired]" {
		t.Fatalf("transitions: got %v", tr)
	}
	// The session is not revoked: its next heartbeat brings the user back.
	st, err := f.store.Touch(f.ctx, ref)
	if err != nil || st.OnlineStatus != presence.Online || !st.Revived {
		t.Fatalf("Touch after expiry: got %+v %v, want online and revived", st, err)
	}
	if st, _ := f.store.Touch(f.ctx, ref); st.Revived {
		t.Fatalf("steady-state Touch reported a revival")
	}
	if tr := f.transitions(); fmt.Sprint(tr) != "[online/login offline/expired online/heartbeat]" {
		t.Fatalf("transitions: got %v", tr)
	}
}

func TestExpiryByListenerPath(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	u := f.user(t, "alice", presence.StatusActive)
	ref := f.login(t, u)
	m := member(u.ID, ref.SessionID)
	// Still live: the listener's path leaves it alone.
	if r, _ := f.store.ExpireSessions(f.ctx, 0, []string{m}); len(r.Expired) != 0 {
		t.Fatalf("expired a live session: %+v", r)
	}
	f.clock.Advance(11 * time.Second)
	r, err := f.store.ExpireSessions(f.ctx, 0, []string{m, "garbage", "1:"})
	if err != nil || len(r.Expired) != 1 || !r.Expired[0].WentOffline {
		t.Fatalf("got %+v %v, want one offline", r, err)
	}
	if r := f.sweep(t); len(r.Expired) != 0 {
		t.Fatalf("sweep after listener expired %v", r.Expired)
	}
}

func TestMultiSessionExpiryFoldsLatestActivity(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	u := f.user(t, "alice", presence.StatusActive)
	a := f.login(t, u)
	f.clock.Advance(3 * time.Second)
	b := f.login(t, u)
	lastB := f.clock.Now().UTC()
	_ = a
	f.clock.Advance(8 * time.Second) // a is overdue, b is live
	r := f.sweep(t)
	if len(r.Expired) != 1 || r.Expired[0].WentOffline {
		t.Fatalf("first sweep: got %+v, want a ended without going offline", r)
	}
	if got := f.status(t, u.ID); got.OnlineStatus != presence.Online || got.LiveSessions != 1 {
		t.Fatalf("got %s/%d, want online with 1 live session", got.OnlineStatus, got.LiveSessions)
	}
	f.clock.Advance(5 * time.Second)
	r = f.sweep(t)
	if len(r.Expired) != 1 || !r.Expired[0].WentOffline {
		t.Fatalf("second sweep: got %+v, want offline", r)
	}
	if got := f.status(t, u.ID); !got.LastSeen.Equal(lastB) {
		t.Fatalf("last_seen %v, want %v", got.LastSeen, lastB)
	}
	_ = b
}

func TestEndAllAndAccountChanges(t *testing.T) {
	f := newFixture(t, Config{})
	u := f.user(t, "alice", presence.StatusActive)
	r1, r2 := f.login(t, u), f.login(t, u)
	if err := f.store.EndAllSessions(f.ctx, u.ID, presence.ReasonLogout); err != nil {
		t.Fatalf("EndAllSessions: %v", err)
	}
	for _, r := range []presence.SessionRef{r1, r2} {
		if _, err := f.store.Touch(f.ctx, r); !errors.Is(err, presence.ErrSessionRevoked) {
			t.Fatalf("Touch after logout-all: got %v", err)
		}
	}
	got := f.status(t, u.ID)
	if got.OnlineStatus != presence.Offline || got.TokenVersion != u.TokenVersion+1 {
		t.Fatalf("got %s tv %d, want offline tv %d", got.OnlineStatus, got.TokenVersion, u.TokenVersion+1)
	}

	// Suspending ends the sessions at once; the token version moves.
	r3 := f.login(t, got)
	suspended := presence.StatusSuspended
	email := "a@example.com"
	upd, err := f.store.UpdateUser(f.ctx, u.ID, presence.UserUpdate{Status: &suspended, Email: &email})
	if err != nil || upd.Status != suspended || upd.Email != email || upd.OnlineStatus != presence.Offline {
		t.Fatalf("UpdateUser: got %+v %v", upd, err)
	}
	if _, err := f.store.Touch(f.ctx, r3); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("Touch after suspend: got %v", err)
	}
	if _, err := f.store.CheckSession(f.ctx, r3); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("CheckSession after suspend: got %v", err)
	}
	if _, _, err := f.store.StartSession(f.ctx, u.ID, presence.SessionStart{RefreshExpires: f.clock.Now().Add(time.Hour)}); !errors.Is(err, presence.ErrAccountInactive) {
		t.Fatalf("login while suspended: got %v", err)
	}
	// Clearing a field with "".
	empty := ""
	if upd, _ := f.store.UpdateUser(f.ctx, u.ID, presence.UserUpdate{Email: &empty}); upd.Email != "" {
		t.Fatalf("email not cleared: %q", upd.Email)
	}
	if _, err := f.store.UpdateUser(f.ctx, 777, presence.UserUpdate{Email: &email}); !errors.Is(err, presence.ErrNotFound) {
		t.Fatalf("update unknown: got %v", err)
	}

	// Delete frees the username and keeps the ID unused.
	if err := f.store.DeleteUser(f.ctx, u.ID); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if err := f.store.DeleteUser(f.ctx, u.ID); !errors.Is(err, presence.ErrNotFound) {
		t.Fatalf("second delete: got %v", err)
	}
	again := f.user(t, "alice", presence.StatusActive)
	if again.ID == u.ID {
		t.Fatalf("ID %d reused", u.ID)
	}
	if n, _ := f.store.CountUsers(f.ctx); n != 1 {
		t.Fatalf("CountUsers: got %d, want 1", n)
	}
}

func TestRotateRefresh(t *testing.T) {
	f := newFixture(t, Config{})
	u := f.user(t, "alice", presence.StatusActive)
	ref := f.login(t, u) // refresh id r1
	exp := f.clock.Now().Add(time.Hour)
	if err := f.store.RotateRefresh(f.ctx, ref, "r1", "r2", exp); err != nil {
		t.Fatalf("rotate r1→r2: %v", err)
	}
	if err := f.store.RotateRefresh(f.ctx, ref, "r2", "r3", exp); err != nil {
		t.Fatalf("rotate r2→r3: %v", err)
	}
	// Reusing r1 ends the session.
	if err := f.store.RotateRefresh(f.ctx, ref, "r1", "r4", exp); !errors.Is(err, presence.ErrRefreshReused) {
		t.Fatalf("reuse: got %v, want ErrRefreshReused", err)
	}
	if err := f.store.RotateRefresh(f.ctx, ref, "r3", "r5", exp); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("after reuse: got %v, want ErrSessionRevoked", err)
	}
	if got := f.status(t, u.ID); got.OnlineStatus != presence.Offline {
		t.Fatalf("after reuse: user %s, want offline", got.OnlineStatus)
	}
	// A stale token version is refused.
	ref2 := f.login(t, f.status(t, u.ID))
	stale := ref2
	stale.TokenVersion++
	if err := f.store.RotateRefresh(f.ctx, stale, "r1", "r2", exp); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("stale tv: got %v", err)
	}
	// An expired refresh window ends the session.
	f.clock.Advance(2 * time.Hour)
	if err := f.store.RotateRefresh(f.ctx, ref2, "r1", "r2", exp); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("expired refresh: got %v", err)
	}
}

func TestReviveRefusesStaleVersionAndExpiredRefresh(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	u := f.user(t, "alice", presence.StatusActive)
	ref := f.login(t, u)
	f.clock.Advance(11 * time.Second)
	stale := ref
	stale.TokenVersion = 99
	if _, err := f.store.Touch(f.ctx, stale); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("stale version: got %v", err)
	}
	f.clock.Advance(2 * time.Hour) // past the refresh expiry: the session is over
	if _, err := f.store.Touch(f.ctx, ref); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("expired refresh: got %v", err)
	}
}

func TestCheckSession(t *testing.T) {
	f := newFixture(t, Config{})
	u := f.user(t, "alice", presence.StatusActive)
	ref := f.login(t, u)
	st, err := f.store.CheckSession(f.ctx, ref)
	if err != nil || st.OnlineStatus != presence.Online {
		t.Fatalf("got %+v %v", st, err)
	}
	bad := ref
	bad.SessionID = "nope"
	if _, err := f.store.CheckSession(f.ctx, bad); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("unknown session: got %v", err)
	}
	bad = ref
	bad.UserID = 12345
	if _, err := f.store.CheckSession(f.ctx, bad); !errors.Is(err, presence.ErrSessionRevoked) {
		t.Fatalf("unknown user: got %v", err)
	}
}

func TestSessionsAndStatuses(t *testing.T) {
	f := newFixture(t, Config{Shards: 3, TTL: 10 * time.Second})
	var users []presence.User
	for i := 0; i < 7; i++ {
		users = append(users, f.user(t, fmt.Sprintf("user%d", i), presence.StatusActive))
	}
	f.login(t, users[0])
	f.clock.Advance(time.Second)
	f.login(t, users[0])
	f.login(t, users[3])
	sessions, err := f.store.Sessions(f.ctx, users[0].ID)
	if err != nil || len(sessions) != 2 || !sessions[0].Live || !sessions[0].CreatedAt.Before(sessions[1].CreatedAt) || sessions[0].UserAgent != "test" {
		t.Fatalf("Sessions: got %+v %v", sessions, err)
	}
	ids := []int64{users[0].ID, users[1].ID, users[3].ID, 99999}
	st, err := f.store.Statuses(f.ctx, ids)
	if err != nil || len(st) != 3 {
		t.Fatalf("Statuses: got %v %v, want 3 entries", st, err)
	}
	if st[users[0].ID].OnlineStatus != presence.Online || st[users[1].ID].OnlineStatus != presence.Offline || st[users[3].ID].OnlineStatus != presence.Online {
		t.Fatalf("Statuses: got %+v", st)
	}
	if n, _ := f.store.CountOnline(f.ctx); n != 2 {
		t.Fatalf("CountOnline: got %d, want 2", n)
	}
	online, err := f.store.OnlineUsers(f.ctx)
	if err != nil || len(online) != 2 {
		t.Fatalf("OnlineUsers: got %d %v, want 2", len(online), err)
	}
}

func TestListUsersMiniredis(t *testing.T) {
	f := newFixture(t, Config{Shards: 2})
	const n = 25
	for i := 0; i < n; i++ {
		st := presence.StatusActive
		if i%5 == 0 {
			st = presence.StatusPending
		}
		u := f.user(t, fmt.Sprintf("user%02d", i), st)
		if i%3 == 0 && st == presence.StatusActive {
			f.login(t, u)
		}
	}
	collect := func(q presence.ListQuery) []presence.User {
		t.Helper()
		var all []presence.User
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("listing does not end")
			}
			p, err := f.store.ListUsers(f.ctx, q)
			if err != nil {
				t.Fatalf("ListUsers: %v", err)
			}
			if p.Count != n {
				t.Fatalf("count %d, want %d", p.Count, n)
			}
			if p.Next != "" && len(p.Users) != q.PerPage {
				t.Fatalf("non-final page has %d rows, want %d", len(p.Users), q.PerPage)
			}
			all = append(all, p.Users...)
			if p.Next == "" {
				return all
			}
			q.Cursor = p.Next
		}
	}
	seen := map[int64]int{}
	for _, u := range collect(presence.ListQuery{PerPage: 4}) {
		seen[u.ID]++
	}
	if len(seen) != n {
		t.Fatalf("full pass saw %d users, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("user %d seen %d times", id, c)
		}
	}
	cases := []struct {
		q    presence.ListQuery
		want int
	}{
		{presence.ListQuery{PerPage: 3, Status: presence.StatusPending}, 5},
		{presence.ListQuery{PerPage: 3, OnlineStatus: presence.Online}, 7},
		{presence.ListQuery{PerPage: 3, OnlineStatus: presence.Offline}, 18},
		{presence.ListQuery{PerPage: 3, Search: "USER1"}, 10},
		{presence.ListQuery{PerPage: 3, Role: presence.RoleAdmin}, 0},
	}
	for _, c := range cases {
		if got := collect(c.q); len(got) != c.want {
			t.Errorf("%+v: got %d users, want %d", c.q, len(got), c.want)
		}
	}
	for _, bad := range []string{"!!", "AQ", "AQAAAAA", presence.ListQuery{}.Cursor + "zzzz"} {
		if _, err := f.store.ListUsers(f.ctx, presence.ListQuery{PerPage: 3, Cursor: bad}); !errors.Is(err, presence.ErrInvalidCursor) {
			t.Errorf("cursor %q: got %v, want ErrInvalidCursor", bad, err)
		}
	}
	// A cursor from the online listing is not accepted by the full listing.
	p, _ := f.store.ListUsers(f.ctx, presence.ListQuery{PerPage: 1, OnlineStatus: presence.Online})
	if _, err := f.store.ListUsers(f.ctx, presence.ListQuery{PerPage: 1, Cursor: p.Next}); !errors.Is(err, presence.ErrInvalidCursor) {
		t.Errorf("cross-source cursor: got %v", err)
	}
}

func TestShardCountIsPinned(t *testing.T) {
	f := newFixture(t, Config{Shards: 2})
	other, err := New(f.rdb, Config{Shards: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Prepare(f.ctx); err == nil {
		t.Fatal("Prepare with a different shard count: got nil error")
	}
}

func TestParseLive(t *testing.T) {
	k := keys{prefix: "presence:", shards: 4}
	key := k.live(42, "7")
	id, sid, ok := k.parseLive(key)
	if !ok || id != 42 || sid != "7" {
		t.Fatalf("parseLive(%q) = %d %q %v", key, id, sid, ok)
	}
	for _, bad := range []string{"presence:{2}:user:42", "other:{0}:live:1:2", "presence:{0}:live:x:2", "presence:{0}:live:5:", "presence:{0}:live:-5:1"} {
		if _, _, ok := k.parseLive(bad); ok {
			t.Errorf("parseLive(%q) accepted", bad)
		}
	}
}

// TestLuaKeysMatchGo runs lib.lua's key builders and compares them with keys.go.
func TestLuaKeysMatchGo(t *testing.T) {
	f := newFixture(t, Config{Shards: 5, Prefix: "pfx:"})
	lib, _ := luaFiles.ReadFile("lua/lib.lua")
	src := string(lib) + "\nreturn {k_user(ARGV[2]), k_cred(ARGV[2]), k_sessions(ARGV[2]), k_live(ARGV[2], 's9'), K_DEADLINES, K_ONLINE, K_EVENTS, K_NAMES, K_SEQ}"
	const id = 13 // shard 3
	got, err := redis.NewScript(src).Run(f.ctx, f.rdb, []string{"x"}, f.store.k.tag(3), id).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	k := f.store.k
	want := []string{k.user(id), k.cred(id), k.sessions(id), k.live(id, "s9"), k.deadlines(3), k.online(3), k.events(3), k.names(3), k.seq(3)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lua keys %v, want %v", got, want)
	}
}

func redisZ(deadline time.Time, m string) redis.Z {
	return redis.Z{Score: float64(deadline.UnixMilli()), Member: m}
}
