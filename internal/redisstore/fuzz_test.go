package redisstore

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redistest"
)

// FuzzDecodeCursor feeds the listing's cursor decoder arbitrary strings (a
// cursor comes straight from a query parameter). It must never panic, refuse
// with ErrInvalidCursor only, and accept only cursors that encode back to
// what it decoded.
func FuzzDecodeCursor(f *testing.F) {
	for _, c := range []listCursor{
		{},
		{source: sourceNames, shard: 0, scan: 17, started: true},
		{source: sourceOnline, shard: 2, scan: 1 << 40, started: true, pending: []int64{1, 42, 1 << 50}},
		{source: sourceNames, shard: 3, started: false, pending: []int64{7}},
	} {
		f.Add(c.encode(), uint8(4), c.source)
	}
	f.Add("", uint8(1), byte(sourceNames))
	f.Add("AQA", uint8(1), byte(sourceNames))
	f.Add("not base64!", uint8(1), byte(sourceOnline))
	f.Fuzz(func(t *testing.T, s string, shards uint8, source byte) {
		n := int64(shards%16) + 1
		source %= 2
		c, err := decodeCursor(s, n, source)
		if err != nil {
			if !errors.Is(err, presence.ErrInvalidCursor) {
				t.Fatalf("decodeCursor(%q): got %v, want ErrInvalidCursor", s, err)
			}
			return
		}
		if s == "" {
			return
		}
		if c.shard < 0 || c.shard >= n || c.source != source {
			t.Fatalf("decodeCursor(%q) accepted shard %d of %d, source %d (want %d)", s, c.shard, n, c.source, source)
		}
		for _, id := range c.pending {
			if id <= 0 {
				t.Fatalf("decodeCursor(%q) accepted pending id %d", s, id)
			}
		}
		again, err := decodeCursor(c.encode(), n, source)
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("decodeCursor(%q) = %+v, whose encoding decodes to %+v, %v", s, c, again, err)
		}
	})
}

// FuzzReadTransitions feeds stream positions (the SSE Last-Event-ID and
// ?last_event_id=) to ReadTransitions on a real redis-server, with one and
// with three shards. It must never fail with anything but ErrInvalidCursor
// (a Redis error would be a 500), and every position it returns must be
// accepted back.
func FuzzReadTransitions(f *testing.F) {
	srv := redistest.Start(f)
	rdb := srv.Client(f)
	ctx := context.Background()
	stores := map[int]*Store{}
	for _, shards := range []int{1, 3} {
		st, err := New(rdb, Config{Prefix: "fuzz" + string(rune('0'+shards)) + ":", Shards: shards, TTL: time.Minute})
		if err != nil {
			f.Fatal(err)
		}
		if err := st.Prepare(ctx); err != nil {
			f.Fatal(err)
		}
		// A few transitions in the streams, so reads return something.
		for _, name := range []string{"alpha", "bravo", "charlie", "delta"} {
			u, err := st.CreateUser(ctx, presence.NewUser{Username: name, Role: presence.RoleUser, Status: presence.StatusActive, PasswordHash: "x"})
			if err != nil && !errors.Is(err, presence.ErrUsernameTaken) {
				f.Fatal(err)
			}
			if err == nil {
				if _, _, err := st.StartSession(ctx, u.ID, presence.SessionStart{RefreshID: "r", RefreshExpires: time.Now().Add(time.Hour)}); err != nil {
					f.Fatal(err)
				}
			}
		}
		stores[shards] = st
	}
	for _, seed := range []string{"", "$", "0", "0-0", "1-1", "0-0,0-0,0-0", "18446744073709551615-18446744073709551615",
		"18446744073709551616", "1-", "-1", "+", "-", "1-2-3", " 1-0", "0-0,0-0", "0-0,,0-0", "１-0", strings.Repeat("9", 50)} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, after string, three bool) {
		st := stores[1]
		if three {
			st = stores[3]
		}
		trs, pos, err := st.ReadTransitions(ctx, after, 3, 0)
		if err != nil {
			if !errors.Is(err, presence.ErrInvalidCursor) {
				t.Fatalf("ReadTransitions(%q): got %v, want success or ErrInvalidCursor", after, err)
			}
			return
		}
		for _, p := range append([]string{pos}, ids(trs)...) {
			if _, _, err := st.ReadTransitions(ctx, p, 1, 0); err != nil {
				t.Fatalf("ReadTransitions(%q) returned position %q, which is refused: %v", after, p, err)
			}
		}
	})
}

func ids(trs []presence.Transition) []string {
	out := make([]string, len(trs))
	for i, tr := range trs {
		out[i] = tr.ID
	}
	return out
}
