package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/presence"
)

// userReply is the presence part of a User answer.
type userReply struct {
	ID           int64  `json:"id"`
	OnlineStatus string `json:"online_status"`
	IsOnline     bool   `json:"is_online"`
	LiveSessions *int   `json:"live_sessions"`
}

func TestMyStatus(t *testing.T) {
	h := newHarness(t)
	u, tok := h.userWithLogin("alice", presence.RoleUser)
	set := func(prefix string, body any) userReply {
		t.Helper()
		res := h.do("POST", prefix+"me/status/", tok.Access, body)
		res.wantStatus(t, http.StatusOK)
		var got userReply
		res.decode(t, &got)
		if got.ID != u.ID {
			t.Fatalf("answered user %d, want %d", got.ID, u.ID)
		}
		return got
	}

	if got := set("/api/users/", map[string]any{"status": "away"}); got.OnlineStatus != "away" || !got.IsOnline {
		t.Errorf("away: got %+v, want away and is_online", got)
	}
	// Sticky: heartbeats keep the override.
	if hb := h.do("POST", "/api/users/heartbeat/", tok.Access, nil).heartbeat(t); hb.OnlineStatus != "away" {
		t.Errorf("heartbeat while away: got %s, want away", hb.OnlineStatus)
	}
	if got := set("/api/auth/", map[string]any{"status": "offline", "until": nil}); got.OnlineStatus != "offline" || got.IsOnline {
		t.Errorf("offline: got %+v, want offline", got)
	}
	if got := h.onlineStatus(u.ID); got != presence.Offline {
		t.Errorf("others see %s, want offline", got)
	}
	if got := set("/api/users/", map[string]any{"status": "online"}); got.OnlineStatus != "online" || got.LiveSessions == nil || *got.LiveSessions != 1 {
		t.Errorf("online: got %+v, want online with 1 live session", got)
	}

	t.Run("until clears the override", func(t *testing.T) {
		until := time.Now().Add(300 * time.Millisecond).UTC().Format(time.RFC3339Nano)
		if got := set("/api/users/", map[string]any{"status": "away", "until": until}); got.OnlineStatus != "away" {
			t.Fatalf("away until: got %+v, want away", got)
		}
		time.Sleep(400 * time.Millisecond)
		if hb := h.do("POST", "/api/users/heartbeat/", tok.Access, nil).heartbeat(t); hb.OnlineStatus != "online" {
			t.Errorf("heartbeat after until: got %s, want online", hb.OnlineStatus)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		for _, tc := range []struct {
			name string
			body any
			want string
		}{
			{"no body", nil, "status is required: online, away or offline"},
			{"no status", `{}`, "status is required: online, away or offline"},
			{"unknown status", `{"status": "busy"}`, "status must be one of online, away, offline"},
			{"status not a string", `{"status": 1}`, "status: want a string, got number"},
			{"until not a time", `{"status": "away", "until": "tomorrow"}`, "until must be an RFC 3339 time, like 2026-11-26T18:00:00Z"},
			{"until in the past", `{"status": "away", "until": "` + past + `"}`, "until must be in the future"},
			{"until with online", `{"status": "online", "until": "` + future + `"}`, "until applies to away and offline only (online clears the override)"},
			{"not an object", `["away"]`, "Request body must be a JSON object"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h.do("POST", "/api/users/me/status/", tok.Access, tc.body).want(t, http.StatusBadRequest, fmt.Sprintf(`{"error": %q}`, tc.want))
			})
		}
		h.do("POST", "/api/users/me/status/", "", map[string]any{"status": "away"}).want(t, http.StatusUnauthorized, bodyNotAuth)
	})
}

func TestSetOnlineStatus(t *testing.T) {
	h := newHarness(t)
	_, admin := h.userWithLogin("root", presence.RoleAdmin)
	_, mod := h.userWithLogin("mod", presence.RoleModerator)
	u, tok := h.userWithLogin("alice", presence.RoleUser)
	path := fmt.Sprintf("/api/users/admin/users/%d/set-online-status/", u.ID)
	start := h.streamEnd()

	res := h.do("POST", path, admin.Access, map[string]any{"status": "away"})
	res.wantStatus(t, http.StatusOK)
	var got userReply
	res.decode(t, &got)
	if got.ID != u.ID || got.OnlineStatus != "away" {
		t.Errorf("got %s, want alice away", res.body)
	}
	trs := h.transitionsAfter(start)
	if len(trs) != 1 || trs[0].UserID != u.ID || trs[0].OnlineStatus != presence.Away || trs[0].Reason != presence.ReasonAdmin {
		t.Errorf("transitions: got %+v, want alice away by admin", trs)
	}
	// The user's own requests do not clear it; their own me/status/ does.
	h.do("POST", "/api/users/heartbeat/", tok.Access, nil).wantStatus(t, http.StatusOK)
	if st := h.onlineStatus(u.ID); st != presence.Away {
		t.Errorf("after a heartbeat: got %s, want away", st)
	}

	h.do("POST", path, mod.Access, map[string]any{"status": "online"}).want(t, http.StatusForbidden, bodyForbidden)
	h.do("POST", path, tok.Access, map[string]any{"status": "online"}).want(t, http.StatusForbidden, bodyForbidden)
	h.do("POST", "/api/auth/admin/users/999999/set-online-status/", admin.Access, map[string]any{"status": "online"}).
		want(t, http.StatusNotFound, bodyUserNotFound)
	h.do("POST", path, admin.Access, map[string]any{"status": "idle"}).
		want(t, http.StatusBadRequest, `{"error": "status must be one of online, away, offline"}`)
	h.do("POST", path, admin.Access, map[string]any{"status": "online"}).wantStatus(t, http.StatusOK)
	if st := h.onlineStatus(u.ID); st != presence.Online {
		t.Errorf("after clearing: got %s, want online", st)
	}
}

