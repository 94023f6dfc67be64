package redisstore

// Integration tests against a real redis-server (started per test on a free
// port by internal/redistest): keyspace notifications, real TTLs, Lua and
// SCAN behave here as in production, which miniredis cannot show.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redistest"
)

// instance is one presenced replica's Redis side: a store, its listener and
// a sweeper loop, stoppable like a process.
type instance struct {
	store    *Store
	listener *Listener // nil without one
	cancel   context.CancelFunc
	done     sync.WaitGroup
	// events counts the expiry events the listener handled.
	events atomic.Int64
}

type instanceOpts struct {
	ttl           time.Duration
	sweepInterval time.Duration // 0: no sweeper
	listener      bool
	shards        int
	// topology is the listener's TopologyInterval on a cluster (0: its
	// default).
	topology time.Duration
}

func startInstance(t *testing.T, rdb redis.UniversalClient, o instanceOpts) *instance {
	t.Helper()
	st, err := New(rdb, Config{TTL: o.ttl, Shards: o.shards})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{store: st, cancel: cancel}
	if o.listener {
		connected := make(chan struct{}, 1)
		l := st.NewListener(ListenerConfig{OnConnect: func(bool) {
			select {
			case connected <- struct{}{}:
			default:
			}
		}, OnEvent: func(n int) { in.events.Add(int64(n)) }, TopologyInterval: o.topology})
		in.listener = l
		in.done.Add(1)
		go func() { defer in.done.Done(); _ = l.Run(ctx) }()
		select {
		case <-connected:
		case <-time.After(5 * time.Second):
			t.Fatal("listener did not subscribe")
		}
	}
	if o.sweepInterval > 0 {
		in.done.Add(1)
		go func() {
			defer in.done.Done()
			tk := time.NewTicker(o.sweepInterval)
			defer tk.Stop()
			for {
				for sh := 0; sh < st.Shards(); sh++ {
					for {
						r, err := st.SweepShard(ctx, sh, 1000)
						if err != nil || r.Examined < 1000 {
							break
						}
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
				}
			}
		}()
	}
	t.Cleanup(in.stop)
	return in
}

func (in *instance) stop() { in.cancel(); in.done.Wait() }

func newUser(t *testing.T, st *Store, name string) presence.User {
	t.Helper()
	u, err := st.CreateUser(context.Background(), presence.NewUser{Username: name, Status: presence.StatusActive, PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func loginAt(t *testing.T, st *Store, u presence.User) presence.SessionRef {
	t.Helper()
	s, got, err := st.StartSession(context.Background(), u.ID, presence.SessionStart{UserAgent: "it", RefreshID: "r", RefreshExpires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return presence.SessionRef{UserID: u.ID, SessionID: s.ID, TokenVersion: got.TokenVersion}
}

// waitOffline polls until every user is offline and returns when each went
// offline as seen by the poller.
func waitOffline(t *testing.T, st *Store, ids []int64, limit time.Duration) map[int64]time.Time {
	t.Helper()
	seen := make(map[int64]time.Time, len(ids))
	deadline := time.Now().Add(limit)
	for len(seen) < len(ids) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d users still online after %s", len(ids)-len(seen), len(ids), limit)
		}
		for start := 0; start < len(ids); start += 1000 {
			chunk := ids[start:min(start+1000, len(ids))]
			sts, err := st.Statuses(context.Background(), chunk)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			for id, s := range sts {
				if _, ok := seen[id]; !ok && s.OnlineStatus == presence.Offline {
					seen[id] = now
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return seen
}

// streamCounts counts the transitions in every shard stream per user and status.
func streamCounts(t *testing.T, rdb redis.UniversalClient, st *Store) map[string]int {
	t.Helper()
	out := map[string]int{}
	for sh := 0; sh < st.Shards(); sh++ {
		msgs, err := rdb.XRange(context.Background(), st.k.events(int64(sh)), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			out[fmt.Sprintf("%v/%v", m.Values["user_id"], m.Values["online_status"])]++
		}
	}
	return out
}

func TestIntegrationExpiryThroughKeyspaceEvents(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	// No sweeper: only the listener can take the user offline.
	in := startInstance(t, rdb, instanceOpts{ttl: time.Second, listener: true})
	u := newUser(t, in.store, "alice")
	ref := loginAt(t, in.store, u)
	if _, err := in.store.Touch(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	last := time.Now()
	got := waitOffline(t, in.store, []int64{u.ID}, 10*time.Second)
	lag := got[u.ID].Sub(last.Add(time.Second))
	t.Logf("offline through keyspace event %v after the deadline", lag)
	if lag > 1500*time.Millisecond {
		t.Fatalf("offline %v after the deadline, want ≤ 1.5s through the event", lag)
	}
	user, _ := in.store.User(context.Background(), u.ID)
	if d := user.LastSeen.Sub(last); d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Fatalf("last_seen %v, want the last heartbeat %v", user.LastSeen, last)
	}
}

func TestIntegrationExpiryBySweepWithoutNotifications(t *testing.T) {
	srv := redistest.Start(t, redistest.WithoutNotifications())
	rdb := srv.Client(t)
	const ttl, interval = time.Second, 200 * time.Millisecond
	in := startInstance(t, rdb, instanceOpts{ttl: ttl, sweepInterval: interval, listener: true})
	var ids []int64
	lastHB := map[int64]time.Time{}
	for i := 0; i < 50; i++ {
		u := newUser(t, in.store, fmt.Sprintf("u%d", i))
		loginAt(t, in.store, u)
		ids = append(ids, u.ID)
		lastHB[u.ID] = time.Now()
	}
	got := waitOffline(t, in.store, ids, 10*time.Second)
	var worst time.Duration
	for id, at := range got {
		if lag := at.Sub(lastHB[id].Add(ttl)); lag > worst {
			worst = lag
		}
	}
	t.Logf("sweep-only: worst offline lag %v after the deadline (bound %v)", worst, interval+time.Second)
	if worst > interval+time.Second {
		t.Fatalf("worst lag %v exceeds TTL + sweep interval + 1s", worst)
	}
	if ev := streamCounts(t, rdb, in.store); len(ev) != 2*len(ids) {
		t.Fatalf("stream has %d user/status pairs, want %d", len(ev), 2*len(ids))
	}
}

func TestIntegrationRestartWhileSessionsExpire(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	const ttl = time.Second
	a := startInstance(t, rdb, instanceOpts{ttl: ttl, sweepInterval: 100 * time.Millisecond, listener: true})
	var ids []int64
	for i := 0; i < 200; i++ {
		u := newUser(t, a.store, fmt.Sprintf("u%d", i))
		loginAt(t, a.store, u)
		ids = append(ids, u.ID)
	}
	loggedIn := time.Now()
	a.stop() // the process dies: no listener, no sweeper while the sessions expire
	time.Sleep(ttl + 500*time.Millisecond)
	b := startInstance(t, rdb, instanceOpts{ttl: ttl, sweepInterval: 100 * time.Millisecond, listener: true})
	waitOffline(t, b.store, ids, 5*time.Second)
	t.Logf("all %d users offline %v after their deadline (restart gap included)", len(ids), time.Since(loggedIn.Add(ttl)))
	counts := streamCounts(t, rdb, b.store)
	for _, id := range ids {
		if counts[fmt.Sprintf("%d/online", id)] != 1 || counts[fmt.Sprintf("%d/offline", id)] != 1 {
			t.Fatalf("user %d: %d online and %d offline transitions, want 1 each", id, counts[fmt.Sprintf("%d/online", id)], counts[fmt.Sprintf("%d/offline", id)])
		}
	}
	u, _ := b.store.User(context.Background(), ids[0])
	if d := u.LastSeen.Sub(loggedIn); d > 100*time.Millisecond || d < -time.Second {
		t.Fatalf("last_seen %v, want the login time ~%v", u.LastSeen, loggedIn)
	}
}

func TestIntegrationTwoInstancesOneTransitionPerChange(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--hz", "50"))
	rdb1, rdb2 := srv.Client(t), srv.Client(t)
	const ttl = time.Second
	a := startInstance(t, rdb1, instanceOpts{ttl: ttl, sweepInterval: 50 * time.Millisecond, listener: true})
	b := startInstance(t, rdb2, instanceOpts{ttl: ttl, sweepInterval: 50 * time.Millisecond, listener: true})
	const users, rounds = 100, 3
	var ids []int64
	refs := map[int64]presence.SessionRef{}
	for i := 0; i < users; i++ {
		u := newUser(t, a.store, fmt.Sprintf("u%d", i))
		ids = append(ids, u.ID)
	}
	for r := 0; r < rounds; r++ {
		for i, id := range ids {
			st := a.store
			if i%2 == 1 {
				st = b.store
			}
			if r == 0 {
				refs[id] = loginAt(t, st, presence.User{ID: id})
			} else if _, err := st.Touch(context.Background(), refs[id]); err != nil {
				// The session expired between rounds: the heartbeat revives it.
				t.Fatal(err)
			}
		}
		waitOffline(t, a.store, ids, 5*time.Second)
	}
	counts := streamCounts(t, rdb1, a.store)
	for _, id := range ids {
		on, off := counts[fmt.Sprintf("%d/online", id)], counts[fmt.Sprintf("%d/offline", id)]
		if on != rounds || off != rounds {
			t.Fatalf("user %d: %d online / %d offline transitions, want %d each", id, on, off, rounds)
		}
	}
}

func TestIntegrationHeartbeatRacingLogout(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	in := startInstance(t, rdb, instanceOpts{ttl: 5 * time.Second})
	ctx := context.Background()
	for round := 0; round < 50; round++ {
		u := newUser(t, in.store, fmt.Sprintf("racer%d", round))
		ref := loginAt(t, in.store, u)
		var wg sync.WaitGroup
		var loggedOut atomic.Bool
		var revivedAfter atomic.Int32
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					was := loggedOut.Load()
					_, err := in.store.Touch(ctx, ref)
					if was && err == nil {
						revivedAfter.Add(1)
					}
				}
			}()
		}
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		if err := in.store.EndSession(ctx, ref, presence.ReasonLogout); err != nil {
			t.Fatal(err)
		}
		loggedOut.Store(true)
		wg.Wait()
		if n := revivedAfter.Load(); n != 0 {
			t.Fatalf("round %d: %d heartbeats succeeded after logout", round, n)
		}
		if n, _ := rdb.Exists(ctx, in.store.k.live(u.ID, ref.SessionID)).Result(); n != 0 {
			t.Fatalf("round %d: live key exists after logout", round)
		}
		if _, err := rdb.ZScore(ctx, in.store.k.deadlines(0), member(u.ID, ref.SessionID)).Result(); err != redis.Nil {
			t.Fatalf("round %d: deadline entry survived logout (err %v)", round, err)
		}
		got, _ := in.store.User(ctx, u.ID)
		if got.OnlineStatus != presence.Offline {
			t.Fatalf("round %d: user %s after logout", round, got.OnlineStatus)
		}
	}
}

func TestIntegrationScanPagingWithConcurrentWrites(t *testing.T) {
	for _, shards := range []int{1, 3} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client(t)
			in := startInstance(t, rdb, instanceOpts{ttl: time.Minute, shards: shards})
			ctx := context.Background()
			// 4050 users sit just under the hash table's growth point (4096), so the
			// users created during the pass make Redis rehash mid-iteration.
			const initial = 4050
			before := map[int64]bool{}
			pipeUsers(t, in.store, 0, initial, func(u presence.User) { before[u.ID] = true })

			stop := make(chan struct{})
			var writers sync.WaitGroup
			writers.Add(2)
			go func() { // new users keep arriving
				defer writers.Done()
				for i := initial; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := in.store.CreateUser(ctx, presence.NewUser{Username: fmt.Sprintf("late%d", i), Status: presence.StatusActive, PasswordHash: "x"}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			go func() { // existing users change status
				defer writers.Done()
				ids := make([]int64, 0, len(before))
				for id := range before {
					ids = append(ids, id)
				}
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := ids[i%len(ids)]
					ref := loginAt(t, in.store, presence.User{ID: id})
					if i%2 == 0 {
						_ = in.store.EndSession(ctx, ref, presence.ReasonLogout)
					}
				}
			}()

			seen := map[int64]int{}
			cursor := ""
			pages := 0
			for {
				p, err := in.store.ListUsers(ctx, presence.ListQuery{PerPage: 47, Cursor: cursor})
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if p.Next != "" && len(p.Users) != 47 {
					t.Fatalf("page %d has %d users, want 47", pages, len(p.Users))
				}
				for _, u := range p.Users {
					seen[u.ID]++
				}
				if p.Next == "" {
					break
				}
				cursor = p.Next
				time.Sleep(2 * time.Millisecond) // an admin reads pages slower than Redis serves them
			}
			close(stop)
			writers.Wait()
			for id := range before {
				if seen[id] != 1 {
					t.Fatalf("user %d seen %d times in a full pass, want 1", id, seen[id])
				}
			}
			for id, n := range seen {
				if n != 1 {
					t.Fatalf("user %d (created during the pass) seen %d times", id, n)
				}
			}
			t.Logf("shards=%d: %d pages, %d users (%d created during the pass)", shards, pages, len(seen), len(seen)-len(before))
		})
	}
}

// pipeUsers creates users [from, to) quickly.
func pipeUsers(t *testing.T, st *Store, from, to int, each func(presence.User)) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := from; i < to; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			u, err := st.CreateUser(context.Background(), presence.NewUser{Username: fmt.Sprintf("user%05d", i), Status: presence.StatusActive, PasswordHash: "x"})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			each(u)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
}
