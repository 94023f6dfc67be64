package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/presence"
)

// heartbeatReply is the answer of the heartbeat routes.
type heartbeatReply struct {
	Message      *string `json:"message"`
	OnlineStatus string  `json:"online_status"`
	LastSeen     *string `json:"last_seen"`
}

func (r result) heartbeat(t *testing.T) heartbeatReply {
	t.Helper()
	var hb heartbeatReply
	r.decode(t, &hb)
	if hb.LastSeen != nil && !timeRE.MatchString(*hb.LastSeen) {
		t.Errorf("last_seen: got %q, want a time like 2026-11-26T10:11:12.345Z", *hb.LastSeen)
	}
	return hb
}

func TestHeartbeat(t *testing.T) {
	t.Run("records and answers presence", func(t *testing.T) {
		h := newHarness(t)
		_, tok := h.userWithLogin("alice", presence.RoleUser)
		for _, body := range []any{nil, "", "{}", `{"logout": false}`, `{"other": 1}`} {
			res := h.do("POST", "/api/users/heartbeat/", tok.Access, body)
			res.wantStatus(t, http.StatusOK)
			hb := res.heartbeat(t)
			if hb.Message == nil || *hb.Message != "Heartbeat recorded" || hb.OnlineStatus != "online" || hb.LastSeen == nil {
				t.Errorf("body %v: got %s, want online with message and last_seen", body, res.body)
			}
			if got := len(res.json(t)); got != 3 {
				t.Errorf("body has %d members, want 3: %s", got, res.body)
			}
		}
		res := h.do("GET", "/api/auth/heartbeat", tok.Access, nil)
		res.wantStatus(t, http.StatusOK)
		hb := res.heartbeat(t)
		if hb.Message != nil || hb.OnlineStatus != "online" || hb.LastSeen == nil {
			t.Errorf("GET: got %s, want online_status and last_seen only", res.body)
		}
	})

	t.Run("logout in the body ends the session", func(t *testing.T) {
		h := newHarness(t)
		u, tok := h.userWithLogin("alice", presence.RoleUser)
		res := h.do("POST", "/api/users/heartbeat/", tok.Access, `{"logout": true}`)
		res.wantStatus(t, http.StatusOK)
		if hb := res.heartbeat(t); hb.OnlineStatus != "offline" || hb.LastSeen == nil {
			t.Errorf("got %s, want offline with last_seen", res.body)
		}
		h.do("POST", "/api/users/heartbeat/", tok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		h.do("GET", "/api/users/heartbeat/", tok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
		if got := h.onlineStatus(u.ID); got != presence.Offline {
			t.Errorf("online_status: got %s, want offline", got)
		}
	})

	t.Run("logout in the body leaves the user online through another session", func(t *testing.T) {
		h := newHarness(t)
		_, tok1 := h.userWithLogin("alice", presence.RoleUser)
		h.login("alice")
		res := h.do("POST", "/api/users/heartbeat/", tok1.Access, `{"logout": true}`)
		if hb := res.heartbeat(t); res.status != http.StatusOK || hb.OnlineStatus != "online" {
			t.Errorf("got %d %s, want 200 online", res.status, res.body)
		}
	})

	t.Run("revives a session whose TTL ran out", func(t *testing.T) {
		h := newHarness(t)
		u, tok := h.userWithLogin("alice", presence.RoleUser)
		h.mr.FastForward(2 * time.Minute) // past the TTL: the live key is gone
		res := h.do("POST", "/api/users/heartbeat/", tok.Access, nil)
		if hb := res.heartbeat(t); res.status != http.StatusOK || hb.OnlineStatus != "online" {
			t.Errorf("got %d %s, want 200 online", res.status, res.body)
		}
		if got := h.onlineStatus(u.ID); got != presence.Online {
			t.Errorf("online_status: got %s, want online", got)
		}
	})

	t.Run("GET does not refresh the session", func(t *testing.T) {
		h := newHarness(t)
		_, tok := h.userWithLogin("alice", presence.RoleUser)
		ref := h.sessionRef(tok.Access)
		suffix := "live:" + strconv.FormatInt(ref.UserID, 10) + ":" + ref.SessionID
		var key string
		for _, k := range h.mr.Keys() {
			if strings.HasSuffix(k, suffix) {
				key = k
			}
		}
		if key == "" {
			t.Fatalf("no live key ending in %s; keys: %v", suffix, h.mr.Keys())
		}
		h.mr.FastForward(30 * time.Second)
		before := h.mr.TTL(key)
		h.do("GET", "/api/users/heartbeat/", tok.Access, nil).wantStatus(t, http.StatusOK)
		if after := h.mr.TTL(key); after != before {
			t.Errorf("TTL after GET: got %v, want %v (unchanged)", after, before)
		}
		h.do("POST", "/api/users/heartbeat/", tok.Access, nil).wantStatus(t, http.StatusOK)
		if after := h.mr.TTL(key); after <= before {
			t.Errorf("TTL after POST: got %v, want more than %v", after, before)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		h := newHarness(t)
		u, tok := h.userWithLogin("alice", presence.RoleUser)
		h.do("POST", "/api/users/heartbeat/", "", nil).want(t, http.StatusUnauthorized, bodyNotAuth)
		h.do("POST", "/api/users/heartbeat/", tok.Access, `{"logout": "yes"}`).
			want(t, http.StatusBadRequest, `{"error":"logout: want true or false, got string"}`)
		st := presence.StatusSuspended
		if _, err := h.store.UpdateUser(t.Context(), u.ID, presence.UserUpdate{Status: &st}); err != nil {
			t.Fatal(err)
		}
		h.do("POST", "/api/users/heartbeat/", tok.Access, nil).want(t, http.StatusUnauthorized, bodyTokenNotValid)
	})
}
