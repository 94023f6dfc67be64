package redisstore

import (
	"hash/fnv"
	"strconv"
	"strings"
)

// keys builds every Redis key name presenced uses. It is the only place that
// knows the layout; lua/lib.lua mirrors the per-shard names it needs and
// TestLuaKeysMatchGo keeps the two in step.
//
// A user lives in shard id % shards. IDs are allocated per shard (seq*shards +
// shard), and a username's shard is a hash of its normalised form, so the
// username index entry and the user it points to share a slot and can be
// created by one script.
type keys struct {
	prefix string
	shards int64
}

// tag is the shard's key prefix, e.g. "presence:{0}:".
func (k keys) tag(shard int64) string {
	return k.prefix + "{" + strconv.FormatInt(shard, 10) + "}:"
}

func (k keys) shardOfID(id int64) int64 {
	if id < 0 {
		id = -id
	}
	return id % k.shards
}

func (k keys) shardOfName(normalized string) int64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(normalized))
	return int64(h.Sum32()) % k.shards
}

// meta is a hash holding the layout parameters (shards) that must not change
// once data exists.
func (k keys) meta() string { return k.prefix + "meta" }

// seq is the shard's ID counter.
func (k keys) seq(shard int64) string { return k.tag(shard) + "seq" }

// names is the shard's username index: hash normalised username → id.
func (k keys) names(shard int64) string { return k.tag(shard) + "names" }

// user is the durable public user hash.
func (k keys) user(id int64) string { return k.tag(k.shardOfID(id)) + "user:" + itoa(id) }

// cred holds the password hash, apart from the public user hash.
func (k keys) cred(id int64) string { return k.tag(k.shardOfID(id)) + "cred:" + itoa(id) }

// sessions is the user's session records: hash session id → record.
func (k keys) sessions(id int64) string { return k.tag(k.shardOfID(id)) + "sessions:" + itoa(id) }

// live is a session's presence key; it exists (with a PX TTL) while the
// session is live.
func (k keys) live(id int64, sid string) string {
	return k.tag(k.shardOfID(id)) + "live:" + itoa(id) + ":" + sid
}

// deadlines is the shard's index of session deadlines: zset "uid:sid" →
// deadline in Unix ms.
func (k keys) deadlines(shard int64) string { return k.tag(shard) + "deadlines" }

// online is the shard's set of user IDs that are online or away.
func (k keys) online(shard int64) string { return k.tag(shard) + "online" }

// events is the shard's stream of transitions.
func (k keys) events(shard int64) string { return k.tag(shard) + "events" }

// idleScan holds the shard's cursor of the idle scan over the deadline index.
func (k keys) idleScan(shard int64) string { return k.tag(shard) + "idlescan" }

// ticket is a single-use SSE ticket; it is not per user, so it has no tag.
func (k keys) ticket(t string) string { return k.prefix + "ticket:" + t }

// loginTag is the key prefix, with its own hash tag, of the login attempt
// log of a normalised username (kind "user") or of a client address ("ip");
// neither can hold a brace. Each log stands alone (one script, one key), so
// Redis Cluster spreads them over the slots; login_limit.lua gets the tag as
// its prefix so that lib.lua's migration probe looks at the log's own slot.
func (k keys) loginTag(kind, v string) string { return k.prefix + "{login:" + kind + ":" + v + "}:" }

// loginAttempts is the attempt log under a loginTag: a sorted set of attempt
// IDs scored by time, with a TTL of the limit's window.
func (k keys) loginAttempts(tag string) string { return tag + "attempts" }

// member is a session's entry in the deadline index.
func member(id int64, sid string) string { return itoa(id) + ":" + sid }

// parseLive splits a live key name into user and session IDs; ok is false for
// any other key (the listener sees every expired key of the database).
func (k keys) parseLive(key string) (id int64, sid string, ok bool) {
	rest, found := strings.CutPrefix(key, k.prefix+"{")
	if !found {
		return 0, "", false
	}
	_, rest, found = strings.Cut(rest, "}:live:")
	if !found {
		return 0, "", false
	}
	uid, sid, found := strings.Cut(rest, ":")
	if !found || sid == "" {
		return 0, "", false
	}
	id, err := strconv.ParseInt(uid, 10, 64)
	if err != nil || id <= 0 {
		return 0, "", false
	}
	return id, sid, true
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
