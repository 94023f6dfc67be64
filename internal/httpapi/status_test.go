package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/presenced/presenced/internal/presence"
)

func TestStatuses(t *testing.T) {
	h := newHarness(t)
	alice, tok := h.userWithLogin("alice", presence.RoleUser)
	bob := h.user("bob", presence.RoleUser, presence.StatusActive)

	t.Run("known ids, unknown omitted, duplicates once", func(t *testing.T) {
		res := h.do("POST", "/api/users/status/", tok.Access, map[string][]int64{"ids": {bob.ID, alice.ID, 999999, alice.ID}})
		res.wantStatus(t, http.StatusOK)
		var out struct {
			Statuses map[string]heartbeatReply `json:"statuses"`
		}
		res.decode(t, &out)
		if len(out.Statuses) != 2 {
			t.Fatalf("statuses: got %s, want alice and bob only", res.body)
		}
		a, b := out.Statuses[fmt.Sprint(alice.ID)], out.Statuses[fmt.Sprint(bob.ID)]
		if a.OnlineStatus != "online" || a.LastSeen == nil || !timeRE.MatchString(*a.LastSeen) {
			t.Errorf("alice: got %+v, want online with last_seen", a)
		}
		if b.OnlineStatus != "offline" || b.LastSeen != nil {
			t.Errorf("bob (never seen): got %+v, want offline, last_seen null", b)
		}
	})

	t.Run("1000 ids", func(t *testing.T) {
		ids := make([]int64, presence.MaxBulkIDs)
		for i := range ids {
			ids[i] = int64(i + 1)
		}
		h.do("POST", "/api/users/status/", tok.Access, map[string][]int64{"ids": ids}).wantStatus(t, http.StatusOK)
	})

	many := "[" + strings.Repeat("1,", presence.MaxBulkIDs) + "1]"
	for _, tc := range []struct {
		name, body, want string
	}{
		{"1001 ids", `{"ids":` + many + `}`, `{"error":"ids may hold at most 1000 user IDs"}`},
		{"empty", `{"ids":[]}`, `{"error":"ids must be a non-empty array of user IDs"}`},
		{"missing", `{}`, `{"error":"ids must be a non-empty array of user IDs"}`},
		{"null", `{"ids":null}`, `{"error":"ids must be a non-empty array of user IDs"}`},
		{"string id", `{"ids":["1"]}`, `{"error":"ids: want an integer, got string"}`},
		{"fraction", `{"ids":[1.5]}`, `{"error":"ids: want an integer, got number 1.5"}`},
		{"overflow", `{"ids":[99999999999999999999]}`, `{"error":"ids: want an integer, got number 99999999999999999999"}`},
		{"not an array", `{"ids":"1,2"}`, `{"error":"ids: want an array, got string"}`},
		{"zero", `{"ids":[0]}`, `{"error":"ids must be positive integers"}`},
		{"negative", `{"ids":[-3]}`, `{"error":"ids must be positive integers"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.do("POST", "/api/users/status/", tok.Access, tc.body).want(t, http.StatusBadRequest, tc.want)
		})
	}

	t.Run("needs a token", func(t *testing.T) {
		h.do("POST", "/api/users/status/", "", `{"ids":[1]}`).want(t, http.StatusUnauthorized, bodyNotAuth)
	})
}
