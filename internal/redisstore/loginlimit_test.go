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

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redistest"
)

func newLimiter(t *testing.T, f *fixture, lim LoginLimits) *LoginLimiter {
	t.Helper()
	l, err := f.store.NewLoginLimiter(lim)
	if err != nil {
		t.Fatalf("NewLoginLimiter: %v", err)
	}
	return l
}

// attempt acquires one attempt and reports the wait (0: let through).
func attempt(t *testing.T, f *fixture, l *LoginLimiter, user, ip string) time.Duration {
	t.Helper()
	_, wait, err := l.Acquire(f.ctx, user, ip)
	if err != nil {
		t.Fatalf("Acquire(%s, %s): %v", user, ip, err)
	}
	return wait
}

func TestLoginLimiterPerUser(t *testing.T) {
	f := newFixture(t, Config{})
	l := newLimiter(t, f, LoginLimits{PerUser: Limit{Max: 3, Window: time.Minute}})

	for i := range 3 {
		if wait := attempt(t, f, l, "alice", "10.0.0.1"); wait != 0 {
			t.Fatalf("attempt %d: refused for %v, want let through", i+1, wait)
		}
		f.clock.Advance(10 * time.Second)
	}
	// The oldest failure is 30 s old: it leaves the window in 30 s.
	if wait := attempt(t, f, l, "alice", "10.0.0.2"); wait != 30*time.Second {
		t.Fatalf("fourth attempt: got wait %v, want 30s", wait)
	}
	// The username is compared as usernames are: case-insensitively.
	if wait := attempt(t, f, l, "ALICE", "10.0.0.3"); wait != 30*time.Second {
		t.Fatalf("ALICE: got wait %v, want 30s (the same account)", wait)
	}
	// Another account is not affected.
	if wait := attempt(t, f, l, "bob", "10.0.0.1"); wait != 0 {
		t.Fatalf("bob: refused for %v", wait)
	}
	// Hammering a full window does not extend it: refused attempts are
	// not logged.
	for range 50 {
		attempt(t, f, l, "alice", "10.0.0.4")
		f.clock.Advance(500 * time.Millisecond)
	}
	// 25 s passed; 5 s later the oldest failure leaves.
	if wait := attempt(t, f, l, "alice", "10.0.0.1"); wait != 5*time.Second {
		t.Fatalf("after hammering: got wait %v, want 5s", wait)
	}
	f.clock.Advance(5 * time.Second)
	if wait := attempt(t, f, l, "alice", "10.0.0.1"); wait != 0 {
		t.Fatalf("after the window: refused for %v, want let through", wait)
	}
}

func TestLoginLimiterPerIP(t *testing.T) {
	f := newFixture(t, Config{})
	l := newLimiter(t, f, LoginLimits{PerUser: Limit{Max: 2, Window: time.Minute}, PerIP: Limit{Max: 3, Window: time.Minute}})
	for _, name := range []string{"user1", "user2", "user3"} {
		if wait := attempt(t, f, l, name, "203.0.113.9"); wait != 0 {
			t.Fatalf("%s: refused for %v", name, wait)
		}
	}
	if wait := attempt(t, f, l, "user4", "203.0.113.9"); wait != time.Minute {
		t.Fatalf("fourth username from one address: got wait %v, want 1m", wait)
	}
	// The refused attempt at user4 was given back: user4 has two tries left
	// from another address.
	for i := range 2 {
		if wait := attempt(t, f, l, "user4", "198.51.100.1"); wait != 0 {
			t.Fatalf("user4 from elsewhere, attempt %d: refused for %v", i+1, wait)
		}
	}
	if n := f.rdb.ZCard(f.ctx, f.store.k.loginAttempts(f.store.k.loginTag("user", "user4"))).Val(); n != 2 {
		t.Fatalf("user4's log holds %d attempts, want 2", n)
	}
	// Keys expire with their window.
	if ttl := f.rdb.PTTL(f.ctx, f.store.k.loginAttempts(f.store.k.loginTag("ip", "203.0.113.9"))).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("address log TTL %v, want within the window", ttl)
	}
}

func TestLoginLimiterSuccessDoesNotCount(t *testing.T) {
	f := newFixture(t, Config{})
	l := newLimiter(t, f, LoginLimits{PerUser: Limit{Max: 2, Window: time.Minute}, PerIP: Limit{Max: 2, Window: time.Minute}})
	for i := range 10 {
		id, wait, err := l.Acquire(f.ctx, "carol", "10.1.1.1")
		if err != nil || wait != 0 {
			t.Fatalf("login %d: wait %v, error %v", i+1, wait, err)
		}
		if err := l.Succeeded(f.ctx, "carol", "10.1.1.1", id); err != nil {
			t.Fatalf("Succeeded: %v", err)
		}
	}
	// Failures still count after successes.
	attempt(t, f, l, "carol", "10.1.1.1")
	attempt(t, f, l, "carol", "10.1.1.1")
	if wait := attempt(t, f, l, "carol", "10.1.1.1"); wait == 0 {
		t.Fatal("third failure let through")
	}
}

