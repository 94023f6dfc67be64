package redisstore

// Tests on a local Redis Cluster of redis-server processes
// (redistest.StartCluster): every script runs on the master of its shard's
// slot, reads of "all" fan out per master, the listener subscribes on every
// master and follows failovers and new masters, and resharding under load
// loses nothing.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redistest"
)

// clusterShards is the shard count of the cluster tests: several shards per
// master, as recommended for production.
const clusterShards = 16

// newClusterClient is a cluster client with presenced's settings (see
// config.ClusterOptions).
func newClusterClient(t *testing.T, c *redistest.Cluster) *redis.ClusterClient {
	t.Helper()
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, MaxRedirects: 8, ClusterStateReloadInterval: 2 * time.Second})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	cc := newClusterClient(t, c)
	ctx := context.Background()

	t.Run("same results as one Redis", func(t *testing.T) {
		single := runScenario(t, redistest.Start(t).Client(t), "scn:")
		clustered := runScenario(t, cc, "scn:")
		if len(single) < 100 {
			t.Fatalf("scenario recorded %d steps, want a full run", len(single))
		}
		if diff := diffLines(single, clustered); diff != "" {
			t.Fatalf("the cluster differs from one Redis (- one Redis, + cluster):\n%s", diff)
		}
		// Every master ran scripts, and none refused a command.
		for _, m := range c.Masters(t) {
			stats, err := m.Client(t).Info(ctx, "commandstats", "errorstats").Result()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(stats, "cmdstat_evalsha:") {
				t.Errorf("master %s ran no script", m.Addr)
			}
			for _, bad := range []string{"errorstat_CROSSSLOT", "errorstat_MOVED", "Script attempted to access"} {
				if strings.Contains(stats, bad) {
					t.Errorf("master %s reports %s:\n%s", m.Addr, bad, stats)
				}
			}
		}
	})

	t.Run("every shard lives in one slot and the shards spread over the masters", func(t *testing.T) {
		st, err := New(cc, Config{Prefix: "spread:", Shards: clusterShards})
		if err != nil {
			t.Fatal(err)
		}
		perMaster := map[string]int{}
		for sh := int64(0); sh < clusterShards; sh++ {
			slot := -1
			for _, key := range []string{st.k.user(sh + clusterShards), st.k.live(sh, "1"), st.k.deadlines(sh), st.k.online(sh), st.k.events(sh), st.k.names(sh), st.k.seq(sh), st.k.idleScan(sh), st.k.tag(sh) + "probe:a", st.k.tag(sh) + "probe:b"} {
				got, err := cc.ClusterKeySlot(ctx, key).Result()
				if err != nil {
					t.Fatal(err)
				}
				if slot == -1 {
					slot = int(got)
				} else if int(got) != slot {
					t.Fatalf("shard %d: %s is in slot %d, want %d like the rest of the shard", sh, key, got, slot)
				}
			}
			perMaster[c.MasterOf(t, slot).Addr]++
		}
		if len(perMaster) != 3 {
			t.Errorf("16 shards on %d masters (%v), want all 3", len(perMaster), perMaster)
		}
		t.Logf("shards per master: %v", perMaster)
		byMaster, err := st.ShardsByMaster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for addr, shards := range byMaster {
			if len(shards) != perMaster[addr] {
				t.Errorf("ShardsByMaster: %s has %v, want %d shards", addr, shards, perMaster[addr])
			}
		}
		single, err := New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), Config{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := single.ShardsByMaster(ctx); err == nil {
			t.Error("ShardsByMaster on a single server: got no error")
		}
	})

	t.Run("scripts load on every node and recover from NOSCRIPT", func(t *testing.T) {
		st, err := New(cc, Config{Prefix: "noscript:", Shards: clusterShards})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Nodes {
			ok, err := n.Client(t).ScriptExists(ctx, st.sc.login.Hash(), st.sc.expire.Hash(), st.sc.idle.Hash()).Result()
			if err != nil || slices.Contains(ok, false) {
				t.Fatalf("SCRIPT EXISTS on %s after Prepare: %v %v, want every script loaded", n.Addr, ok, err)
			}
		}
		var ids []int64
		for i := range 20 {
			ids = append(ids, newUser(t, st, fmt.Sprintf("ns%d", i)).ID)
		}
		// A master that lost its scripts (restart, SCRIPT FLUSH): EVALSHA
		// answers NOSCRIPT and the store falls back to EVAL, per node.
		for _, n := range c.Nodes {
			if err := n.Client(t).ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range ids {
			loginAt(t, st, presence.User{ID: id})
		}
		sts, err := st.Statuses(ctx, ids) // EVALSHA in a pipeline: reloads, then retries
		if err != nil || len(sts) != len(ids) {
			t.Fatalf("Statuses after SCRIPT FLUSH: %d of %d, %v", len(sts), len(ids), err)
		}
		for id, s := range sts {
			if s.OnlineStatus != presence.Online {
				t.Errorf("user %d: %s, want online", id, s.OnlineStatus)
			}
		}
	})

	t.Run("scripts refuse a migrating slot before writing", func(t *testing.T) {
		testMigratingSlot(t, c, cc)
	})

	t.Run("expiry through keyspace events on every master", func(t *testing.T) {
		// No sweeper: only the listener, subscribed on each master, can
		// take users offline.
		in := startInstance(t, cc, instanceOpts{ttl: time.Second, listener: true, shards: clusterShards})
		if got := in.listener.Masters(); len(got) != 3 {
			t.Fatalf("listener subscribed to %v, want the 3 masters", got)
		}
		var ids []int64
		for i := range 60 {
			u := newUser(t, in.store, fmt.Sprintf("ev%d", i))
			loginAt(t, in.store, u)
			ids = append(ids, u.ID)
		}
		waitOffline(t, in.store, ids, 10*time.Second)
		if n := in.events.Load(); n < int64(len(ids)) {
			t.Errorf("listener handled %d expiry events, want %d", n, len(ids))
		}
		counts := streamCounts(t, cc, in.store)
		for _, id := range ids {
			if on, off := counts[fmt.Sprintf("%d/online", id)], counts[fmt.Sprintf("%d/offline", id)]; on != 1 || off != 1 {
				t.Fatalf("user %d: %d online / %d offline transitions, want 1 each", id, on, off)
			}
		}
	})

	t.Run("two instances make one transition per change", func(t *testing.T) {
		cc2 := newClusterClient(t, c)
		const ttl = time.Second
		a := startInstance(t, cc, instanceOpts{ttl: ttl, sweepInterval: 50 * time.Millisecond, listener: true, shards: clusterShards})
		b := startInstance(t, cc2, instanceOpts{ttl: ttl, sweepInterval: 50 * time.Millisecond, listener: true, shards: clusterShards})
		const users, rounds = 60, 3
		var ids []int64
		refs := map[int64]presence.SessionRef{}
		for i := range users {
			ids = append(ids, newUser(t, a.store, fmt.Sprintf("two%d", i)).ID)
		}
		for r := range rounds {
			for i, id := range ids {
				st := a.store
				if i%2 == 1 {
					st = b.store
				}
				if r == 0 {
					refs[id] = loginAt(t, st, presence.User{ID: id})
				} else if _, err := st.Touch(ctx, refs[id]); err != nil {
					t.Fatal(err)
				}
			}
			waitOffline(t, a.store, ids, 5*time.Second)
		}
		counts := streamCounts(t, cc, a.store)
		for _, id := range ids {
			on, off := counts[fmt.Sprintf("%d/online", id)], counts[fmt.Sprintf("%d/offline", id)]
			if on != rounds || off != rounds {
				t.Fatalf("user %d: %d online / %d offline transitions, want %d each", id, on, off, rounds)
			}
		}
	})

	// Last: it turns notifications off on every node.
	t.Run("expiry by the sweep with notifications off", func(t *testing.T) {
		for _, n := range c.Nodes {
			if err := n.Client(t).ConfigSet(ctx, "notify-keyspace-events", "").Err(); err != nil {
				t.Fatal(err)
			}
		}
		const ttl, interval = time.Second, 100 * time.Millisecond
		// No listener either: it would turn notifications back on, as
		// presenced does where CONFIG is allowed.
		in := startInstance(t, cc, instanceOpts{ttl: ttl, sweepInterval: interval, shards: clusterShards})
		var ids []int64
		logins := map[int64]time.Time{}
		for i := range 60 {
			u := newUser(t, in.store, fmt.Sprintf("sw%d", i))
			logins[u.ID] = time.Now()
			loginAt(t, in.store, u)
			ids = append(ids, u.ID)
		}
		seen := waitOffline(t, in.store, ids, 10*time.Second)
		for id, at := range seen {
			// The documented bound: TTL + sweep interval + 1 s.
			if late := at.Sub(logins[id]); late > ttl+interval+time.Second {
				t.Errorf("user %d offline %s after its last activity, over the bound", id, late)
			}
		}
		for _, id := range ids {
			if u, _ := in.store.User(ctx, id); u.LastSeen.IsZero() {
				t.Errorf("user %d offline without last_seen", id)
			}
		}
	})
}

