// Package redisstore implements presence.Store on Redis.
//
// Layout (documented for other services in api/redis-schema.md; every key
// name is built in keys.go): all keys of one user, and the per-shard indexes
// those keys are entered in, share the hash tag of the user's shard, so every
// script touches one slot and runs unchanged on Redis Cluster. With the
// default of one shard the tag is constant ({0}).
//
// Presence is two things per session: a live key with a PX TTL (the truth:
// the session is live while the key exists) and an entry in the shard's
// deadline index (a sorted set scored by the deadline). The steady-state
// heartbeat is one pipelined round trip of two plain commands, SET XX PX and
// ZADD XX: XX means a session that was ended can never be brought back by a
// late heartbeat, and that revocation is checked in the same round trip.
// Everything that reads-then-writes is one embedded Lua script.
//
// Offline detection has two paths that race harmlessly: the Listener reacts to
// keyspace "expired" events (fast, but late and lossy), and Sweep walks the
// head of the deadline index (guaranteed). Both run the same script, which
// acts only if the session's index entry is still there, so whichever comes
// first wins and the other does nothing.
//
// On a Redis Cluster (the client is a *redis.ClusterClient; see cluster.go)
// the same code runs with three differences: scripts start with a guard that
// refuses to run while their slot is being migrated (lua/cluster_guard.lua),
// ReadTransitions reads each shard's stream with its own XREAD and polls
// instead of blocking, and the Listener subscribes on every master and
// follows the cluster's topology. Heartbeats share pipelines per master.
package redisstore
