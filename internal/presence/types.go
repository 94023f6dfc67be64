package presence

import (
	"strings"
	"time"
)

// Role is what a user may do. Admin endpoints need RoleAdmin; listing also
// accepts RoleModerator.
type Role string

// Roles.
const (
	RoleAdmin     Role = "admin"
	RoleModerator Role = "moderator"
	RoleUser      Role = "user"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	switch r {
	case RoleAdmin, RoleModerator, RoleUser:
		return true
	}
	return false
}

// CanList reports whether r may list users and read their statuses as staff.
func (r Role) CanList() bool { return r == RoleAdmin || r == RoleModerator }

// AccountStatus is the state of an account. Only StatusActive accounts can log
// in, heartbeat or appear online.
type AccountStatus string

// Account statuses.
const (
	StatusActive    AccountStatus = "active"
	StatusPending   AccountStatus = "pending"
	StatusSuspended AccountStatus = "suspended"
	StatusBanned    AccountStatus = "banned"
)

// Valid reports whether s is one of the known account statuses.
func (s AccountStatus) Valid() bool {
	switch s {
	case StatusActive, StatusPending, StatusSuspended, StatusBanned:
		return true
	}
	return false
}

// OnlineStatus is what other people see of a user.
type OnlineStatus string

// Online statuses.
const (
	Online  OnlineStatus = "online"
	Away    OnlineStatus = "away"
	Offline OnlineStatus = "offline"
)

// Valid reports whether s is one of the known online statuses.
func (s OnlineStatus) Valid() bool {
	switch s {
	case Online, Away, Offline:
		return true
	}
	return false
}

// Reason says why a transition happened.
type Reason string

// Transition reasons, as written to the transitions stream.
const (
	ReasonLogin     Reason = "login"
	ReasonHeartbeat Reason = "heartbeat"
	ReasonLogout    Reason = "logout"
	ReasonExpired   Reason = "expired"
	ReasonAdmin     Reason = "admin"
	// ReasonManual: the user set their own status (me/status/).
	ReasonManual Reason = "manual"
	// ReasonIdle: every live session of the user went without activity for
	// the away period, so the user is away.
	ReasonIdle Reason = "idle"
)

// User is an account together with its presence. LastSeen is the zero time
// when the user has never been seen.
type User struct {
	ID           int64
	Username     string
	Email        string
	FirstName    string
	LastName     string
	Role         Role
	Status       AccountStatus
	OnlineStatus OnlineStatus
	LastSeen     time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// TokenVersion is bumped whenever every token of the user must stop
	// working (logout-all, suspend, ban); tokens carry the version they were
	// issued under.
	TokenVersion int64
	// LiveSessions is the number of live sessions; filled only where the
	// method that returns the user says so.
	LiveSessions int
}

// IsOnline reports whether others see the user as present (online or away).
func (u User) IsOnline() bool { return u.OnlineStatus != "" && u.OnlineStatus != Offline }

// FullName is "First Last" with missing parts left out.
func (u User) FullName() string {
	return strings.TrimSpace(u.FirstName + " " + u.LastName)
}

// Session is one login (one device or browser tab).
type Session struct {
	// ID is unique per user (sessions are addressed by user ID and session ID).
	ID        string
	UserID    int64
	CreatedAt time.Time
	// LastSeen is the last heartbeat or authenticated request of this session.
	LastSeen  time.Time
	UserAgent string
	// Live reports whether the session's presence TTL has not run out.
	Live bool
}

// SessionRef names a session as an access token does.
type SessionRef struct {
	UserID    int64
	SessionID string
	// TokenVersion is the user's token version the token was issued under.
	TokenVersion int64
}

// SessionStart describes a new session at login.
type SessionStart struct {
	UserAgent string
	// RefreshID is the ID (jti) of the session's first refresh token; only the
	// latest refresh ID of a session is accepted.
	RefreshID string
	// RefreshExpires is when the refresh token, and with it the session, ends.
	RefreshExpires time.Time
}

// Status is a user's presence as seen by others.
type Status struct {
	OnlineStatus OnlineStatus
	LastSeen     time.Time
	// Revived is set by Touch and TouchIdle when the session's TTL had run
	// out and the call brought it back (for metrics).
	Revived bool
}

// NewUser is what CreateUser needs. Username must already be validated with
// ValidateUsername; PasswordHash is an already-hashed password.
type NewUser struct {
	Username     string
	Email        string
	FirstName    string
	LastName     string
	Role         Role
	Status       AccountStatus
	PasswordHash string
}

// UserUpdate changes the non-nil fields of a user.
type UserUpdate struct {
	Email     *string
	FirstName *string
	LastName  *string
	Role      *Role
	Status    *AccountStatus
}

// ListQuery selects a page of users. Empty filter fields match everything.
type ListQuery struct {
	// Cursor is the opaque cursor of a previous Page, or "" to start.
	Cursor string
	// PerPage is the page size, 1 to MaxPerPage.
	PerPage      int
	OnlineStatus OnlineStatus
	Status       AccountStatus
	Role         Role
	// Search matches a case-insensitive substring of username, email, first
	// or last name.
	Search string
}

// Page is one page of a user listing.
type Page struct {
	Users []User
	// Next is the cursor of the next page, or "" when the pass is complete.
	Next string
	// Count is the total number of users (not only those matching filters).
	Count int64
}

// Transition is one online/offline change of a user, as appended to the
// transitions stream.
type Transition struct {
	// ID is the stream entry ID.
	ID           string
	UserID       int64
	Username     string
	OnlineStatus OnlineStatus
	LastSeen     time.Time
	Reason       Reason
	At           time.Time
}

// Limits of the API and the store.
const (
	// MaxPerPage is the largest page a listing returns.
	MaxPerPage = 1000
	// DefaultPerPage is the page size when none is asked for.
	DefaultPerPage = 20
	// MaxBulkIDs is the most user IDs one bulk status call takes.
	MaxBulkIDs = 1000
)
