// Package chaos holds presenced's fault scenarios: automated, time-bounded
// tests that run the real presenced binary and real redis-server processes on
// loopback, break them (Redis stopped or frozen, presenced killed with
// SIGKILL or stopped with SIGTERM under load, one of two replicas killed, a
// mass expiry flooding the keyspace listener, racing requests) and then check
// what the contract promises: answers stay JSON and bounded in time, no
// transition is lost or made twice, nobody stays online past the offline
// bound, no durable data is lost.
//
// The package has only tests. They are slow (about two minutes in all) and
// need redis-server, so they run only with PRESENCE_CHAOS=1, which `make
// chaos` (and so CI) sets; otherwise each skips and says so.
package chaos
