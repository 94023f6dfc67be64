package presence

import "errors"

// Sentinel errors returned by Store implementations and the services built on
// them. The HTTP layer maps each to a status code in one table.
var (
	// ErrNotFound: the user (or session) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUsernameTaken: another user has this username (case-insensitively).
	ErrUsernameTaken = errors.New("username already taken")
	// ErrSessionRevoked: the session was ended (logout, logout-all,
	// force-logout, suspension, deletion) or the token version is stale.
	ErrSessionRevoked = errors.New("session revoked")
	// ErrAccountInactive: the account is pending, suspended or banned.
	ErrAccountInactive = errors.New("account not active")
	// ErrRefreshReused: a refresh token that was already rotated was presented
	// again; the session it belonged to has been ended.
	ErrRefreshReused = errors.New("refresh token already used")
	// ErrInvalidCursor: a listing cursor that this service did not issue.
	ErrInvalidCursor = errors.New("invalid cursor")
	// ErrUnavailable: the backing store cannot be reached.
	ErrUnavailable = errors.New("store unavailable")
)

// ValidationError reports bad input for one field; the HTTP layer answers 400
// with its message.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// Invalid returns a *ValidationError for field.
func Invalid(field, message string) error { return &ValidationError{Field: field, Message: message} }
