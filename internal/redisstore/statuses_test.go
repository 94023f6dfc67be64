package redisstore

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redistest"
)

// referenceUsers reads users with testdata/read_users_reference.lua, the
// atomic Lua read that User, the listing and Statuses used before they moved
// to pipelines of plain commands: the oracle their answers must match.
func referenceUsers(t *testing.T, f *fixture, ids []int64) []presence.User {
	t.Helper()
	lib, err := luaFiles.ReadFile("lua/lib.lua")
	if err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile("testdata/read_users_reference.lua")
	if err != nil {
		t.Fatal(err)
	}
	args := []any{f.store.k.tag(0), f.store.nowMS(), f.store.ttlMS}
	for _, id := range ids {
		args = append(args, id)
	}
	rows, err := redis.NewScript(string(lib)+"\n"+string(body)).Run(f.ctx, f.rdb, []string{f.store.k.deadlines(0)}, args...).Slice()
	if err != nil {
		t.Fatal(err)
	}
	return decodeUserRows(rows)
}

func decodeUserRows(rows []any) []presence.User {
	out := make([]presence.User, 0, len(rows))
	for _, r := range rows {
		row, _ := r.([]any)
		if len(row) < 3 {
			continue
		}
		flat, _ := row[0].([]any)
		u := userFromFlat(flat)
		// A user others see as offline (no live session, or invisible) shows
		// nothing live: no fresher last_seen, no live session count.
		if u.IsOnline() {
			if latest, _ := row[1].(int64); latest > u.LastSeen.UnixMilli() {
				u.LastSeen = msTime(latest)
			}
			n, _ := row[2].(int64)
			u.LiveSessions = int(n)
		}
		out = append(out, u)
	}
	return out
}

// statusesViaReadUsers is the reference Statuses.
func statusesViaReadUsers(t *testing.T, f *fixture, ids []int64) map[int64]presence.Status {
	t.Helper()
	out := map[int64]presence.Status{}
	for _, u := range referenceUsers(t, f, ids) {
		out[u.ID] = presence.Status{OnlineStatus: u.OnlineStatus, LastSeen: u.LastSeen}
	}
	return out
}

// TestStatusesMatchReadUsers builds users in every state a status can show
// and checks that Statuses and readUsers (User, the listing) answer what the
// reference Lua read says.
func TestStatusesMatchReadUsers(t *testing.T) {
	f := newFixture(t, Config{TTL: 10 * time.Second})
	var ids []int64
	add := func(name string) presence.User {
		u := f.user(t, name, presence.StatusActive)
		ids = append(ids, u.ID)
		return u
	}
	add("never")      // never logged in
	two := add("two") // two sessions, the second touched later
	f.login(t, two)
	r2 := f.login(t, two)
	gone := add("gone") // logged out
	if err := f.store.EndSession(f.ctx, f.login(t, gone), presence.ReasonLogout); err != nil {
		t.Fatal(err)
	}
	expired := add("expired") // TTL ran out, settled by the sweep
	f.login(t, expired)
	away := add("away") // manual away
	f.login(t, away)
	invisible := add("invisible") // manual offline: frozen last_seen
	f.login(t, invisible)
	pending := f.user(t, "pending", presence.StatusPending)
	ids = append(ids, pending.ID, 99999, -1)

	f.clock.Advance(6 * time.Second)
	if _, err := f.store.Touch(f.ctx, r2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.SetOnlineStatus(f.ctx, away.ID, presence.Away, time.Time{}, presence.ReasonManual); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.SetOnlineStatus(f.ctx, invisible.ID, presence.Offline, time.Time{}, presence.ReasonManual); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Second) // expired's session is overdue; two's second session is live
	if _, err := f.store.Touch(f.ctx, r2); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"before the sweep", "after the sweep"} {
		got, err := f.store.Statuses(f.ctx, ids)
		if err != nil {
			t.Fatalf("%s: Statuses: %v", step, err)
		}
		want := statusesViaReadUsers(t, f, ids[:len(ids)-1]) // read_users takes positive IDs
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s:\n got  %v\n want %v", step, got, want)
		}
		piped, err := f.store.readUsers(f.ctx, 0, ids[:len(ids)-1])
		if err != nil {
			t.Fatalf("%s: readUsers: %v", step, err)
		}
		ref := referenceUsers(t, f, ids[:len(ids)-1])
		if fmt.Sprintf("%+v", piped) != fmt.Sprintf("%+v", ref) {
			t.Errorf("%s: readUsers:\n got  %+v\n want %+v", step, piped, ref)
		}
		if got[two.ID].LastSeen != f.clock.Now().UTC() {
			t.Errorf("%s: two's last_seen: got %v, want the latest heartbeat %v", step, got[two.ID].LastSeen, f.clock.Now().UTC())
		}
		f.sweep(t)
	}
}

// TestIntegrationStatusesRoundTrips: a bulk status is two round trips of
// plain commands on a real Redis, whatever the number of IDs.
func TestIntegrationStatusesRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	var roundTrips, commands atomicCounter
	rdb.AddHook(countingHook{&roundTrips.v, &commands.v})
	st, err := New(rdb, Config{Prefix: "statuses:", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(t.Context()); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := range 30 {
		u := newUser(t, st, fmt.Sprintf("s%d", i))
		ids = append(ids, u.ID)
		if i%2 == 0 {
			loginAt(t, st, u)
		}
	}
	roundTrips.v.Store(0)
	got, err := st.Statuses(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	online := 0
	for _, s := range got {
		if s.OnlineStatus == presence.Online {
			online++
		}
	}
	if len(got) != 30 || online != 15 {
		t.Fatalf("got %d statuses with %d online, want 30 and 15", len(got), online)
	}
	if n := roundTrips.v.Load(); n != 2 {
		t.Errorf("round trips: got %d, want 2", n)
	}
}

// atomicCounter wraps an atomic counter for countingHook.
type atomicCounter struct{ v atomic.Int64 }
