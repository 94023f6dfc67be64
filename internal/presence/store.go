package presence

import (
	"context"
	"time"
)

// Store keeps accounts, sessions and presence. internal/redisstore implements
// it on Redis; every method that reads-then-writes is atomic there.
//
// Methods return ErrUnavailable (wrapped) when the backing store cannot be
// reached, so callers can answer 503 instead of 500.
type Store interface {
	// CreateUser stores a new user with a fresh ID. It returns
	// ErrUsernameTaken when the normalised username exists.
	CreateUser(ctx context.Context, nu NewUser) (User, error)
	// User returns the user with id, with LiveSessions filled, or ErrNotFound.
	User(ctx context.Context, id int64) (User, error)
	// UserIDByUsername resolves a username case-insensitively, or ErrNotFound.
	UserIDByUsername(ctx context.Context, username string) (int64, error)
	// PasswordHash returns the stored password hash of id, or ErrNotFound.
	PasswordHash(ctx context.Context, id int64) (string, error)
	// UpdateUser applies upd and returns the result, or ErrNotFound. Moving the
	// account out of StatusActive ends every session at once (reason admin)
	// and bumps the token version.
	UpdateUser(ctx context.Context, id int64, upd UserUpdate) (User, error)
	// DeleteUser removes the user and ends their sessions; ErrNotFound when
	// absent. The username becomes free again; the ID is never reused.
	DeleteUser(ctx context.Context, id int64) error
	// ListUsers returns one page of users. A full pass (following Next until
	// it is "") returns every user that existed for the whole pass exactly
	// once. ErrInvalidCursor for a cursor it did not issue.
	ListUsers(ctx context.Context, q ListQuery) (Page, error)
	// CountUsers returns the number of users, in O(1).
	CountUsers(ctx context.Context) (int64, error)
	// OnlineUsers returns every user that is online or away.
	OnlineUsers(ctx context.Context) ([]User, error)
	// CountOnline returns the number of users that are online or away.
	CountOnline(ctx context.Context) (int64, error)
	// Statuses returns the presence of each known ID; unknown IDs are absent
	// from the map. At most MaxBulkIDs IDs.
	Statuses(ctx context.Context, ids []int64) (map[int64]Status, error)

	// StartSession creates a session for an active user and marks it live;
	// the user goes online (ReasonLogin) if they were offline. It returns the
	// session and the user as of after the login. ErrNotFound or
	// ErrAccountInactive.
	StartSession(ctx context.Context, userID int64, start SessionStart) (Session, User, error)
	// Touch keeps a session live for another TTL: the heartbeat and the
	// presence middleware. In the steady state it is one round trip and writes
	// nothing durable. A session whose TTL ran out is revived (the user goes
	// online again with ReasonHeartbeat). ErrSessionRevoked when the session
	// was ended or the token version is stale; ErrAccountInactive when the
	// account is no longer active.
	Touch(ctx context.Context, ref SessionRef) (Status, error)
	// TouchIdle is Touch for a heartbeat that reports no user activity (the
	// tab is hidden or the user idle): the session stays live but the
	// heartbeat does not count as activity, so after the away period without
	// activity the user is away.
	TouchIdle(ctx context.Context, ref SessionRef) (Status, error)
	// SetOnlineStatus sets a manual status override of the user: Away, or
	// Offline (invisible: everyone sees offline and a frozen last_seen), until
	// the given time (zero: no expiry); Online clears the override. reason is
	// ReasonManual or ReasonAdmin. An override never makes a user with no live
	// session look present. ErrNotFound.
	SetOnlineStatus(ctx context.Context, userID int64, status OnlineStatus, until time.Time, reason Reason) (User, error)
	// ReadTransitions returns up to count transitions after the opaque stream
	// position after ("" or "$": only transitions from now on; "0": from the
	// oldest retained), waiting up to block (0: no wait) for at least one.
	// Each returned Transition.ID is the position just after it (usable as an
	// SSE id); the second result is the position after the last one (after
	// itself, resolved, when none). ErrInvalidCursor for a malformed position.
	ReadTransitions(ctx context.Context, after string, count int, block time.Duration) ([]Transition, string, error)
	// IssueTicket stores a single-use ticket standing for ref, valid for ttl,
	// and returns it (random, URL-safe).
	IssueTicket(ctx context.Context, ref SessionRef, ttl time.Duration) (string, error)
	// RedeemTicket consumes a ticket and returns the session it stands for;
	// ErrNotFound when it is unknown, used or expired.
	RedeemTicket(ctx context.Context, ticket string) (SessionRef, error)
	// CheckSession verifies a session is not revoked without refreshing it,
	// and returns the user's current presence. Same errors as Touch.
	CheckSession(ctx context.Context, ref SessionRef) (Status, error)
	// EndSession ends one session; the user goes offline (reason) if no other
	// session is live. Ending an already-ended session returns
	// ErrSessionRevoked.
	EndSession(ctx context.Context, ref SessionRef, reason Reason) error
	// EndAllSessions ends every session of the user, bumps the token version
	// and marks the user offline (reason) if they were online. ErrNotFound.
	EndAllSessions(ctx context.Context, userID int64, reason Reason) error
	// RotateRefresh replaces the session's current refresh ID oldID by newID.
	// Presenting an ID that is not the current one ends the session and
	// returns ErrRefreshReused. ErrSessionRevoked when the session is gone or
	// the token version is stale; ErrAccountInactive.
	RotateRefresh(ctx context.Context, ref SessionRef, oldID, newID string, newExpires time.Time) error
	// Sessions lists the user's sessions (live or not, not yet ended).
	Sessions(ctx context.Context, userID int64) ([]Session, error)

	// Ping checks the store can be reached.
	Ping(ctx context.Context) error
}