func TestLoginLimiterInvalidUsernames(t *testing.T) {
	f := newFixture(t, Config{})
	l := newLimiter(t, f, LoginLimits{PerUser: Limit{Max: 1, Window: time.Minute}, PerIP: Limit{Max: 3, Window: time.Minute}})
	// No account can be named so: only the address counts, and no key is
	// made from the name.
	for _, name := range []string{"\u212Aelvin", "a b", "x"} {
		if wait := attempt(t, f, l, name, "10.2.2.2"); wait != 0 {
			t.Fatalf("%q: refused for %v", name, wait)
		}
	}
	if wait := attempt(t, f, l, "\u212Aelvin", "10.2.2.2"); wait == 0 {
		t.Fatal("the address limit did not apply")
	}
	keys := f.mr.Keys()
	for _, k := range keys {
		if strings.Contains(k, "login:user:") {
			t.Errorf("a per-user log was made for an impossible username: %s", k)
		}
	}
	// Limits that are off do nothing.
	none := newLimiter(t, f, LoginLimits{})
	for range 5 {
		if wait := attempt(t, f, none, "dave", "10.3.3.3"); wait != 0 {
			t.Fatalf("no limits: refused for %v", wait)
		}
	}
}

// TestLoginLimiterConcurrent checks the window is exact under concurrency:
// of many simultaneous guesses at one account, exactly Max get through.
func TestLoginLimiterConcurrent(t *testing.T) {
	f := newFixture(t, Config{})
	l := newLimiter(t, f, LoginLimits{PerUser: Limit{Max: 10, Window: time.Minute}})
	var through atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, wait, err := l.Acquire(f.ctx, "erin", "10.4.4.4"); err == nil && wait == 0 {
				through.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := through.Load(); got != 10 {
		t.Fatalf("%d of 50 concurrent guesses let through, want 10", got)
	}
}

func TestLoginLimiterUnavailable(t *testing.T) {
	f := newFixture(t, Config{})
	l := newLimiter(t, f, LoginLimits{PerUser: Limit{Max: 10, Window: time.Minute}})
	f.mr.Close()
	_, _, err := l.Acquire(f.ctx, "frank", "10.5.5.5")
	if !errors.Is(err, presence.ErrUnavailable) {
		t.Fatalf("Redis down: got %v, want ErrUnavailable", err)
	}
}

func TestNewLoginLimiterValidates(t *testing.T) {
	f := newFixture(t, Config{})
	for _, lim := range []LoginLimits{
		{PerUser: Limit{Max: -1, Window: time.Minute}},
		{PerIP: Limit{Max: 5}},
	} {
		if _, err := f.store.NewLoginLimiter(lim); err == nil {
			t.Errorf("NewLoginLimiter(%+v): got no error", lim)
		}
	}
}

// TestLoginLimiterCluster runs the limiter on a three-master Redis Cluster:
// each attempt log is one key in its own slot, and the script's migration
// probe (lib.lua) looks at that slot, so nothing is refused as cross-slot.
func TestLoginLimiterCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	cc := newClusterClient(t, c)
	st, err := New(cc, Config{Prefix: "lim:"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.NewLoginLimiter(LoginLimits{PerUser: Limit{Max: 2, Window: time.Minute}, PerIP: Limit{Max: 30, Window: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	refused := 0
	for i := range 20 {
		user := fmt.Sprintf("user%d", i%10)
		ip := fmt.Sprintf("10.9.%d.1", i%3)
		_, wait, err := l.Acquire(ctx, user, ip)
		if err != nil {
			t.Fatalf("Acquire(%s, %s): %v", user, ip, err)
		}
		if wait > 0 {
			refused++
		}
	}
	// Ten users, two tries each: all twenty let through; a third is refused.
	if refused != 0 {
		t.Fatalf("%d of 20 attempts refused, want 0", refused)
	}
	if _, wait, err := l.Acquire(ctx, "user3", "10.9.9.9"); err != nil || wait == 0 {
		t.Fatalf("third try at user3: wait %v, error %v; want refused", wait, err)
	}
	id, wait, err := l.Acquire(ctx, "someone", "10.9.9.9")
	if err != nil || wait != 0 {
		t.Fatalf("someone: wait %v, error %v", wait, err)
	}
	if err := l.Succeeded(ctx, "someone", "10.9.9.9", id); err != nil {
		t.Fatalf("Succeeded: %v", err)
	}
}
