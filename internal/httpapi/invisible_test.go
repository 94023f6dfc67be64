package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
)

// TestAwayAndInvisibleEndToEnd drives away-by-inactivity and the manual
// statuses through the HTTP API on a real redis-server, watching the event
// stream, and checks that an invisible user leaks through no endpoint.
func TestAwayAndInvisibleEndToEnd(t *testing.T) {
	const awayAfter = 300 * time.Millisecond
	h := newRedisHarness(t, redisHarnessOpts{store: redisstore.Config{
		TTL: 10 * time.Second, AwayAfter: awayAfter, SweepInterval: 50 * time.Millisecond,
	}})
	ctx := context.Background()
	_, admin := h.userWithLogin("root", presence.RoleAdmin)
	events := h.openEvents(streamClient(t), admin.Access, "", nil)
	alice, tok := h.userWithLogin("alice", presence.RoleUser)
	wantEvent := func(status, reason string) eventData {
		t.Helper()
		d := events.next(5 * time.Second).decode(t)
		if d.UserID != alice.ID || d.OnlineStatus != status || d.Reason != reason {
			t.Fatalf("event: got %+v, want alice %s (%s)", d, status, reason)
		}
		return d
	}
	wantEvent("online", "login")

	// Away: only idle heartbeats for longer than the away period.
	deadline := time.Now().Add(5 * time.Second)
	for h.onlineStatus(alice.ID) != presence.Away {
		if time.Now().After(deadline) {
			t.Fatalf("alice not away 5s into idle heartbeats (away after %v)", awayAfter)
		}
		h.do("POST", "/api/users/heartbeat/", tok.Access, `{"active": false}`).wantStatus(t, http.StatusOK)
		// The admin stays active (the idle scan runs only here, in the
		// test: no sweeper).
		h.do("POST", "/api/users/heartbeat/", admin.Access, nil).wantStatus(t, http.StatusOK)
		if _, err := h.store.ScanIdle(ctx, 0); err != nil {
			t.Fatalf("ScanIdle: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantEvent("away", "idle")
	if hb := h.do("GET", "/api/users/heartbeat/", tok.Access, nil).heartbeat(t); hb.OnlineStatus != "away" {
		t.Errorf("GET heartbeat/ while away: got %s, want away", hb.OnlineStatus)
	}
	// Activity brings her back.
	if hb := h.do("POST", "/api/users/heartbeat/", tok.Access, nil).heartbeat(t); hb.OnlineStatus != "online" {
		t.Errorf("active heartbeat: got %s, want online", hb.OnlineStatus)
	}
	wantEvent("online", "heartbeat")

	// Manual away, then invisible.
	h.do("POST", "/api/users/me/status/", tok.Access, map[string]any{"status": "away"}).wantStatus(t, http.StatusOK)
	wantEvent("away", "manual")
	h.do("POST", "/api/users/me/status/", tok.Access, map[string]any{"status": "offline"}).wantStatus(t, http.StatusOK)
	frozen := wantEvent("offline", "manual").LastSeen
	if frozen == nil {
		t.Fatal("invisible: last_seen is null")
	}

	// While invisible she keeps working: heartbeats, another login and
	// its logout. Nobody sees any of it.
	time.Sleep(20 * time.Millisecond)
	if hb := h.do("POST", "/api/users/heartbeat/", tok.Access, nil).heartbeat(t); hb.OnlineStatus != "offline" {
		t.Errorf("her own heartbeat while invisible: got %s, want offline", hb.OnlineStatus)
	}
	tok2 := h.login("alice")
	h.do("POST", "/api/users/heartbeat/", tok2.Access, `{"active": false}`).wantStatus(t, http.StatusOK)
	h.do("POST", "/api/users/logout/", tok2.Access, nil).wantStatus(t, http.StatusOK)
	_, bob := h.userWithLogin("bob", presence.RoleUser)
	if d := events.next(5 * time.Second).decode(t); d.Username != "bob" {
		t.Fatalf("next event: got %+v, want bob's login (nothing of alice's)", d)
	}

	id := fmt.Sprint(alice.ID)
	checkUser := func(where string, u map[string]any) {
		t.Helper()
		if u["online_status"] != "offline" || u["is_online"] != false || u["last_seen"] != *frozen || u["live_sessions"] != float64(0) {
			t.Errorf("%s: got online_status %v is_online %v last_seen %v live_sessions %v, want offline, false, %s, 0",
				where, u["online_status"], u["is_online"], u["last_seen"], u["live_sessions"], *frozen)
		}
	}
	findAlice := func(where string, list []any) map[string]any {
		t.Helper()
		for _, x := range list {
			if u := x.(map[string]any); u["id"] == float64(alice.ID) {
				return u
			}
		}
		return nil
	}

	// Listing, every filter.
	for _, q := range []string{"", "?search=alice", "?online_status=offline"} {
		page := h.do("GET", "/api/users/admin/users/"+q, admin.Access, nil).json(t)
		u := findAlice("listing "+q, page["results"].([]any))
		if u == nil {
			t.Fatalf("listing %s: alice missing", q)
		}
		checkUser("listing "+q, u)
		if page["count"] != float64(3) {
			t.Errorf("listing %s: count %v, want 3 (every user)", q, page["count"])
		}
	}
	for _, q := range []string{"?online_status=online", "?online_status=away"} {
		page := h.do("GET", "/api/users/admin/users/"+q, admin.Access, nil).json(t)
		if findAlice("listing "+q, page["results"].([]any)) != nil {
			t.Errorf("listing %s shows alice", q)
		}
	}
	// The online list and its count.
	online := h.do("GET", "/api/users/admin/users/online/", admin.Access, nil).json(t)
	if findAlice("online list", online["online_users"].([]any)) != nil || online["count"] != float64(2) {
		t.Errorf("online list: got %v, want root and bob only", online)
	}
	if n, err := h.store.CountOnline(ctx); err != nil || n != 2 {
		t.Errorf("CountOnline: got %d %v, want 2", n, err)
	}
	// Bulk status, as any user asks it.
	st := h.do("POST", "/api/users/status/", bob.Access, map[string]any{"ids": []int64{alice.ID}}).json(t)
	if got := st["statuses"].(map[string]any)[id].(map[string]any); got["online_status"] != "offline" || got["last_seen"] != *frozen {
		t.Errorf("bulk status: got %v, want offline at %s", got, *frozen)
	}
	// One user's presence, and the user with their sessions.
	os := h.do("GET", "/api/users/admin/users/"+id+"/online-status/", admin.Access, nil).json(t)
	if os["online_status"] != "offline" || os["is_online"] != false || os["last_seen"] != *frozen {
		t.Errorf("online-status: got %v", os)
	}
	detail := h.do("GET", "/api/users/admin/users/"+id+"/", admin.Access, nil).json(t)
	checkUser("user detail", detail)
	for _, s := range detail["sessions"].([]any) {
		if s.(map[string]any)["live"] != false {
			t.Errorf("user detail shows a live session: %v", s)
		}
	}
	// Every user at once.
	all := h.do("GET", "/api/users/all-users/", admin.Access, nil).json(t)
	if u := findAlice("all-users", all["users"].([]any)); u == nil {
		t.Error("all-users: alice missing")
	} else {
		checkUser("all-users", u)
	}
	// The stream, replayed from the start: her last event is going offline.
	replay := h.openEvents(streamClient(t), admin.Access, "?last_event_id=0", nil)
	var last eventData
	for _, ev := range replay.nextN(len(h.transitionsAfter("0")), 5*time.Second) {
		if d := ev.decode(t); d.UserID == alice.ID {
			last = d
		}
	}
	if last.OnlineStatus != "offline" || last.Reason != "manual" {
		t.Errorf("replayed stream: alice's last event %+v, want offline (manual)", last)
	}

	// Visible again.
	h.do("POST", "/api/users/me/status/", tok.Access, map[string]any{"status": "online"}).wantStatus(t, http.StatusOK)
	wantEvent("online", "manual")
	events.quiet(100 * time.Millisecond)
}
