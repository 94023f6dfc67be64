package redisstore

// Resharding, a new master and a failover on a local Redis Cluster, under
// light load: nothing is lost and nothing is doubled.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redistest"
)

// load drives users during a cluster change: heartbeaters keep their
// sessions alive, togglers log in and out again and again (each successful
// call must make exactly one transition), and every error is classified.
type load struct {
	st        []*Store // the instances; calls alternate between them
	heartbeat []presence.SessionRef
	togglers  []int64

	mu          sync.Mutex
	lastOK      map[int64]time.Time     // heartbeater: last successful heartbeat
	maxGap      map[int64]time.Duration // heartbeater: longest time between two successes
	logins      map[int64]int           // toggler: successful logins
	logouts     map[int64]int           // toggler: successful logouts
	unavailable atomic.Int64            // calls refused as ErrUnavailable (retried)
	revoked     atomic.Int64            // heartbeats refused as revoked: must stay 0
	failures    []string                // any other error: must stay empty
}

func newLoad(st []*Store) *load {
	return &load{st: st, lastOK: map[int64]time.Time{}, maxGap: map[int64]time.Duration{}, logins: map[int64]int{}, logouts: map[int64]int{}}
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 20 {
		l.failures = append(l.failures, fmt.Sprintf(format, args...))
	}
}

