package chaos

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
	"github.com/presenced/presenced/internal/redistest"
)

// TestMassExpiry lets 100,000 sessions (10,000 users with 10 each) expire
// within about a second of each other, as when a network cut every client at
// once. Redis then publishes 100,000 expiry events as fast as it deletes the
// keys; the listener must keep up without being disconnected for falling
// behind, every user must go offline once, within the normal bound plus the
// time one Redis needs to settle the flood (see minSettleRate), and
// presenced's memory must stay bounded.
func TestMassExpiry(t *testing.T) {
	needChaos(t)
	const (
		users    = 10000
		perUser  = 10
		sessions = users * perUser
		floodTTL = 5 * time.Second
		// minSettleRate is the capacity claimed for one Redis (README,
		// Reliability): expired sessions settled per second, 10 per user.
		// The sweep alone settles 48,000 to 61,000 such sessions a second on
		// this 2-core machine (TestIntegrationExpiryCostPerUser logs it).
		// A flood larger than what Redis settles within the normal bound
		// drains at that rate, so the flood's bound is the normal one plus
		// sessions / minSettleRate.
		minSettleRate = 50000
		floodBound    = floodTTL + sweepInterval + time.Second + sessions*time.Second/minSettleRate
	)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	env := baseEnv(srv)
	env["PRESENCE_TTL"] = floodTTL.String()
	n := startNode(t, "presenced", env)

	// Sessions are created with a long TTL (creating 100k takes a while),
	// then all refreshed to the service's TTL in pipelined batches, so that
	// they expire together.
	slowStore := newStore(t, rdb, time.Hour)
	store := newStore(t, rdb, floodTTL)
	hash := fixedHash(t)
	start := time.Now()
	ids := make([]int64, users)
	if err := parallel(32, users, func(i int) error {
		u, err := slowStore.CreateUser(ctx, presence.NewUser{Username: fmt.Sprintf("flood%d", i), Role: presence.RoleUser, Status: presence.StatusActive, PasswordHash: hash})
		ids[i] = u.ID
		return err
	}); err != nil {
		t.Fatalf("create users: %v", err)
	}
	refs := make([]presence.SessionRef, sessions)
	if err := parallel(32, sessions, func(k int) error {
		i, j := k/perUser, k%perUser
		sess, u, err := slowStore.StartSession(ctx, ids[i], presence.SessionStart{RefreshID: fmt.Sprintf("r%d-%d", i, j), RefreshExpires: time.Now().Add(time.Hour)})
		refs[k] = presence.SessionRef{UserID: ids[i], SessionID: sess.ID, TokenVersion: u.TokenVersion}
		return err
	}); err != nil {
		t.Fatalf("start sessions: %v", err)
	}
	created := time.Since(start)
	if online, _ := rdb.SCard(ctx, onlineKey).Result(); online != users {
		t.Fatalf("online users after the logins: got %d, want %d", online, users)
	}

	listenerID, _ := pubsubClient(t, rdb)
	reconnectsBefore := metric(t, n, "presenced_listener_reconnects_total")
	eventsBefore := metric(t, n, "presenced_listener_events_total")
	memBefore := usedMemory(t, rdb)
	_, _, _ = rss(n.pid())

	refreshStart := time.Now()
	for i := 0; i < sessions; i += redisstore.MaxBatch {
		res, err := store.TouchSessions(ctx, refs[i:min(i+redisstore.MaxBatch, sessions)])
		if err != nil || res.Refreshed != min(redisstore.MaxBatch, sessions-i) {
			t.Fatalf("refresh batch %d: %+v %v", i, res, err)
		}
	}
	refreshed := time.Now()

	// Watch the listener's connection while the keys expire.
	var maxOmem atomic.Int64
	var lost atomic.Bool
	stopWatch := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			id, omem := pubsubClient(t, rdb)
			if id != listenerID {
				lost.Store(true)
			}
			if omem > maxOmem.Load() {
				maxOmem.Store(omem)
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	limit := refreshed.Add(floodBound)
	ok := waitFor(time.Until(limit)+time.Second, func() bool {
		online, err := rdb.SCard(ctx, onlineKey).Result()
		return err == nil && online == 0
	})
	settled := time.Now()
	if !ok {
		online, _ := rdb.SCard(ctx, onlineKey).Result()
		t.Fatalf("%d users still online %v after the refresh (bound %v)", online, time.Since(refreshed), floodBound)
	}

	// Every user exactly one offline transition, by expiry, in time, with
	// last_seen = the refresh.
	trs, _ := readTransitions(t, rdb)
	offline := 0
	var maxLag time.Duration
	var lags []time.Duration
	for i, id := range ids {
		list := trs[id]
		on, off := checkAlternation(t, fmt.Sprintf("flood%d", i), list, "offline")
		if on != 1 || off != 1 {
			continue
		}
		tr := list[1]
		offline++
		lag := tr.at.Sub(tr.lastSeen)
		maxLag = max(maxLag, lag)
		lags = append(lags, lag-floodTTL)
		if tr.reason != "expired" || lag > floodBound || tr.lastSeen.Before(refreshStart.Truncate(time.Millisecond)) || tr.lastSeen.After(refreshed) {
			t.Errorf("flood%d: %v, want expired with last_seen in the refresh and within %v", i, tr, floodBound)
		}
	}
	if left, _ := rdb.ZCard(ctx, deadlinesKey).Result(); left != 0 {
		t.Errorf("%d sessions left in the deadline index", left)
	}

	// The listener drains the flood: every expired key's event is read,
	// none dropped.
	var events float64
	if !waitFor(20*time.Second, func() bool {
		events = metric(t, n, "presenced_listener_events_total") - eventsBefore
		return events >= sessions
	}) {
		t.Errorf("listener received %.0f of %d expiry events", events, sessions)
	}
	drained := time.Now()
	close(stopWatch)
	wg.Wait()
	reconnects := metric(t, n, "presenced_listener_reconnects_total") - reconnectsBefore
	if lost.Load() || reconnects != 0 {
		t.Errorf("listener disconnected during the flood (client gone: %v, reconnects: %v)", lost.Load(), reconnects)
	}
	swept := metric(t, n, "presenced_swept_sessions_total")
	t.Logf("offline after the deadline: p50 %v p90 %v p99 %v; %.0f sessions settled by the sweep, the rest by the listener", pct(lags, 50), pct(lags, 90), pct(lags, 99), swept)
	_, peak, err := rss(n.pid())
	if err != nil {
		t.Fatal(err)
	}
	// Bounded: nothing per session is kept in the process.
	if peak > 256<<20 {
		t.Errorf("presenced peak RSS %d MiB, want under 256 MiB", peak>>20)
	}
	t.Logf("FIGURES flood: %d sessions of %d users created in %v, refreshed in %v; all %d offline (one transition each) %v after the refresh (slowest %v after last_seen, bound %v); listener received all %.0f expiry events %v after the refresh, never disconnected (peak output buffer %d KiB), presenced peak RSS %d MiB, Redis memory %d MiB before, %d MiB after",
		sessions, users, created.Round(time.Millisecond), refreshed.Sub(refreshStart).Round(time.Millisecond), offline, settled.Sub(refreshed).Round(time.Millisecond),
		maxLag.Round(time.Millisecond), floodBound, events, drained.Sub(refreshed).Round(time.Millisecond), maxOmem.Load()>>10, peak>>20, memBefore>>20, usedMemory(t, rdb)>>20)
}

// newStore is a store on rdb with the service's key layout and the given TTL.
func newStore(t *testing.T, rdb redis.UniversalClient, ttl time.Duration) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(rdb, redisstore.Config{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fixedHash is a password hash for users the scenarios create directly in
// the store (their password is never checked).
func fixedHash(t *testing.T) string {
	t.Helper()
	return "$2a$04$" + strings.Repeat("x", 53)
}

// pubsubClient returns the ID and output buffer size (omem) of the one
// client subscribed to expiry events (0, 0 when there is none).
func pubsubClient(t *testing.T, rdb *redis.Client) (id, omem int64) {
	t.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Errorf("CLIENT LIST: %v", err)
		return 0, 0
	}
	for _, line := range strings.Split(list, "\n") {
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["sub"] == "1" {
			id, _ = strconv.ParseInt(f["id"], 10, 64)
			omem, _ = strconv.ParseInt(f["omem"], 10, 64)
			return id, omem
		}
	}
	return 0, 0
}

// usedMemory is Redis's used_memory.
func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	return int64(infoInt(info, "used_memory"))
}

// parallel calls fn(0..n-1) on workers goroutines and returns the first
// error.
func parallel(workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
