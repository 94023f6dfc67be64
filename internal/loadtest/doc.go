// Package loadtest is presenced's benchmark suite: it starts its own
// redis-server (from PATH, on a free loopback port, never 6379) and its own
// presenced (a child process wired from the same packages as cmd/presenced),
// loads data directly through internal/redisstore, drives the HTTP API with a
// closed-loop keep-alive load generator, and reports each figure next to a
// baseline measured in the same run on the same machine.
//
// Scenarios (see Suite): heartbeat throughput and latency against a bare Go
// HTTP handler; Redis commands, round trips and CPU per heartbeat against
// SET EX; Redis memory per registered and per online user; offline detection
// lag at a million online users against Redis's own expiry events; the admin
// listing; bulk status; the presence refresh's share of an authenticated
// request; gateway batch heartbeats; and heartbeats on a local 3-master Redis
// Cluster against one redis-server (throughput, Redis CPU per heartbeat, and
// how evenly Redis CPU spreads over the shards).
//
// Every run bounds its time and memory (redis-server gets a maxmemory, every
// phase a deadline) and removes what it started: processes are killed and
// temporary directories deleted, also when a run fails.
package loadtest
