package httpapi

import (
	"time"

	"github.com/presenced/presenced/internal/presence"
)

// timeFormat is RFC 3339 with milliseconds; times are written in UTC, so the
// zone is always "Z".
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// jsonTime is a time written as timeFormat in UTC, or null when zero.
type jsonTime time.Time

// MarshalJSON implements json.Marshaler.
func (t jsonTime) MarshalJSON() ([]byte, error) {
	return appendTime(make([]byte, 0, len(timeFormat)+2), time.Time(t)), nil
}

// appendTime appends t as a JSON string in timeFormat, or null.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, timeFormat)
	return append(b, '"')
}

// userJSON is a user as every endpoint returns it.
type userJSON struct {
	ID           int64                  `json:"id"`
	Username     string                 `json:"username"`
	Email        string                 `json:"email"`
	FirstName    string                 `json:"first_name"`
	LastName     string                 `json:"last_name"`
	FullName     string                 `json:"full_name"`
	Role         presence.Role          `json:"role"`
	Status       presence.AccountStatus `json:"status"`
	IsActive     bool                   `json:"is_active"`
	OnlineStatus presence.OnlineStatus  `json:"online_status"`
	IsOnline     bool                   `json:"is_online"`
	LastSeen     jsonTime               `json:"last_seen"`
	CreatedAt    jsonTime               `json:"created_at"`
	UpdatedAt    jsonTime               `json:"updated_at"`
	// LiveSessions is the number of live sessions (0 while the user is
	// seen offline, invisible included). Beyond the OffChat contract.
	LiveSessions int `json:"live_sessions"`
}

func newUserJSON(u presence.User) userJSON {
	return userJSON{
		ID:           u.ID,
		Username:     u.Username,
		Email:        u.Email,
		FirstName:    u.FirstName,
		LastName:     u.LastName,
		FullName:     u.FullName(),
		Role:         u.Role,
		Status:       u.Status,
		IsActive:     u.Status == presence.StatusActive,
		OnlineStatus: onlineStatus(u.OnlineStatus),
		IsOnline:     u.IsOnline(),
		LastSeen:     jsonTime(u.LastSeen),
		CreatedAt:    jsonTime(u.CreatedAt),
		UpdatedAt:    jsonTime(u.UpdatedAt),
		LiveSessions: u.LiveSessions,
	}
}

func newUsersJSON(us []presence.User) []userJSON {
	out := make([]userJSON, len(us))
	for i, u := range us {
		out[i] = newUserJSON(u)
	}
	return out
}

// onlineStatus writes a user never seen ("") as offline.
func onlineStatus(s presence.OnlineStatus) presence.OnlineStatus {
	if s == "" {
		return presence.Offline
	}
	return s
}

// statusJSON is a user's presence.
type statusJSON struct {
	OnlineStatus presence.OnlineStatus `json:"online_status"`
	LastSeen     jsonTime              `json:"last_seen"`
}

func newStatusJSON(s presence.Status) statusJSON {
	return statusJSON{OnlineStatus: onlineStatus(s.OnlineStatus), LastSeen: jsonTime(s.LastSeen)}
}

// sessionJSON is one session of a user, for admins.
type sessionJSON struct {
	ID        string   `json:"id"`
	CreatedAt jsonTime `json:"created_at"`
	LastSeen  jsonTime `json:"last_seen"`
	UserAgent string   `json:"user_agent"`
	Live      bool     `json:"live"`
}

func newSessionJSON(s presence.Session) sessionJSON {
	return sessionJSON{
		ID:        s.ID,
		CreatedAt: jsonTime(s.CreatedAt),
		LastSeen:  jsonTime(s.LastSeen),
		UserAgent: s.UserAgent,
		Live:      s.Live,
	}
}
