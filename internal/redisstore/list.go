package redisstore

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/presenced/presenced/internal/presence"
)

// Listing walks each shard's username index with HSCAN (or, for the
// online/away filters, the shard's online set with SSCAN, which is far
// smaller when few users are online) and loads each batch of users with the
// read script, one round trip per batch.
//
// HSCAN returns every element that exists for the whole iteration, and
// returns none twice while the hash only grows (Redis's reverse-binary cursor
// survives rehashing to a larger table); the username index only grows
// except on deletion. A page must hold exactly per_page rows, but HSCAN's
// COUNT is a hint: matches beyond the page are carried in the cursor as
// pending IDs and served first on the next page, so nothing is skipped and
// nothing is served twice.

const (
	cursorVersion   = 1
	sourceNames     = 0
	sourceOnline    = 1
	scanCountFilter = 1000
	readBatch       = 500
)

type listCursor struct {
	source  byte
	shard   int64
	scan    uint64
	started bool // scan of this shard has begun (scan==0 then means done)
	pending []int64
}

func (c listCursor) encode() string {
	b := []byte{cursorVersion, c.source}
	b = binary.AppendUvarint(b, uint64(c.shard))
	b = binary.AppendUvarint(b, c.scan)
	started := byte(0)
	if c.started {
		started = 1
	}
	b = append(b, started)
	b = binary.AppendUvarint(b, uint64(len(c.pending)))
	for _, id := range c.pending {
		b = binary.AppendUvarint(b, uint64(id))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, shards int64, source byte) (listCursor, error) {
	c := listCursor{source: source}
	if s == "" {
		return c, nil
	}
	bad := fmt.Errorf("redisstore: cursor: %w", presence.ErrInvalidCursor)
	if len(s) > 16384 {
		return c, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != cursorVersion || b[1] != source {
		return c, bad
	}
	b = b[2:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	shard, ok1 := next()
	scan, ok2 := next()
	if !ok1 || !ok2 || shard >= uint64(shards) || len(b) < 1 || b[0] > 1 {
		return c, bad
	}
	c.shard, c.scan, c.started = int64(shard), scan, b[0] == 1
	b = b[1:]
	n, ok := next()
	if !ok || n > 100000 {
		return c, bad
	}
	for i := uint64(0); i < n; i++ {
		id, ok := next()
		if !ok || id == 0 || id > 1<<62 {
			return c, bad
		}
		c.pending = append(c.pending, int64(id))
	}
	if len(b) != 0 {
		return c, bad
	}
	return c, nil
}

// ListUsers implements presence.Store.
func (s *Store) ListUsers(ctx context.Context, q presence.ListQuery) (presence.Page, error) {
	per := q.PerPage
	if per <= 0 {
		per = presence.DefaultPerPage
	}
	if per > presence.MaxPerPage {
		per = presence.MaxPerPage
	}
	source := byte(sourceNames)
	if q.OnlineStatus == presence.Online || q.OnlineStatus == presence.Away {
		source = sourceOnline
	}
	c, err := decodeCursor(q.Cursor, s.k.shards, source)
	if err != nil {
		return presence.Page{}, err
	}
	filtered := q.OnlineStatus != "" || q.Status != "" || q.Role != "" || q.Search != ""
	search := strings.ToLower(q.Search)
	match := func(u presence.User) bool {
		switch {
		case q.OnlineStatus != "" && u.OnlineStatus != q.OnlineStatus,
			q.Status != "" && u.Status != q.Status,
			q.Role != "" && u.Role != q.Role:
			return false
		case search == "":
			return true
		}
		for _, f := range []string{u.Username, u.Email, u.FirstName, u.LastName} {
			if strings.Contains(strings.ToLower(f), search) {
				return true
			}
		}
		return false
	}

	out := make([]presence.User, 0, per)
	seen := make(map[int64]bool, per)
	for len(out) < per && c.shard < s.k.shards {
		if len(c.pending) > 0 {
			// Load pending IDs in batches; matches past the page go back to
			// the front of pending, unread IDs stay behind them.
			n := min(len(c.pending), readBatch)
			batch := c.pending[:n]
			rest := c.pending[n:]
			users, err := s.readUsers(ctx, c.shard, batch)
			if err != nil {
				return presence.Page{}, err
			}
			var carry []int64
			for _, u := range users {
				if seen[u.ID] || !match(u) {
					continue
				}
				if len(out) < per {
					seen[u.ID] = true
					out = append(out, u)
				} else {
					carry = append(carry, u.ID)
				}
			}
			c.pending = append(carry, rest...)
			continue
		}
		if c.started && c.scan == 0 {
			c = listCursor{source: source, shard: c.shard + 1}
			continue
		}
		count := int64(per - len(out))
		if filtered {
			count = scanCountFilter
		}
		ids, next, err := s.scanIDs(ctx, source, c.shard, c.scan, count)
		if err != nil {
			return presence.Page{}, err
		}
		c.scan, c.started, c.pending = next, true, ids
	}
	total, err := s.CountUsers(ctx)
	if err != nil {
		return presence.Page{}, err
	}
	page := presence.Page{Users: out, Count: total}
	if c.shard < s.k.shards && (len(c.pending) > 0 || !(c.started && c.scan == 0) || c.shard+1 < s.k.shards) {
		page.Next = c.encode()
	}
	return page, nil
}

func (s *Store) scanIDs(ctx context.Context, source byte, shard int64, cursor uint64, count int64) ([]int64, uint64, error) {
	if source == sourceOnline {
		vals, next, err := s.rdb.SScan(ctx, s.k.online(shard), cursor, "", count).Result()
		if err != nil {
			return nil, 0, s.fail("list users: scan online", err)
		}
		return parseIDs(vals), next, nil
	}
	kv, next, err := s.rdb.HScan(ctx, s.k.names(shard), cursor, "", count).Result()
	if err != nil {
		return nil, 0, s.fail("list users: scan names", err)
	}
	vals := make([]string, 0, len(kv)/2)
	for i := 1; i < len(kv); i += 2 {
		vals = append(vals, kv[i])
	}
	return parseIDs(vals), next, nil
}