// callCounter is a Store that counts the calls of the presence methods.
type callCounter struct {
	presence.Store
	mu    sync.Mutex
	calls []string
}

func (c *callCounter) record(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, name)
}

func (c *callCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

func (c *callCounter) Touch(ctx context.Context, ref presence.SessionRef) (presence.Status, error) {
	c.record("Touch")
	return c.Store.Touch(ctx, ref)
}

func (c *callCounter) TouchIdle(ctx context.Context, ref presence.SessionRef) (presence.Status, error) {
	c.record("TouchIdle")
	return c.Store.TouchIdle(ctx, ref)
}

func (c *callCounter) CheckSession(ctx context.Context, ref presence.SessionRef) (presence.Status, error) {
	c.record("CheckSession")
	return c.Store.CheckSession(ctx, ref)
}

func (c *callCounter) EndSession(ctx context.Context, ref presence.SessionRef, reason presence.Reason) error {
	c.record("EndSession")
	return c.Store.EndSession(ctx, ref, reason)
}

func (c *callCounter) Statuses(ctx context.Context, ids []int64) (map[int64]presence.Status, error) {
	c.record("Statuses")
	return c.Store.Statuses(ctx, ids)
}

func (c *callCounter) User(ctx context.Context, id int64) (presence.User, error) {
	c.record("User")
	return c.Store.User(ctx, id)
}

// TestHeartbeatOneStoreCall checks that POST heartbeat/ makes exactly one
// Store call, chosen by its body.
func TestHeartbeatOneStoreCall(t *testing.T) {
	var counter *callCounter
	h := newHarness(t, func(c *Config) {
		counter = &callCounter{Store: c.Store}
		c.Store = counter
	})
	_, tok := h.userWithLogin("alice", presence.RoleUser)
	for _, tc := range []struct {
		body any
		want string
	}{
		{nil, "[Touch]"},
		{`{}`, "[Touch]"},
		{`{"active": true}`, "[Touch]"},
		{`{"active": false}`, "[TouchIdle]"},
		{`{"active": null}`, "[Touch]"},
		{`{"active": false, "logout": true}`, "[EndSession Statuses]"},
	} {
		t.Run(fmt.Sprint(tc.body), func(t *testing.T) {
			counter.take()
			res := h.do("POST", "/api/users/heartbeat/", tok.Access, tc.body)
			res.wantStatus(t, http.StatusOK)
			if got := fmt.Sprint(counter.take()); got != tc.want {
				t.Errorf("store calls: got %s, want %s", got, tc.want)
			}
		})
	}

	t.Run("idle heartbeats keep the session live", func(t *testing.T) {
		_, tok := h.userWithLogin("bob", presence.RoleUser)
		h.mr.FastForward(40 * time.Second) // the harness's TTL is 1m
		if hb := h.do("POST", "/api/users/heartbeat/", tok.Access, `{"active": false}`).heartbeat(t); hb.OnlineStatus != "online" {
			t.Fatalf("idle heartbeat: got %s, want online (away detection is off here)", hb.OnlineStatus)
		}
		h.mr.FastForward(40 * time.Second)
		if got := h.do("GET", "/api/users/heartbeat/", tok.Access, nil).heartbeat(t); got.OnlineStatus != "online" {
			t.Errorf("80s after login, 40s after an idle heartbeat: got %s, want online", got.OnlineStatus)
		}
	})

	t.Run("authentication answers before the body", func(t *testing.T) {
		_, tok := h.userWithLogin("carol", presence.RoleUser)
		h.do("POST", "/api/users/logout/", tok.Access, nil).wantStatus(t, http.StatusOK)
		h.do("POST", "/api/users/heartbeat/", tok.Access, `[1]`).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("POST", "/api/users/heartbeat/", tok.Access, `{"active": false}`).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		_, tok2 := h.userWithLogin("dave", presence.RoleUser)
		h.do("POST", "/api/users/heartbeat/", tok2.Access, `{"active": "no"}`).
			want(t, http.StatusBadRequest, `{"error": "active: want true or false, got string"}`)
	})
}
