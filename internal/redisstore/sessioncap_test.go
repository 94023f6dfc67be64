package redisstore

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redistest"
)

// TestSessionsPerUserCapped: a login beyond MaxSessionsPerUser ends the
// user's oldest sessions, whose tokens stop working; the newer ones and the
// user's presence are untouched.
func TestSessionsPerUserCapped(t *testing.T) {
	f := newFixture(t, Config{})
	u := f.user(t, "collector", presence.StatusActive)
	var refs []presence.SessionRef
	for i := range MaxSessionsPerUser + 5 {
		sess, uu, err := f.store.StartSession(f.ctx, u.ID, presence.SessionStart{RefreshID: "r" + strconv.Itoa(i), RefreshExpires: f.clock.Now().Add(time.Hour)})
		if err != nil {
			t.Fatalf("login %d: %v", i+1, err)
		}
		refs = append(refs, presence.SessionRef{UserID: u.ID, SessionID: sess.ID, TokenVersion: uu.TokenVersion})
		f.clock.Advance(time.Millisecond)
	}
	if n := f.rdb.HLen(f.ctx, f.store.k.sessions(u.ID)).Val(); n != MaxSessionsPerUser {
		t.Fatalf("%d session records, want %d", n, MaxSessionsPerUser)
	}
	for i, ref := range refs {
		_, err := f.store.Touch(f.ctx, ref)
		oldest := i < 5
		switch {
		case oldest && !errors.Is(err, presence.ErrSessionRevoked):
			t.Errorf("session %d (among the 5 oldest): got %v, want ErrSessionRevoked", i+1, err)
		case !oldest && err != nil:
			t.Errorf("session %d: %v", i+1, err)
		}
	}
	if got, err := f.store.User(f.ctx, u.ID); err != nil || got.OnlineStatus != presence.Online {
		t.Fatalf("user: %+v %v; want online", got, err)
	}
}

// TestLoginCostBounded logs one user in thousands of times on a real
// redis-server: with the cap, a login costs the same after 3000 logins as
// after 100. Without it, every login walked every earlier session, and the
// 3000th took about 20 times as long as the first (35 ms of Redis time at
// 10,000 sessions, during which Redis serves nobody).
func TestLoginCostBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("3000 logins")
	}
	srv := redistest.Start(t)
	st, err := New(srv.Client(t), Config{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u, err := st.CreateUser(ctx, presence.NewUser{Username: "looper", Role: presence.RoleUser, Status: presence.StatusActive, PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	login := func() time.Duration {
		start := time.Now()
		if _, _, err := st.StartSession(ctx, u.ID, presence.SessionStart{RefreshID: "r", RefreshExpires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	// The median of 50 logins, once the cap is reached and again later.
	median := func() time.Duration {
		ds := make([]time.Duration, 50)
		for i := range ds {
			ds[i] = login()
		}
		return medianOf(ds)
	}
	for range MaxSessionsPerUser {
		login()
	}
	early := median()
	for range 3000 {
		login()
	}
	late := median()
	t.Logf("login at %d sessions: %v; after 3000 more logins: %v", MaxSessionsPerUser, early, late)
	if late > 3*early+time.Millisecond {
		t.Fatalf("a login after 3000 more logins takes %v, against %v at the cap: the cost grows with the logins", late, early)
	}
}

func medianOf(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}
