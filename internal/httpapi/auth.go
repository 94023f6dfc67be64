package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/presence"
)

// tokensJSON is a token pair.
type tokensJSON struct {
	Access  string `json:"access"`
	Refresh string `json:"refresh"`
}

// sessionResponse answers login and register; Tokens is absent when the
// registration is pending.
type sessionResponse struct {
	User   userJSON    `json:"user"`
	Tokens *tokensJSON `json:"tokens,omitempty"`
}

// messageResponse is {"message": "..."}.
type messageResponse struct {
	Message string `json:"message"`
}

type registerRequest struct {
	Username  string `json:"username"`
	Email     string `json:"email"`
	Password  string `json:"password"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
}

// register creates an account: pending, or active and logged in, or
// refused, by the registration mode.
func (s *server) register(w http.ResponseWriter, r *http.Request) {
	if s.registration == RegistrationClosed {
		s.respondError(w, r, &apiError{status: http.StatusForbidden, msg: "Registration is closed"})
		return
	}
	var req registerRequest
	if err := decodeJSON(r, &req); err != nil {
		s.respondError(w, r, err)
		return
	}
	nu := presence.NewUser{
		Username: req.Username, Email: req.Email, FirstName: req.FirstName, LastName: req.LastName,
		Role: presence.RoleUser, Status: presence.StatusPending,
	}
	if s.registration == RegistrationOpen {
		nu.Status = presence.StatusActive
	}
	if err := s.prepareNewUser(&nu, req.Password); err != nil {
		s.respondError(w, r, err)
		return
	}
	u, err := s.store.CreateUser(r.Context(), nu)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	stateOf(r).userID = u.ID
	if nu.Status != presence.StatusActive {
		writeJSON(w, http.StatusCreated, sessionResponse{User: newUserJSON(u)})
		return
	}
	u, tokens, err := s.startSession(r, u.ID)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, sessionResponse{User: newUserJSON(u), Tokens: &tokens})
}

// prepareNewUser validates the fields of nu and password, then stores the
// password's hash in nu.
func (s *server) prepareNewUser(nu *presence.NewUser, password string) error {
	if nu.Username == "" {
		return badRequest("username is required")
	}
	if password == "" {
		return badRequest("password is required")
	}
	for _, err := range []error{
		presence.ValidateUsername(nu.Username),
		presence.ValidatePassword(password),
		presence.ValidateEmail(nu.Email),
		presence.ValidateName("first_name", nu.FirstName),
		presence.ValidateName("last_name", nu.LastName),
	} {
		if err != nil {
			return err
		}
	}
	hash, err := s.hasher.Hash(password)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	nu.PasswordHash = hash
	return nil
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Login refusals.
var (
	errInvalidCredentials = &apiError{status: http.StatusUnauthorized, msg: "Invalid credentials"}
	// Account states, told only to someone who knows the password.
	errAccountPending   = &apiError{status: http.StatusForbidden, msg: "Account is pending approval"}
	errAccountSuspended = &apiError{status: http.StatusForbidden, msg: "Account is suspended"}
	errAccountBanned    = &apiError{status: http.StatusForbidden, msg: "Account is banned"}
	errAccountInactive  = &apiError{status: http.StatusForbidden, msg: "Account is not active"}
)

// login checks the credentials and starts a session.
func (s *server) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := decodeJSON(r, &req); err != nil {
		s.respondError(w, r, err)
		return
	}
	switch {
	case req.Username == "":
		s.respondError(w, r, badRequest("username is required"))
		return
	case req.Password == "":
		s.respondError(w, r, badRequest("password is required"))
		return
	case len(req.Username) > presence.MaxUsernameLen:
		s.respondError(w, r, badRequest("username must be at most 150 characters"))
		return
	case utf8.RuneCountInString(req.Password) > presence.MaxPasswordLen:
		s.respondError(w, r, badRequest("password must be at most 128 characters"))
		return
	}
	ctx := r.Context()
	ip := s.clientIP(r)
	attempt, err := s.acquireLogin(ctx, req.Username, ip)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	var id int64
	var hash string
	if presence.ValidateUsername(req.Username) != nil {
		// No account can be named so. Not looked up: the store folds case
		// with Unicode rules, and "\u212Aelvin" (Kelvin sign) would find
		// "kelvin".
		err = presence.ErrNotFound
	} else if id, err = s.store.UserIDByUsername(ctx, req.Username); err == nil {
		hash, err = s.store.PasswordHash(ctx, id)
	}
	if errors.Is(err, presence.ErrNotFound) {
		// Burn the time of a failed check, so that the answer does not
		// tell whether the user exists.
		s.hasher.VerifyNone(req.Password)
		s.respondError(w, r, errInvalidCredentials)
		return
	}
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	if !s.hasher.Verify(hash, req.Password) {
		s.respondError(w, r, errInvalidCredentials)
		return
	}
	s.loginSucceeded(ctx, req.Username, ip, attempt)
	stateOf(r).userID = id
	u, tokens, err := s.startSession(r, id)
	if errors.Is(err, presence.ErrAccountInactive) {
		err = s.inactiveAccount(ctx, id)
	}
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, sessionResponse{User: newUserJSON(u), Tokens: &tokens})
}

// acquireLogin counts a login attempt against the brute-force limits before
// the password is checked (so a guesser over the limit costs no bcrypt), or
// refuses it with 429. It returns the attempt's ID for loginSucceeded.
func (s *server) acquireLogin(ctx context.Context, username, ip string) (string, error) {
	if s.limiter == nil {
		return "", nil
	}
	id, wait, err := s.limiter.Acquire(ctx, username, ip)
	if err != nil {
		return "", err
	}
	if wait > 0 {
		return "", &tooManyAttempts{wait: wait}
	}
	return id, nil
}

// loginSucceeded takes a login whose password was right out of the limits:
// only failures count. The login goes on if this fails; the attempt then
// counts as a failure until its window passes.
func (s *server) loginSucceeded(ctx context.Context, username, ip, attempt string) {
	if s.limiter == nil {
		return
	}
	if err := s.limiter.Succeeded(ctx, username, ip, attempt); err != nil {
		s.log.Warn("login limit: could not take back a successful attempt", "error", err)
	}
}

// inactiveAccount returns the login refusal that names the account state of
// user id. The state is read only on this path, so a successful login costs
// no extra round trip.
func (s *server) inactiveAccount(ctx context.Context, id int64) error {
	u, err := s.store.User(ctx, id)
	if err != nil {
		return err
	}
	switch u.Status {
	case presence.StatusPending:
		return errAccountPending
	case presence.StatusSuspended:
		return errAccountSuspended
	case presence.StatusBanned:
		return errAccountBanned
	}
	// Reactivated in the meantime: still refuse this attempt.
	return errAccountInactive
}

// maxUserAgentBytes is how much of the User-Agent a session keeps.
const maxUserAgentBytes = 256

// startSession starts a session of user id for the request r and issues its
// tokens. It returns the user as of after the login.
//
// The store needs the session's refresh ID to start the session, and the
// tokens need the session ID the store allocates, so the refresh ID and
// expiry are chosen first (Tokens.NewRefresh) and signed after: one store
// round trip per login.
func (s *server) startSession(r *http.Request, id int64) (presence.User, tokensJSON, error) {
	ctx := r.Context()
	refreshID, refreshExp, err := s.tokens.NewRefresh()
	if err != nil {
		return presence.User{}, tokensJSON{}, err
	}
	sess, u, err := s.store.StartSession(ctx, id, presence.SessionStart{
		UserAgent:      truncateUTF8(r.UserAgent(), maxUserAgentBytes),
		RefreshID:      refreshID,
		RefreshExpires: refreshExp,
	})
	if err != nil {
		return presence.User{}, tokensJSON{}, err
	}
	ref := presence.SessionRef{UserID: id, SessionID: sess.ID, TokenVersion: u.TokenVersion}
	pair, err := s.tokens.IssueWith(ref, refreshID, refreshExp)
	if err != nil {
		// Do not leave a session online that nobody holds tokens for.
		_ = s.store.EndSession(context.WithoutCancel(ctx), ref, presence.ReasonLogout)
		return presence.User{}, tokensJSON{}, err
	}
	return u, tokensJSON{Access: pair.Access, Refresh: pair.Refresh}, nil
}

// truncateUTF8 cuts s to at most n bytes of valid UTF-8.
func truncateUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

type logoutRequest struct {
	Refresh      string `json:"refresh"`
	RefreshToken string `json:"refresh_token"` // OffChat's name
}

// logout ends the caller's session. The session is named by the bearer
// access token when it is valid, otherwise by the refresh token of the body,
// so that a client whose access token expired can still log out. A refresh
// token of another session of the same user in the body ends that one too.
func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	st := stateOf(r)
	authErr := s.authorize(r, st, authCheck, anyRole)
	if authErr != nil && classify(authErr).status != http.StatusUnauthorized {
		s.respondError(w, r, authErr) // the store is down: no fallback helps
		return
	}
	var req logoutRequest
	if err := decodeJSON(r, &req); err != nil {
		s.respondError(w, r, err)
		return
	}
	bodyToken := req.Refresh
	if bodyToken == "" {
		bodyToken = req.RefreshToken
	}
	ref := st.ref
	if authErr != nil {
		if bodyToken == "" {
			s.respondError(w, r, authErr)
			return
		}
		claims, err := s.tokens.ParseRefresh(bodyToken)
		if err != nil {
			s.respondError(w, r, err)
			return
		}
		ref, bodyToken = claims.SessionRef, ""
		st.userID = ref.UserID
	}
	if err := s.store.EndSession(r.Context(), ref, presence.ReasonLogout); err != nil {
		s.respondError(w, r, err)
		return
	}
	if bodyToken != "" {
		// A token that is not valid, or names the same session or another
		// user's, is ignored: this session is already logged out, which is
		// what the client asked for.
		if claims, err := s.tokens.ParseRefresh(bodyToken); err == nil &&
			claims.UserID == ref.UserID && claims.SessionID != ref.SessionID {
			err := s.store.EndSession(r.Context(), claims.SessionRef, presence.ReasonLogout)
			if err != nil && !errors.Is(err, presence.ErrSessionRevoked) {
				s.respondError(w, r, err)
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, messageResponse{Message: "Logout successful"})
}

// logoutAll ends every session of the caller.
func (s *server) logoutAll(w http.ResponseWriter, r *http.Request) {
	if err := decodeJSON(r, &struct{}{}); err != nil {
		s.respondError(w, r, err)
		return
	}
	if err := s.store.EndAllSessions(r.Context(), stateOf(r).userID, presence.ReasonLogout); err != nil {
		s.respondError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, messageResponse{Message: "Logged out from all devices"})
}

type refreshRequest struct {
	Refresh string `json:"refresh"`
}

// refresh rotates a refresh token: a new pair for the same session. The
// store refuses a refresh ID that is not the session's current one, and
// ends the session then (the token was copied).
func (s *server) refresh(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if err := decodeJSON(r, &req); err != nil {
		s.respondError(w, r, err)
		return
	}
	if req.Refresh == "" {
		s.respondError(w, r, badRequest("refresh is required"))
		return
	}
	claims, err := s.tokens.ParseRefresh(req.Refresh)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	stateOf(r).userID = claims.UserID
	pair, err := s.tokens.Issue(claims.SessionRef)
	if err == nil {
		err = s.store.RotateRefresh(r.Context(), claims.SessionRef, claims.ID, pair.RefreshID, pair.RefreshExpires)
	}
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, tokensJSON{Access: pair.Access, Refresh: pair.Refresh})
}

type verifyRequest struct {
	Token string `json:"token"`
}

// verify answers whether a token (access or refresh) is genuine, unexpired
// and of a session that was not ended. It changes nothing.
func (s *server) verify(w http.ResponseWriter, r *http.Request) {
	var req verifyRequest
	if err := decodeJSON(r, &req); err != nil {
		s.respondError(w, r, err)
		return
	}
	if req.Token == "" {
		s.respondError(w, r, badRequest("token is required"))
		return
	}
	claims, err := s.tokens.ParseAccess(req.Token)
	if errors.Is(err, auth.ErrInvalidToken) {
		claims, err = s.tokens.ParseRefresh(req.Token)
	}
	if err == nil {
		_, err = s.store.CheckSession(r.Context(), claims.SessionRef)
	}
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	writeJSONBytes(w, http.StatusOK, []byte("{}"))
}

// profile answers the caller.
func (s *server) profile(w http.ResponseWriter, r *http.Request) {
	u, err := s.store.User(r.Context(), stateOf(r).userID)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newUserJSON(u))
}
