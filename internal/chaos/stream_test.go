package chaos

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Public Redis keys (api/redis-schema.md) of the default prefix and one
// shard, which every scenario uses.
const (
	eventsKey    = "presence:{0}:events"
	onlineKey    = "presence:{0}:online"
	deadlinesKey = "presence:{0}:deadlines"
	expiredChan  = "__keyevent@0__:expired"
)

// transition is one entry of the transitions stream.
type transition struct {
	id       string
	userID   int64
	status   string
	lastSeen time.Time
	reason   string
	at       time.Time
}

func (tr transition) String() string {
	return fmt.Sprintf("%s %s(%s) last_seen=%s at=%s", tr.id, tr.status, tr.reason,
		tr.lastSeen.Format("15:04:05.000"), tr.at.Format("15:04:05.000"))
}

// readTransitions reads the whole stream and groups it by user, in order.
func readTransitions(t *testing.T, rdb *redis.Client) (map[int64][]transition, int) {
	t.Helper()
	ctx := context.Background()
	out := map[int64][]transition{}
	total := 0
	start := "-"
	for {
		msgs, err := rdb.XRangeN(ctx, eventsKey, start, "+", 10000).Result()
		if err != nil {
			t.Fatalf("XRANGE %s: %v", eventsKey, err)
		}
		for _, m := range msgs {
			v := func(k string) string { s, _ := m.Values[k].(string); return s }
			uid, _ := strconv.ParseInt(v("user_id"), 10, 64)
			ms := func(k string) time.Time {
				n, _ := strconv.ParseInt(v(k), 10, 64)
				return time.UnixMilli(n)
			}
			out[uid] = append(out[uid], transition{id: m.ID, userID: uid, status: v("online_status"),
				lastSeen: ms("last_seen"), reason: v("reason"), at: ms("at")})
			total++
		}
		if len(msgs) < 10000 {
			return out, total
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// checkAlternation checks that the transitions of one user alternate between
// online and offline, starting with online (users start offline) and, when
// wantFinal is set, end in that state. A transition made twice shows as two
// equal statuses in a row; a lost one as well. It returns the numbers of
// online and offline transitions.
func checkAlternation(t *testing.T, who string, trs []transition, wantFinal string) (on, off int) {
	t.Helper()
	prev := "offline"
	for i, tr := range trs {
		if tr.status == prev {
			t.Errorf("%s: transition %d is %s twice in a row (a duplicate or a lost transition):\n%v", who, i, tr.status, trs)
			return
		}
		switch tr.status {
		case "online":
			on++
			if tr.reason != "login" && tr.reason != "heartbeat" {
				t.Errorf("%s: online with reason %q", who, tr.reason)
			}
		case "offline":
			off++
			if tr.reason != "logout" && tr.reason != "expired" && tr.reason != "admin" {
				t.Errorf("%s: offline with reason %q", who, tr.reason)
			}
		default:
			t.Errorf("%s: unexpected status %q", who, tr.status)
		}
		prev = tr.status
	}
	if wantFinal != "" && prev != wantFinal {
		t.Errorf("%s: last transition leaves the user %s, want %s:\n%v", who, prev, wantFinal, trs)
	}
	return on, off
}

// userState is a user's presence fields in their durable hash.
func userState(t *testing.T, rdb *redis.Client, id int64) (status string, lastSeen time.Time) {
	t.Helper()
	v, err := rdb.HMGet(context.Background(), fmt.Sprintf("presence:{0}:user:%d", id), "online_status", "last_seen").Result()
	if err != nil {
		t.Fatalf("HMGET user %d: %v", id, err)
	}
	status, _ = v[0].(string)
	if status == "" {
		status = "offline"
	}
	ms, _ := v[1].(string)
	n, _ := strconv.ParseInt(ms, 10, 64)
	return status, time.UnixMilli(n)
}