// run drives the load until ctx ends.
func (l *load) run(ctx context.Context, every time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	// One goroutine per heartbeating user, as each client heartbeats on its
	// own: a call stuck on a master that died holds up only its user.
	for i, ref := range l.heartbeat {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; ctx.Err() == nil; round++ {
				start := time.Now()
				st := l.st[(i+round)%len(l.st)]
				cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := st.Touch(cctx, ref)
				cancel()
				now := time.Now()
				switch {
				case err == nil:
					l.mu.Lock()
					if last, ok := l.lastOK[ref.UserID]; ok && now.Sub(last) > l.maxGap[ref.UserID] {
						l.maxGap[ref.UserID] = now.Sub(last)
					}
					l.lastOK[ref.UserID] = now
					l.mu.Unlock()
				case errors.Is(err, presence.ErrUnavailable):
					l.unavailable.Add(1)
				case errors.Is(err, presence.ErrSessionRevoked):
					l.revoked.Add(1)
				default:
					l.fail("heartbeat of user %d: %v", ref.UserID, err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(every - time.Since(start)):
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // logins and logouts, retried while refused
		defer wg.Done()
		refs := map[int64]presence.SessionRef{}
		for i := 0; ctx.Err() == nil; i++ {
			id := l.togglers[i%len(l.togglers)]
			st := l.st[i%len(l.st)]
			cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if ref, ok := refs[id]; ok {
				err := st.EndSession(cctx, ref, presence.ReasonLogout)
				switch {
				case err == nil:
					delete(refs, id)
					l.mu.Lock()
					l.logouts[id]++
					l.mu.Unlock()
				case errors.Is(err, presence.ErrUnavailable):
					l.unavailable.Add(1)
				default:
					l.fail("logout of user %d: %v", id, err)
				}
			} else {
				sess, u, err := st.StartSession(cctx, id, presence.SessionStart{RefreshID: "r", RefreshExpires: time.Now().Add(time.Hour)})
				switch {
				case err == nil:
					refs[id] = presence.SessionRef{UserID: id, SessionID: sess.ID, TokenVersion: u.TokenVersion}
					l.mu.Lock()
					l.logins[id]++
					l.mu.Unlock()
				case errors.Is(err, presence.ErrUnavailable):
					l.unavailable.Add(1)
				default:
					l.fail("login of user %d: %v", id, err)
				}
			}
			cancel()
			time.Sleep(5 * time.Millisecond)
		}
		// Leave every toggler logged out, so their history is complete.
		for id, ref := range refs {
			for {
				err := l.st[0].EndSession(context.Background(), ref, presence.ReasonLogout)
				if err == nil {
					l.mu.Lock()
					l.logouts[id]++
					l.mu.Unlock()
					break
				}
				if !errors.Is(err, presence.ErrUnavailable) {
					l.fail("final logout of user %d: %v", id, err)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	return &wg
}

// check verifies the load's outcome: no failure, no revoked session, and
// one transition per successful toggle, one online transition and no
// offline one per heartbeater.
func (l *load) check(t *testing.T, rdb redis.UniversalClient, st *Store) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.failures {
		t.Error(f)
	}
	if n := l.revoked.Load(); n != 0 {
		t.Errorf("%d heartbeats were refused as revoked: sessions were lost", n)
	}
	counts := streamCounts(t, rdb, st)
	toggles := 0
	for _, id := range l.togglers {
		on, off := counts[fmt.Sprintf("%d/online", id)], counts[fmt.Sprintf("%d/offline", id)]
		if on != l.logins[id] || off != l.logouts[id] {
			t.Errorf("user %d: %d logins and %d logouts made %d online and %d offline transitions", id, l.logins[id], l.logouts[id], on, off)
		}
		toggles += l.logins[id] + l.logouts[id]
	}
	if toggles < 4*len(l.togglers) {
		t.Errorf("only %d logins and logouts went through", toggles)
	}
	for _, ref := range l.heartbeat {
		on, off := counts[fmt.Sprintf("%d/online", ref.UserID)], counts[fmt.Sprintf("%d/offline", ref.UserID)]
		if on != 1 || off != 0 {
			t.Errorf("heartbeating user %d: %d online and %d offline transitions, want 1 and 0", ref.UserID, on, off)
		}
	}
	checkInvariants(t, rdb, st)
}

// checkInvariants checks, shard by shard, that the online set holds exactly
// the users whose hash says online or away, and that every deadline entry
// belongs to an existing session.
func checkInvariants(t *testing.T, rdb redis.UniversalClient, st *Store) {
	t.Helper()
	ctx := context.Background()
	for sh := int64(0); sh < st.k.shards; sh++ {
		names, err := rdb.HGetAll(ctx, st.k.names(sh)).Result()
		if err != nil {
			t.Fatal(err)
		}
		members, err := rdb.SMembers(ctx, st.k.online(sh)).Result()
		if err != nil {
			t.Fatal(err)
		}
		inSet := map[string]bool{}
		for _, m := range members {
			inSet[m] = true
		}
		for _, id := range names {
			var uid int64
			fmt.Sscan(id, &uid)
			status, _ := rdb.HGet(ctx, st.k.user(uid), "online_status").Result()
			if present := status == "online" || status == "away"; present != inSet[id] {
				t.Errorf("user %s is %q but in the online set: %v", id, status, inSet[id])
			}
		}
		dl, err := rdb.ZRange(ctx, st.k.deadlines(sh), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range dl {
			var uid int64
			var sid string
			if _, err := fmt.Sscanf(m, "%d:%s", &uid, &sid); err != nil {
				t.Errorf("deadline entry %q", m)
				continue
			}
			if ok, _ := rdb.HExists(ctx, st.k.sessions(uid), sid).Result(); !ok {
				t.Errorf("deadline entry %q has no session", m)
			}
		}
	}
}

// usersInShards creates n active users whose shards satisfy keep.
func usersInShards(t *testing.T, st *Store, prefix string, n int, keep func(shard int64) bool) []presence.User {
	t.Helper()
	var out []presence.User
	for i := 0; len(out) < n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		if !keep(st.k.shardOfName(presence.NormalizeUsername(name))) {
			continue
		}
		out = append(out, newUser(t, st, name))
	}
	return out
}

// shardSlots maps each shard to its slot.
func shardSlots(t *testing.T, cc *redis.ClusterClient, st *Store) map[int64]int {
	t.Helper()
	out := map[int64]int{}
	for sh := int64(0); sh < st.k.shards; sh++ {
		slot, err := cc.ClusterKeySlot(context.Background(), st.k.deadlines(sh)).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[sh] = int(slot)
	}
	return out
}

func TestClusterReshardUnderLoad(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	cc, cc2 := newClusterClient(t, c), newClusterClient(t, c)
	const ttl = 3 * time.Second
	opts := instanceOpts{ttl: ttl, sweepInterval: 100 * time.Millisecond, listener: true, shards: clusterShards, topology: 300 * time.Millisecond}
	a, b := startInstance(t, cc, opts), startInstance(t, cc2, opts)
	ctx := context.Background()

	// The slots that will move: the lowest ones of the first master, as
	// many as it takes to carry two shards.
	slots := shardSlots(t, cc, a.store)
	masters := c.Masters(t)
	from, to := masters[0], masters[1]
	fromSlots := c.SlotsOf(t, from)
	var moving []int64
	n := 0
	for i, sl := range fromSlots {
		for sh, s := range slots {
			if s == sl {
				moving = append(moving, sh)
			}
		}
		if len(moving) >= 2 {
			n = i + 1
			break
		}
	}
	if n == 0 {
		t.Fatalf("master %s carries fewer than 2 of the %d shards", from.Addr, clusterShards)
	}
	all := func(int64) bool { return true }
	onMoving := func(sh int64) bool { return slices.Contains(moving, sh) }

	// Heartbeaters and togglers on every shard, half of each on the shards
	// that move; expiring users log in once and never heartbeat again.
	ld := newLoad([]*Store{a.store, b.store})
	for i, u := range append(usersInShards(t, a.store, "hbm", 30, onMoving), usersInShards(t, a.store, "hb", 60, all)...) {
		ld.heartbeat = append(ld.heartbeat, loginAt(t, []*Store{a.store, b.store}[i%2], u))
	}
	for _, u := range append(usersInShards(t, a.store, "tgm", 10, onMoving), usersInShards(t, a.store, "tg", 10, all)...) {
		ld.togglers = append(ld.togglers, u.ID)
	}
	var expiring []int64
	for _, u := range append(usersInShards(t, a.store, "exm", 15, onMoving), usersInShards(t, a.store, "ex", 15, all)...) {
		loginAt(t, b.store, u)
		expiring = append(expiring, u.ID)
	}
	// Idle accounts in the moving shards: keys that make their slots take a
	// while to move, so that the load meets them half-moved.
	usersInShards(t, a.store, "idle", 600, onMoving)

	lctx, stop := context.WithCancel(ctx)
	wg := ld.run(lctx, 300*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	// One key per MIGRATE: the shards' slots stay half-moved for longer,
	// so the load meets them mid-migration.
	c.Reshard(t, from, to, n, 1)
	t.Logf("resharded %d slots (shards %v) from %s to %s in %s under load", n, moving, from.Addr, to.Addr, time.Since(start).Round(time.Millisecond))
	for _, sh := range moving {
		if got := c.MasterOf(t, slots[sh]); got != to {
			t.Fatalf("shard %d's slot %d is served by %s after the reshard, want %s", sh, slots[sh], got.Addr, to.Addr)
		}
	}
	// Let the expiring users go offline while the load goes on.
	time.Sleep(ttl + time.Second)
	stop()
	wg.Wait()

	waitOffline(t, a.store, expiring, 5*time.Second)
	counts := streamCounts(t, cc, a.store)
	for _, id := range expiring {
		if on, off := counts[fmt.Sprintf("%d/online", id)], counts[fmt.Sprintf("%d/offline", id)]; on != 1 || off != 1 {
			t.Errorf("expiring user %d: %d online and %d offline transitions, want 1 each", id, on, off)
		}
	}
	ld.check(t, cc, a.store)
	sts, err := a.store.Statuses(ctx, func() []int64 {
		var ids []int64
		for _, r := range ld.heartbeat {
			ids = append(ids, r.UserID)
		}
		return ids
	}())
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range sts {
		if s.OnlineStatus != presence.Online {
			t.Errorf("heartbeating user %d is %s after the reshard", id, s.OnlineStatus)
		}
	}
	var worst time.Duration
	for _, g := range ld.maxGap {
		worst = max(worst, g)
	}
	// How often a script met a half-moved slot: the guard's TRYAGAIN
	// replies (retried by the client; only calls still refused after the
	// retries reach the caller as ErrUnavailable).
	tryagain := 0
	for _, m := range c.Masters(t) {
		stats, err := m.Client(t).Info(ctx, "errorstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(stats, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "errorstat_TRYAGAIN:count="); ok {
				n, _ := strconv.Atoi(v)
				tryagain += n
			}
		}
	}
	t.Logf("scripts refused by the migration guard (TRYAGAIN, retried): %d; calls still refused after the retries (503): %d; longest gap between two heartbeats of a user: %s (round period 300ms)",
		tryagain, ld.unavailable.Load(), worst.Round(time.Millisecond))
}

func TestClusterListenerFollowsANewMaster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	cc := newClusterClient(t, c)
	// No sweeper: users go offline only if the listener hears the new
	// master.
	in := startInstance(t, cc, instanceOpts{ttl: time.Second, listener: true, shards: clusterShards, topology: 200 * time.Millisecond})
	slots := shardSlots(t, cc, in.store)

	added := c.AddMaster(t, redistest.WithoutNotifications())
	from := c.Masters(t)[0]
	fromSlots := c.SlotsOf(t, from)
	// Enough of the first master's lowest slots to carry a shard.
	var moving []int64
	n := 0
	for i, sl := range fromSlots {
		for sh, s := range slots {
			if s == sl {
				moving = append(moving, sh)
				n = i + 1
			}
		}
		if n > 0 {
			break
		}
	}
	c.Reshard(t, from, added, n, 0)
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(in.listener.Masters(), added.Addr) {
		if time.Now().After(deadline) {
			t.Fatalf("listener subscribed to %v, not to the new master %s", in.listener.Masters(), added.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The listener turned notifications on there (the node started without).
	ev, err := added.Client(t).ConfigGet(context.Background(), "notify-keyspace-events").Result()
	if err != nil || ev["notify-keyspace-events"] == "" {
		t.Fatalf("notify-keyspace-events on the new master: %v %v, want Ex", ev, err)
	}
	users := usersInShards(t, in.store, "new", 10, func(sh int64) bool { return slices.Contains(moving, sh) })
	var ids []int64
	for _, u := range users {
		loginAt(t, in.store, u)
		ids = append(ids, u.ID)
	}
	waitOffline(t, in.store, ids, 10*time.Second)
	t.Logf("users of shards %v, moved to the new master %s, went offline through its expiry events", moving, added.Addr)
}

func TestClusterFailover(t *testing.T) {
	// As recommended for presenced (README, Scaling): with the default
	// (yes) every master refuses commands from the moment the failed master
	// is marked down until its replica takes over, about a second here.
	c := redistest.StartCluster(t, 3, 1, redistest.WithArgs("--cluster-require-full-coverage", "no"))
	cc, cc2 := newClusterClient(t, c), newClusterClient(t, c)
	const ttl = 8 * time.Second
	opts := instanceOpts{ttl: ttl, sweepInterval: 200 * time.Millisecond, listener: true, shards: clusterShards, topology: 500 * time.Millisecond}
	a, b := startInstance(t, cc, opts), startInstance(t, cc2, opts)
	ctx := context.Background()
	slots := shardSlots(t, cc, a.store)
	victim := c.Masters(t)[0]
	victimSlots := c.SlotsOf(t, victim)
	onVictim := func(sh int64) bool { _, ok := slices.BinarySearch(victimSlots, slots[sh]); return ok }
	elsewhere := func(sh int64) bool { return !onVictim(sh) }

	ld := newLoad([]*Store{a.store, b.store})
	hbVictim := usersInShards(t, a.store, "hbv", 30, onVictim)
	hbOther := usersInShards(t, a.store, "hbo", 30, elsewhere)
	for i, u := range append(slices.Clone(hbVictim), hbOther...) {
		ld.heartbeat = append(ld.heartbeat, loginAt(t, []*Store{a.store, b.store}[i%2], u))
	}
	for _, u := range append(usersInShards(t, a.store, "tgv", 5, onVictim), usersInShards(t, a.store, "tgo", 5, elsewhere)...) {
		ld.togglers = append(ld.togglers, u.ID)
	}
	var expiring []int64
	loggedIn := map[int64]time.Time{}
	for _, u := range append(usersInShards(t, a.store, "exv", 10, onVictim), usersInShards(t, a.store, "exo", 10, elsewhere)...) {
		loggedIn[u.ID] = time.Now()
		loginAt(t, b.store, u)
		expiring = append(expiring, u.ID)
	}
	time.Sleep(100 * time.Millisecond) // replication is asynchronous

	lctx, stop := context.WithCancel(ctx)
	wg := ld.run(lctx, 200*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	victim.Kill()
	took := c.WaitFailover(t, victim)
	var promoted *redistest.Server
	for _, m := range c.Masters(t) {
		if slices.Contains(c.SlotsOf(t, m), victimSlots[0]) {
			promoted = m
		}
	}
	// The listener subscribes to the promoted replica.
	for !slices.Contains(a.listener.Masters(), promoted.Addr) || !slices.Contains(b.listener.Masters(), promoted.Addr) {
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("listeners on %v and %v, not on the promoted %s", a.listener.Masters(), b.listener.Masters(), promoted.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	subscribed := time.Since(killed)
	// Expiring users go offline on time, on every master.
	seen := waitOffline(t, a.store, expiring, 2*ttl)
	stop()
	wg.Wait()

	var late, lateVictim time.Duration
	for id, at := range seen {
		late = max(late, at.Sub(loggedIn[id])-ttl)
		if onVictim(a.store.k.shardOfID(id)) {
			lateVictim = max(lateVictim, at.Sub(loggedIn[id])-ttl)
		}
	}
	gap := func(users []presence.User) time.Duration {
		var worst time.Duration
		ld.mu.Lock()
		defer ld.mu.Unlock()
		for _, u := range users {
			worst = max(worst, ld.maxGap[u.ID])
		}
		return worst
	}
	victimGap, otherGap := gap(hbVictim), gap(hbOther)
	t.Logf("failover: replica promoted %s after the kill (node timeout %s); listeners on it after %s; heartbeats of users on the failed master's shards stopped for at most %s, elsewhere %s; %d calls refused and retried; expiring users offline at most %s after their TTL (%s on the failed master's shards)",
		took.Round(time.Millisecond), redistest.ClusterNodeTimeout, subscribed.Round(time.Millisecond), victimGap.Round(time.Millisecond), otherGap.Round(time.Millisecond), ld.unavailable.Load(), late.Round(time.Millisecond), lateVictim.Round(time.Millisecond))
	// The documented bound: node timeout + election (1-2 s here) + the
	// client's slot map refresh (2 s) + a call stuck on the dead master
	// (up to the 3 s timeout of the heartbeat before).
	if bound := redistest.ClusterNodeTimeout + 6*time.Second; victimGap > bound {
		t.Errorf("users on the failed master's shards went %s without a heartbeat, over %s", victimGap, bound)
	}
	if otherGap > time.Second {
		t.Errorf("users on healthy masters went %s without a heartbeat", otherGap)
	}
	if late > 2*time.Second {
		t.Errorf("an expiring user went offline %s after its TTL", late)
	}
	counts := streamCounts(t, cc, a.store)
	for _, id := range expiring {
		if on, off := counts[fmt.Sprintf("%d/online", id)], counts[fmt.Sprintf("%d/offline", id)]; on != 1 || off != 1 {
			t.Errorf("expiring user %d: %d online and %d offline transitions, want 1 each", id, on, off)
		}
	}
	ld.check(t, cc, a.store)
}
