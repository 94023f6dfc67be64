package presence

import (
	"net/mail"
	"strings"
	"unicode/utf8"
)

// Username and password limits from the contract.
const (
	MinUsernameLen = 3
	MaxUsernameLen = 150
	MinPasswordLen = 8
	MaxPasswordLen = 128
	MaxEmailLen    = 254
	MaxNameLen     = 150
)

// ValidateUsername checks a username: 3–150 characters of ASCII letters,
// digits and @.+-_. Non-ASCII letters are refused rather than folded, so that
// look-alike names (Cyrillic "а" for Latin "a") cannot impersonate anyone.
func ValidateUsername(name string) error {
	if len(name) < MinUsernameLen || len(name) > MaxUsernameLen {
		return Invalid("username", "must be 3 to 150 characters")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '@', c == '.', c == '+', c == '-', c == '_':
		default:
			return Invalid("username", "may contain only letters, digits and @.+-_")
		}
	}
	return nil
}

// NormalizeUsername is the form under which usernames are unique.
func NormalizeUsername(name string) string { return strings.ToLower(name) }

// ValidatePassword checks the length of a password (8–128 characters).
func ValidatePassword(pw string) error {
	n := utf8.RuneCountInString(pw)
	if n < MinPasswordLen || n > MaxPasswordLen {
		return Invalid("password", "must be 8 to 128 characters")
	}
	return nil
}

// ValidateEmail accepts "" (no email) or a single plain address.
func ValidateEmail(email string) error {
	if email == "" {
		return nil
	}
	if len(email) > MaxEmailLen {
		return Invalid("email", "is too long")
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" {
		return Invalid("email", "is not a valid address")
	}
	return nil
}

// ValidateName checks a first or last name.
func ValidateName(field, v string) error {
	if utf8.RuneCountInString(v) > MaxNameLen || !utf8.ValidString(v) {
		return Invalid(field, "must be at most 150 characters")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return Invalid(field, "must not contain control characters")
		}
	}
	return nil
}
