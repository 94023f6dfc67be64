// Package auth hashes passwords and issues and verifies the JSON Web Tokens
// that presenced hands to clients. It knows nothing of Redis or HTTP: it turns
// a presence.SessionRef into a token pair and a token back into a
// presence.SessionRef, and leaves every question of whether that session still
// exists to the store.
//
// # Passwords
//
// Passwords are hashed with bcrypt after an HMAC-SHA256 pre-hash, so that the
// whole password counts (bcrypt alone reads only the first 72 bytes, and a
// 128-character password can be 512 bytes of UTF-8). Hasher.VerifyNone lets
// a login for an unknown username spend as long as a wrong password does, so
// response time does not tell an attacker which usernames exist.
//
// # Tokens
//
// Tokens are HS256 JWTs; the parser accepts HS256 and nothing else, so "alg":
// "none", other HMAC sizes and the RS256/HS256 key-confusion attack are all
// refused before any key is used. Every token carries:
//
//	iss  the configured issuer
//	sub  the user ID, as a decimal string
//	sid  the session ID (one session per login, i.e. per device or tab)
//	tv   the user's token version at issue time
//	typ  "access" or "refresh"; ParseAccess refuses refresh tokens and
//	     ParseRefresh refuses access tokens
//	jti  128 random bits, base64url
//	iat, exp
//
// A valid signature and expiry only say that presenced issued the token and
// that it has not timed out; they do not say the session is still open.
// Revocation is enforced by the store: every authenticated request checks the
// token's session and token version in the same Redis round trip that
// refreshes the session's presence, so a token whose session was ended
// (logout, logout-all, force-logout, suspension, deletion) stops working on
// the very next request, without a deny-list of tokens. Bumping the user's
// token version ends every token issued before the bump in the same way.
//
// Refresh tokens are single-use and rotate: the store keeps the jti of the
// current refresh token of each session (Pair.RefreshID), and a refresh swaps
// it for the jti of the new pair atomically. Presenting a refresh token whose
// jti is no longer current means it was copied, so the store ends the session.
package auth
