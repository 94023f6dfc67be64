// Package presence holds the domain of presenced: users, accounts, sessions,
// online/offline transitions, the rules that connect them, and the Store
// interface that adapters (internal/redisstore) implement. It imports neither
// Redis nor HTTP, so the rules can be read in one place.
//
// The rules, in short:
//   - A user is online while at least one of their sessions is live. A session
//     is live for the presence TTL after its last heartbeat or authenticated
//     request.
//   - Going online and going offline are transitions of the user, not of a
//     session. Each happens exactly once, atomically, and is recorded with a
//     Reason.
//   - Only active accounts can hold sessions; suspending, banning or deleting an
//     account ends every session at once.
package presence