// runScenario runs every store operation, and so every script, against rdb
// with a test clock and returns what each step observed, without times and
// stream IDs: the same calls must observe the same on one Redis and on a
// cluster.
func runScenario(t *testing.T, rdb redis.UniversalClient, prefix string) []string {
	t.Helper()
	ctx := context.Background()
	clk := &clock{now: time.UnixMilli(1_780_000_000_000)}
	var log []string
	step := func(format string, args ...any) { log = append(log, fmt.Sprintf(format, args...)) }
	st, err := New(rdb, Config{
		Prefix: prefix, Shards: clusterShards, TTL: time.Hour, AwayAfter: time.Minute, SweepInterval: time.Second, Now: clk.Now,
		OnTransition: func(s presence.OnlineStatus, r presence.Reason) { step("observed %s/%s", s, r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(ctx); err != nil {
		t.Fatal(err)
	}

	// Accounts (create_user.lua).
	ids := map[string]int64{}
	var all []int64
	for i := range 30 {
		name := fmt.Sprintf("user%02d", i)
		u, err := st.CreateUser(ctx, presence.NewUser{Username: name, Email: name + "@example.com", Status: presence.StatusActive, PasswordHash: "hash-" + name})
		step("create %s: id %d %s %v", name, u.ID, u.Status, errName(err))
		ids[name] = u.ID
		all = append(all, u.ID)
	}
	pending, err := st.CreateUser(ctx, presence.NewUser{Username: "waiting", Status: presence.StatusPending, PasswordHash: "x"})
	step("create pending: id %d %v", pending.ID, errName(err))
	_, err = st.CreateUser(ctx, presence.NewUser{Username: "USER00", PasswordHash: "x"})
	step("create duplicate: %v", errName(err))
	id, err := st.UserIDByUsername(ctx, "User07")
	step("lookup User07: %d %v", id, errName(err))
	_, err = st.UserIDByUsername(ctx, "nobody")
	step("lookup nobody: %v", errName(err))
	hash, err := st.PasswordHash(ctx, ids["user07"])
	step("password hash: %s %v", hash, errName(err))

	// Sessions (login.lua) and heartbeats (pipeline; revive, activate).
	refs := map[string]presence.SessionRef{}
	login := func(name string) presence.SessionRef {
		sess, u, err := st.StartSession(ctx, ids[name], presence.SessionStart{UserAgent: "ua-" + name, RefreshID: "r-" + name, RefreshExpires: clk.Now().Add(24 * time.Hour)})
		step("login %s: session %s %s live=%d %v", name, sess.ID, u.OnlineStatus, u.LiveSessions, errName(err))
		return presence.SessionRef{UserID: ids[name], SessionID: sess.ID, TokenVersion: u.TokenVersion}
	}
	for i := range 30 {
		name := fmt.Sprintf("user%02d", i)
		refs[name] = login(name)
	}
	second := login("user00")
	_, _, err = st.StartSession(ctx, pending.ID, presence.SessionStart{RefreshExpires: clk.Now().Add(time.Hour)})
	step("login pending: %v", errName(err))
	touch := func(what string, ref presence.SessionRef) {
		s, err := st.Touch(ctx, ref)
		step("touch %s: %s %v", what, s.OnlineStatus, errName(err))
	}
	clk.Advance(10 * time.Second)
	for i := range 30 {
		name := fmt.Sprintf("user%02d", i)
		touch(name, refs[name])
	}
	s, err := st.TouchIdle(ctx, refs["user01"])
	step("idle heartbeat user01: %s %v", s.OnlineStatus, errName(err))

	// Manual statuses (account.lua override) and the heartbeat's activate.lua.
	u, err := st.SetOnlineStatus(ctx, ids["user02"], presence.Away, time.Time{}, presence.ReasonManual)
	step("set away user02: %s %v", u.OnlineStatus, errName(err))
	touch("user02 (manual away)", refs["user02"])
	u, err = st.SetOnlineStatus(ctx, ids["user03"], presence.Offline, time.Time{}, presence.ReasonManual)
	step("set invisible user03: %s %v", u.OnlineStatus, errName(err))
	u, err = st.SetOnlineStatus(ctx, ids["user03"], presence.Online, time.Time{}, presence.ReasonManual)
	step("clear user03: %s %v", u.OnlineStatus, errName(err))

	// Away by inactivity (idle.lua): users 10-14 only send idle heartbeats.
	clk.Advance(61 * time.Second)
	for i := range 30 {
		name := fmt.Sprintf("user%02d", i)
		if i >= 10 && i < 15 {
			_, err = st.TouchIdle(ctx, refs[name])
		} else {
			_, err = st.Touch(ctx, refs[name])
		}
		if err != nil {
			step("heartbeat %s: %v", name, errName(err))
		}
	}
	_, _ = st.Touch(ctx, second)
	made := 0
	for range 13 {
		for sh := range clusterShards {
			n, err := st.ScanIdle(ctx, sh)
			if err != nil {
				step("idle scan shard %d: %v", sh, errName(err))
			}
			made += n
		}
	}
	step("idle scan made %d users away", made)
	touch("user10 (away, active again)", refs["user10"])

	// Refresh rotation (rotate.lua), reuse ends the session.
	err = st.RotateRefresh(ctx, refs["user04"], "r-user04", "r2-user04", clk.Now().Add(24*time.Hour))
	step("rotate user04: %v", errName(err))
	err = st.RotateRefresh(ctx, refs["user04"], "r-user04", "r3-user04", clk.Now().Add(24*time.Hour))
	step("rotate user04 again with the old token: %v", errName(err))
	_, err = st.CheckSession(ctx, refs["user04"])
	step("check user04: %v", errName(err))
	cs, err := st.CheckSession(ctx, refs["user05"])
	step("check user05: %s %v", cs.OnlineStatus, errName(err))

	// Ending sessions (logout.lua, account.lua) and the revive.lua refusal.
	step("logout user06: %v", errName(st.EndSession(ctx, refs["user06"], presence.ReasonLogout)))
	touch("user06 after logout", refs["user06"])
	step("logout again user06: %v", errName(st.EndSession(ctx, refs["user06"], presence.ReasonLogout)))
	step("logout-all user07: %v", errName(st.EndAllSessions(ctx, ids["user07"], presence.ReasonLogout)))
	suspended := presence.StatusSuspended
	u, err = st.UpdateUser(ctx, ids["user08"], presence.UserUpdate{Status: &suspended})
	step("suspend user08: %s %s %v", u.Status, u.OnlineStatus, errName(err))
	touch("user08 suspended", refs["user08"])
	step("delete user09: %v", errName(st.DeleteUser(ctx, ids["user09"])))
	_, err = st.User(ctx, ids["user09"])
	step("user09 after delete: %v", errName(err))

	// A session whose TTL ran out comes back with a heartbeat (revive.lua):
	// let user11's live key go (as Redis would) and heartbeat.
	if err := rdb.Del(ctx, st.k.live(ids["user11"], refs["user11"].SessionID)).Err(); err != nil {
		t.Fatal(err)
	}
	touch("user11 after its key expired", refs["user11"])
	// The expiry path (expire.lua) on a session whose key is gone: user12.
	if err := rdb.Del(ctx, st.k.live(ids["user12"], refs["user12"].SessionID)).Err(); err != nil {
		t.Fatal(err)
	}
	sh := int(st.k.shardOfID(ids["user12"]))
	res, err := st.ExpireSessions(ctx, sh, []string{member(ids["user12"], refs["user12"].SessionID)})
	step("expire user12: %d settled, went offline %v %v", len(res.Expired), len(res.Expired) == 1 && res.Expired[0].WentOffline, errName(err))

	sessions, err := st.Sessions(ctx, ids["user00"])
	// Both were created at the same (test clock) time: order by ID.
	slices.SortFunc(sessions, func(a, b presence.Session) int { return strings.Compare(a.ID, b.ID) })
	for _, se := range sessions {
		step("user00 session %s live=%v ua=%s", se.ID, se.Live, se.UserAgent)
	}
	step("sessions user00: %d %v", len(sessions), errName(err))

	// Batched heartbeats (pipeline, then activate/revive for the misses).
	var batch []presence.SessionRef
	for i := range 30 {
		batch = append(batch, refs[fmt.Sprintf("user%02d", i)])
	}
	batch = append(batch, presence.SessionRef{UserID: 999_999, SessionID: "1"})
	br, err := st.TouchSessions(ctx, batch)
	step("batch: refreshed %d unknown %s revoked %s %v", br.Refreshed, refsString(br.Unknown), refsString(br.Revoked), errName(err))

	// Reads that span every shard.
	sts, err := st.Statuses(ctx, append(slices.Clone(all), pending.ID, 999_999))
	for _, id := range sortedKeys(sts) {
		step("status %d: %s", id, sts[id].OnlineStatus)
	}
	step("statuses: %d %v", len(sts), errName(err))
	n, err := st.CountUsers(ctx)
	step("count users: %d %v", n, errName(err))
	n, err = st.CountOnline(ctx)
	step("count online: %d %v", n, errName(err))
	online, err := st.OnlineUsers(ctx)
	step("online users: %v %v", userIDs(online), errName(err))
	step("list all: %s", listAll(t, st, presence.ListQuery{PerPage: 7}))
	step("list online: %s", listAll(t, st, presence.ListQuery{PerPage: 5, OnlineStatus: presence.Online}))
	step("list away: %s", listAll(t, st, presence.ListQuery{PerPage: 5, OnlineStatus: presence.Away}))
	step("list search user1: %s", listAll(t, st, presence.ListQuery{PerPage: 3, Search: "user1"}))

	// Tickets (a key without a shard tag).
	ticket, err := st.IssueTicket(ctx, refs["user05"], time.Minute)
	step("issue ticket: %v", errName(err))
	ref, err := st.RedeemTicket(ctx, ticket)
	step("redeem ticket: user %d session %s %v", ref.UserID, ref.SessionID, errName(err))
	_, err = st.RedeemTicket(ctx, ticket)
	step("redeem ticket again: %v", errName(err))

	// The transitions, read in pages from the beginning: in shard order,
	// each shard's in the order they were made.
	pos := "0"
	for {
		trs, next, err := st.ReadTransitions(ctx, pos, 10, 0)
		if err != nil {
			t.Fatalf("ReadTransitions: %v", err)
		}
		for _, tr := range trs {
			step("transition user %d %s %s", tr.UserID, tr.OnlineStatus, tr.Reason)
		}
		if len(trs) == 0 {
			break
		}
		if trs[len(trs)-1].ID != next {
			t.Fatalf("last transition's ID %q is not the new position %q", trs[len(trs)-1].ID, next)
		}
		pos = next
	}
	// A blocking read waits, then returns what arrives meanwhile.
	start := time.Now()
	trs, next, err := st.ReadTransitions(ctx, pos, 10, 150*time.Millisecond)
	if waited := time.Since(start); len(trs) != 0 || err != nil || next != pos || waited < 140*time.Millisecond {
		t.Fatalf("blocking read with nothing new: %d transitions, position %q (want %q), %v, after %s", len(trs), next, pos, err, waited)
	}
	type read struct {
		trs []presence.Transition
		err error
	}
	got := make(chan read, 1)
	go func() {
		trs, _, err := st.ReadTransitions(ctx, pos, 10, 5*time.Second)
		got <- read{trs, err}
	}()
	time.Sleep(50 * time.Millisecond)
	step("logout-all user20: %v", errName(st.EndAllSessions(ctx, ids["user20"], presence.ReasonLogout)))
	r := <-got
	if r.err != nil || len(r.trs) == 0 {
		t.Fatalf("a blocking read did not return the transition made while it waited: %v", r.err)
	}
	for _, tr := range r.trs {
		step("woken by transition user %d %s %s", tr.UserID, tr.OnlineStatus, tr.Reason)
	}
	return log
}

func errName(err error) string {
	for _, e := range []error{presence.ErrNotFound, presence.ErrUsernameTaken, presence.ErrSessionRevoked, presence.ErrAccountInactive,
		presence.ErrRefreshReused, presence.ErrInvalidCursor, presence.ErrUnavailable} {
		if errors.Is(err, e) {
			return "error(" + e.Error() + ")"
		}
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok"
}

func sortedKeys[V any](m map[int64]V) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func userIDs(users []presence.User) []int64 {
	ids := make([]int64, 0, len(users))
	for _, u := range users {
		ids = append(ids, u.ID)
	}
	slices.Sort(ids)
	return ids
}

// listAll pages through a full listing and describes it: the sorted IDs,
// the page sizes, and any user seen twice.
func listAll(t *testing.T, st *Store, q presence.ListQuery) string {
	t.Helper()
	seen := map[int64]int{}
	var sizes []int
	for {
		p, err := st.ListUsers(context.Background(), q)
		if err != nil {
			t.Fatalf("ListUsers: %v", err)
		}
		sizes = append(sizes, len(p.Users))
		for _, u := range p.Users {
			seen[u.ID]++
		}
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	var twice []int64
	for id, n := range seen {
		if n > 1 {
			twice = append(twice, id)
		}
	}
	return fmt.Sprintf("ids %v pages %v twice %v", sortedKeys(seen), sizes, twice)
}

// diffLines lists the lines where a and b differ, "" when they are equal.
func diffLines(a, b []string) string {
	var out []string
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("step %d:\n- %s\n+ %s", i, x, y))
		}
		if len(out) == 10 {
			out = append(out, "...")
			break
		}
	}
	return strings.Join(out, "\n")
}

// testMigratingSlot puts the slot of one shard half way through a
// migration (some keys moved, as redis-cli --cluster reshard leaves it
// between two MIGRATE batches) and checks that scripts refuse to run there
// rather than run half, that the hot path keeps working through ASK
// redirections, and that everything works once the slot has moved.
func testMigratingSlot(t *testing.T, c *redistest.Cluster, cc *redis.ClusterClient) {
	ctx := context.Background()
	st, err := New(cc, Config{Prefix: "mig:", Shards: clusterShards, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	// Users of shard 5 only.
	var users []presence.User
	refs := map[int64]presence.SessionRef{}
	for i := 0; len(users) < 6; i++ {
		name := fmt.Sprintf("mig%d", i)
		if st.k.shardOfName(presence.NormalizeUsername(name)) != 5 {
			continue
		}
		u := newUser(t, st, name)
		users = append(users, u)
		refs[u.ID] = loginAt(t, st, u)
	}
	slot64, err := cc.ClusterKeySlot(ctx, st.k.deadlines(5)).Result()
	if err != nil {
		t.Fatal(err)
	}
	slot := int(slot64)
	src := c.MasterOf(t, slot)
	var dst *redistest.Server
	for _, m := range c.Masters(t) {
		if m != src {
			dst = m
			break
		}
	}
	srcC, dstC := src.Client(t), dst.Client(t)
	srcID, dstID := c.ID(t, src), c.ID(t, dst)
	if err := dstC.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err(); err != nil {
		t.Fatal(err)
	}
	if err := srcC.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err(); err != nil {
		t.Fatal(err)
	}
	// Move the first user's keys (hash, sessions, live key) to the
	// destination, leave the shard's indexes and the other users behind.
	moved := users[0]
	movedKeys := []string{st.k.user(moved.ID), st.k.sessions(moved.ID), st.k.live(moved.ID, refs[moved.ID].SessionID)}
	host, port, _ := strings.Cut(dst.Addr, ":")
	args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
	for _, k := range movedKeys {
		args = append(args, k)
	}
	if err := srcC.Do(ctx, args...).Err(); err != nil {
		t.Fatalf("MIGRATE: %v", err)
	}
	before := dumpShard(t, cc, st, 5)

	// Scripts: refused with TRYAGAIN (after the client's retries), as
	// ErrUnavailable, having written nothing. Users 0 (moved) and 1 (not).
	// A client that gives up after 2 redirections keeps this quick (the
	// 8 of presenced's default take about 2 s).
	fastClient := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{src.Addr}, MaxRedirects: 2})
	t.Cleanup(func() { _ = fastClient.Close() })
	fast, err := New(fastClient, Config{Prefix: "mig:", Shards: clusterShards, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	call := func(what string, f func(ctx context.Context) error) {
		t.Helper()
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		start := time.Now()
		if err := f(short); !errors.Is(err, presence.ErrUnavailable) {
			t.Errorf("%s during the migration: got %v, want ErrUnavailable", what, err)
		}
		t.Logf("%s refused after %s of retries", what, time.Since(start).Round(time.Millisecond))
	}
	for _, u := range users[:2] {
		call(fmt.Sprintf("login of user %d", u.ID), func(ctx context.Context) error {
			_, _, err := fast.StartSession(ctx, u.ID, presence.SessionStart{RefreshID: "r", RefreshExpires: time.Now().Add(time.Hour)})
			return err
		})
		call(fmt.Sprintf("logout of user %d", u.ID), func(ctx context.Context) error {
			return fast.EndSession(ctx, refs[u.ID], presence.ReasonLogout)
		})
	}
	call("sweep", func(ctx context.Context) error { _, err := fast.SweepShard(ctx, 5, 100); return err })
	if after := dumpShard(t, cc, st, 5); after != before {
		t.Fatalf("refused scripts changed the shard:\nbefore %s\nafter  %s", before, after)
	}
	// The heartbeat's pipeline has no script: it follows ASK to the moved
	// keys and keeps working for every user.
	for _, u := range users {
		if s, err := st.Touch(ctx, refs[u.ID]); err != nil || s.OnlineStatus != presence.Online {
			t.Errorf("heartbeat of user %d during migration: %+v %v", u.ID, s, err)
		}
	}

	// Finish the migration as redis-cli does: the remaining keys, then the
	// slot to its new owner on both nodes.
	keys, err := srcC.Do(ctx, "CLUSTER", "GETKEYSINSLOT", slot, 1000).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := srcC.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("MIGRATE the rest: %v", err)
		}
	}
	for _, n := range []*redis.Client{dstC, srcC} {
		if err := n.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitReady(t)
	if got := c.MasterOf(t, slot); got != dst {
		t.Fatalf("slot %d served by %s after the migration, want %s", slot, got.Addr, dst.Addr)
	}
	for _, u := range users {
		if err := st.EndSession(ctx, refs[u.ID], presence.ReasonLogout); err != nil {
			t.Fatalf("logout of user %d after the migration: %v", u.ID, err)
		}
	}
	counts := streamCounts(t, cc, st)
	for _, u := range users {
		if on, off := counts[fmt.Sprintf("%d/online", u.ID)], counts[fmt.Sprintf("%d/offline", u.ID)]; on != 1 || off != 1 {
			t.Errorf("user %d: %d online / %d offline transitions, want 1 each", u.ID, on, off)
		}
		if got, _ := st.User(ctx, u.ID); got.OnlineStatus != presence.Offline {
			t.Errorf("user %d after logout: %s", u.ID, got.OnlineStatus)
		}
	}
}

// dumpShard describes a shard's indexes and its users' records (not the
// live keys' values, which heartbeats change).
func dumpShard(t *testing.T, cc *redis.ClusterClient, st *Store, shard int64) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	online, _ := cc.SMembers(ctx, st.k.online(shard)).Result()
	sort.Strings(online)
	dl, _ := cc.ZRangeWithScores(ctx, st.k.deadlines(shard), 0, -1).Result()
	nev, _ := cc.XLen(ctx, st.k.events(shard)).Result()
	fmt.Fprintf(&b, "online=%v deadlines=%d events=%d", online, len(dl), nev)
	for _, z := range dl {
		id, _, _ := strings.Cut(z.Member.(string), ":")
		var uid int64
		fmt.Sscan(id, &uid)
		u, _ := cc.HGetAll(ctx, st.k.user(uid)).Result()
		s, _ := cc.HGetAll(ctx, st.k.sessions(uid)).Result()
		fmt.Fprintf(&b, " user%d=%v sessions=%v", uid, u, s)
	}
	return b.String()
}

// TestClusterGuardOnlyOnClusters: the migration guard is prepended to the
// scripts of a cluster client only; a single server runs them as before.
func TestClusterGuardOnlyOnClusters(t *testing.T) {
	single, err := loadScripts(false)
	if err != nil {
		t.Fatal(err)
	}
	clustered, err := loadScripts(true)
	if err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2]*redis.Script{
		"login": {single.login, clustered.login}, "expire": {single.expire, clustered.expire},
		"login_limit": {single.loginLimit, clustered.loginLimit},
	} {
		if pair[0].Hash() == pair[1].Hash() {
			t.Errorf("%s: the same script on a single server and on a cluster, want the guard on the cluster only", name)
		}
	}
	lib, _ := luaFiles.ReadFile("lua/lib.lua")
	if strings.Contains(string(lib), "probe:") {
		t.Error("lib.lua probes the slot: single servers would pay for it")
	}
	st, err := New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if st.sc.login.Hash() != single.login.Hash() {
		t.Error("a store on a single server loaded the cluster scripts")
	}
}
