package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/presence"
)

// Safe messages of the error responses.
const (
	msgInternal       = "Internal server error"
	msgUnavailable    = "Service temporarily unavailable"
	msgTooLarge       = "Request body too large (limit 64 KiB)"
	msgNotFound       = "Not found"
	msgNotAllowed     = "Method not allowed"
	msgTokenNotValid  = "Given token not valid for any token type"
	msgNotProvided    = "Authentication credentials were not provided."
	msgNoPermission   = "You do not have permission to perform this action."
	codeTokenNotValid = "token_not_valid"
	codeNotAuth       = "not_authenticated"
)

// errorBody is the OffChat handler error: {"error": "..."}.
type errorBody struct {
	Error string `json:"error"`
}

// authErrorBody is the shape of authentication and permission errors:
// {"detail": "...", "code": "..."}; code is absent for 403.
type authErrorBody struct {
	Detail string `json:"detail"`
	Code   string `json:"code,omitempty"`
}

// apiError is an error a handler refuses a request with: the status and the
// message the client sees.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// badRequest is a 400 with msg.
func badRequest(msg string) error { return &apiError{status: http.StatusBadRequest, msg: msg} }

// Errors of the authentication middleware that have no domain sentinel.
var (
	errNotAuthenticated    = errors.New("no bearer token")
	errMalformedAuthHeader = errors.New("malformed Authorization header")
	errPermissionDenied    = errors.New("role does not allow this operation")
	// errDraining is /readyz's answer once shutdown has begun.
	errDraining = errors.New("draining for shutdown")
)

// errorResponse is how one kind of error is answered.
type errorResponse struct {
	status int
	body   any
	// retry adds Retry-After: 1 (the store is unreachable; try again).
	retry bool
	// retryAfter, when set, is the Retry-After of a refusal that lasts
	// (a login limit), in place of retry's 1 second.
	retryAfter time.Duration
}

// errorTable maps sentinel errors to responses, first match wins. It is the
// one place where errors become status codes: handlers return errors, and
// respondError answers them.
var errorTable = []struct {
	err  error
	resp errorResponse
}{
	{errNotAuthenticated, errorResponse{status: http.StatusUnauthorized, body: authErrorBody{Detail: msgNotProvided, Code: codeNotAuth}}},
	{errMalformedAuthHeader, errorResponse{status: http.StatusUnauthorized, body: authErrorBody{Detail: msgTokenNotValid, Code: codeTokenNotValid}}},
	{auth.ErrInvalidToken, errorResponse{status: http.StatusUnauthorized, body: authErrorBody{Detail: msgTokenNotValid, Code: codeTokenNotValid}}},
	{presence.ErrSessionRevoked, errorResponse{status: http.StatusUnauthorized, body: authErrorBody{Detail: msgTokenNotValid, Code: codeTokenNotValid}}},
	{presence.ErrAccountInactive, errorResponse{status: http.StatusUnauthorized, body: authErrorBody{Detail: "User account is not active", Code: codeTokenNotValid}}},
	{presence.ErrRefreshReused, errorResponse{status: http.StatusUnauthorized, body: authErrorBody{Detail: "Token has already been used", Code: codeTokenNotValid}}},
	{errPermissionDenied, errorResponse{status: http.StatusForbidden, body: authErrorBody{Detail: msgNoPermission}}},
	{presence.ErrNotFound, errorResponse{status: http.StatusNotFound, body: errorBody{Error: "User not found"}}},
	{presence.ErrUsernameTaken, errorResponse{status: http.StatusBadRequest, body: errorBody{Error: "A user with that username already exists."}}},
	{presence.ErrInvalidCursor, errorResponse{status: http.StatusBadRequest, body: errorBody{Error: "Invalid cursor"}}},
	{errDraining, errorResponse{status: http.StatusServiceUnavailable, body: errorBody{Error: "Shutting down"}}},
	{presence.ErrUnavailable, errorResponse{status: http.StatusServiceUnavailable, body: errorBody{Error: msgUnavailable}, retry: true}},
	// The request's deadline ran out while waiting for the store: the
	// store is too slow to answer, which is unavailability too.
	{context.DeadlineExceeded, errorResponse{status: http.StatusServiceUnavailable, body: errorBody{Error: msgUnavailable}, retry: true}},
	// The client went away; nobody reads this answer.
	{context.Canceled, errorResponse{status: http.StatusServiceUnavailable, body: errorBody{Error: msgUnavailable}, retry: true}},
}

// classify finds the response for err; anything unknown is a 500.
func classify(err error) errorResponse {
	var ae *apiError
	if errors.As(err, &ae) {
		return errorResponse{status: ae.status, body: errorBody{Error: ae.msg}}
	}
	var ve *presence.ValidationError
	if errors.As(err, &ve) {
		return errorResponse{status: http.StatusBadRequest, body: errorBody{Error: ve.Field + " " + ve.Message}}
	}
	var tma *tooManyAttempts
	if errors.As(err, &tma) {
		return errorResponse{status: http.StatusTooManyRequests, body: errorBody{Error: msgTooManyAttempts}, retryAfter: tma.wait}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errorResponse{status: http.StatusRequestEntityTooLarge, body: errorBody{Error: msgTooLarge}}
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return e.resp
		}
	}
	return errorResponse{status: http.StatusInternalServerError, body: errorBody{Error: msgInternal}}
}

// respondError answers err and logs it, once: 5xx with their cause (a 500
// means a bug; a 503 an unreachable store), 4xx at debug level only (they
// are the client's mistakes, and the access log already has the status).
func (s *server) respondError(w http.ResponseWriter, r *http.Request, err error) {
	resp := classify(err)
	s.logError(r, resp.status, err)
	switch {
	case resp.retryAfter > 0:
		w.Header().Set("Retry-After", retryAfterSeconds(resp.retryAfter))
	case resp.retry:
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, resp.status, resp.body)
}

// abortStream logs err and breaks the response of a handler that has
// already sent its status: see allUsers.
func (s *server) abortStream(r *http.Request, err error) {
	s.logError(r, classify(err).status, err)
	panic(http.ErrAbortHandler)
}

func (s *server) logError(r *http.Request, status int, err error) {
	level := slog.LevelDebug
	switch {
	case errors.Is(err, context.Canceled):
		// The client went away: nothing is wrong on our side.
	case status == http.StatusInternalServerError:
		level = slog.LevelError
	case status >= 500:
		level = slog.LevelWarn
	}
	if !s.log.Enabled(r.Context(), level) {
		return
	}
	st := stateOf(r)
	attrs := []slog.Attr{slog.String("request_id", st.id), slog.Int("status", status), slog.String("error", err.Error())}
	if st.userID != 0 {
		attrs = append(attrs, slog.Int64("user_id", st.userID))
	}
	s.log.LogAttrs(r.Context(), level, "request failed", attrs...)
}

// notFound answers a path that no route matches.
func (s *server) notFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, errorBody{Error: msgNotFound})
}

// methodNotAllowed answers a known path asked with a method it does not
// serve.
func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: msgNotAllowed})
	})
}
