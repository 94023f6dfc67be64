package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/presenced/presenced/internal/presence"
)

// maxSearchLen is the longest search string of a listing, in characters.
const maxSearchLen = 150

// userPage is one page of the admin listing.
type userPage struct {
	Count    int64      `json:"count"`
	Next     *string    `json:"next"`
	Previous *string    `json:"previous"` // always null: SCAN cursors only go forward
	Results  []userJSON `json:"results"`
}

// listUsers answers one page of users, filtered.
func (s *server) listUsers(w http.ResponseWriter, r *http.Request) {
	q, err := parseListQuery(r.URL.RawQuery)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	page, err := s.store.ListUsers(r.Context(), q)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	resp := userPage{Count: page.Count, Results: newUsersJSON(page.Users)}
	if page.Next != "" {
		next := nextPageURL(r, q, page.Next)
		resp.Next = &next
	}
	writeJSON(w, http.StatusOK, resp)
}

// parseListQuery reads and validates the query of a listing. Unknown
// parameters are ignored; a known one with a bad value is a 400.
func parseListQuery(raw string) (presence.ListQuery, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return presence.ListQuery{}, badRequest("Invalid query string")
	}
	q := presence.ListQuery{PerPage: presence.DefaultPerPage, Cursor: v.Get("cursor")}
	if pp := v.Get("per_page"); pp != "" {
		n, err := strconv.Atoi(pp)
		if err != nil || n < 1 || n > presence.MaxPerPage {
			return presence.ListQuery{}, badRequest("per_page must be an integer from 1 to 1000")
		}
		q.PerPage = n
	}
	if s := v.Get("online_status"); s != "" {
		if q.OnlineStatus = presence.OnlineStatus(s); !q.OnlineStatus.Valid() {
			return presence.ListQuery{}, badRequest("online_status must be one of online, away, offline")
		}
	}
	if s := v.Get("status"); s != "" {
		if q.Status = presence.AccountStatus(s); !q.Status.Valid() {
			return presence.ListQuery{}, badRequest("status must be one of active, pending, suspended, banned")
		}
	}
	if s := v.Get("role"); s != "" {
		if q.Role = presence.Role(s); !q.Role.Valid() {
			return presence.ListQuery{}, badRequest("role must be one of admin, moderator, user")
		}
	}
	q.Search = v.Get("search")
	if !utf8.ValidString(q.Search) || utf8.RuneCountInString(q.Search) > maxSearchLen {
		return presence.ListQuery{}, badRequest("search must be at most 150 characters of valid UTF-8")
	}
	return q, nil
}

// nextPageURL is the absolute URL of the page after r's: same path, filters
// and page size, with cursor. The scheme is https when the request came over
// TLS or a proxy says so in X-Forwarded-Proto (only http or https are
// believed); the host is the one the client asked for.
func nextPageURL(r *http.Request, q presence.ListQuery, cursor string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	} else {
		proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
		if proto = strings.ToLower(strings.TrimSpace(proto)); proto == "http" || proto == "https" {
			scheme = proto
		}
	}
	v := url.Values{}
	v.Set("per_page", strconv.Itoa(q.PerPage))
	v.Set("cursor", cursor)
	if q.OnlineStatus != "" {
		v.Set("online_status", string(q.OnlineStatus))
	}
	if q.Status != "" {
		v.Set("status", string(q.Status))
	}
	if q.Role != "" {
		v.Set("role", string(q.Role))
	}
	if q.Search != "" {
		v.Set("search", q.Search)
	}
	u := url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawQuery: v.Encode()}
	return u.String()
}

type createUserRequest struct {
	Username  string                 `json:"username"`
	Password  string                 `json:"password"`
	Email     string                 `json:"email"`
	FirstName string                 `json:"first_name"`
	LastName  string                 `json:"last_name"`
	Role      presence.Role          `json:"role"`
	Status    presence.AccountStatus `json:"status"`
}

// createUser creates a user directly (admin).
func (s *server) createUser(w http.ResponseWriter, r *http.Request) {
	req := createUserRequest{Role: presence.RoleUser, Status: presence.StatusActive}
	if err := decodeJSON(r, &req); err != nil {
		s.respondError(w, r, err)
		return
	}
	if err := validateRoleStatus(&req.Role, &req.Status); err != nil {
		s.respondError(w, r, err)
		return
	}
	nu := presence.NewUser{
		Username: req.Username, Email: req.Email, FirstName: req.FirstName, LastName: req.LastName,
		Role: req.Role, Status: req.Status,
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
	writeJSON(w, http.StatusCreated, newUserJSON(u))
}

// validateRoleStatus checks the role and status of a request, where given.
func validateRoleStatus(role *presence.Role, status *presence.AccountStatus) error {
	if role != nil && !role.Valid() {
		return badRequest("role must be one of admin, moderator, user")
	}
	if status != nil && !status.Valid() {
		return badRequest("status must be one of active, pending, suspended, banned")
	}
	return nil
}

// pathUserID is the {id} of the route. The route admits digits only; an ID
// too large for int64 cannot exist, so it is "not found".
func pathUserID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil || id <= 0 {
		return 0, presence.ErrNotFound
	}
	return id, nil
}

// userDetail is a user with their sessions.
type userDetail struct {
	userJSON
	Sessions []sessionJSON `json:"sessions"`
}

// getUser answers a user with their sessions (staff).
func (s *server) getUser(w http.ResponseWriter, r *http.Request) {
	id, err := pathUserID(r)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	u, err := s.store.User(r.Context(), id)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	sessions, err := s.store.Sessions(r.Context(), id)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	resp := userDetail{userJSON: newUserJSON(u), Sessions: make([]sessionJSON, len(sessions))}
	for i, sess := range sessions {
		resp.Sessions[i] = newSessionJSON(sess)
	}
	writeJSON(w, http.StatusOK, resp)
}

type updateUserRequest struct {
	Email     *string                 `json:"email"`
	FirstName *string                 `json:"first_name"`
	LastName  *string                 `json:"last_name"`
	Role      *presence.Role          `json:"role"`
	Status    *presence.AccountStatus `json:"status"`
}

// updateUser changes the fields present in the body (admin).
func (s *server) updateUser(w http.ResponseWriter, r *http.Request) {
	id, err := pathUserID(r)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	var req updateUserRequest
	if err := decodeJSON(r, &req); err != nil {
		s.respondError(w, r, err)
		return
	}
	if req.Email == nil && req.FirstName == nil && req.LastName == nil && req.Role == nil && req.Status == nil {
		s.respondError(w, r, badRequest("Give at least one of email, first_name, last_name, role, status"))
		return
	}
	if err := validateRoleStatus(req.Role, req.Status); err != nil {
		s.respondError(w, r, err)
		return
	}
	for _, err := range []error{
		validateOptional(req.Email, presence.ValidateEmail),
		validateOptional(req.FirstName, func(v string) error { return presence.ValidateName("first_name", v) }),
		validateOptional(req.LastName, func(v string) error { return presence.ValidateName("last_name", v) }),
	} {
		if err != nil {
			s.respondError(w, r, err)
			return
		}
	}
	if id == stateOf(r).userID {
		// The acting admin cannot lock themselves out.
		if req.Role != nil && *req.Role != presence.RoleAdmin {
			s.respondError(w, r, badRequest("You cannot demote your own account"))
			return
		}
		if req.Status != nil && *req.Status != presence.StatusActive {
			s.respondError(w, r, badRequest("You cannot deactivate your own account"))
			return
		}
	}
	u, err := s.store.UpdateUser(r.Context(), id, presence.UserUpdate{
		Email: req.Email, FirstName: req.FirstName, LastName: req.LastName, Role: req.Role, Status: req.Status,
	})
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newUserJSON(u))
}

func validateOptional(v *string, validate func(string) error) error {
	if v == nil {
		return nil
	}
	return validate(*v)
}

// deleteUser removes a user (admin).
func (s *server) deleteUser(w http.ResponseWriter, r *http.Request) {
	id, err := pathUserID(r)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	if id == stateOf(r).userID {
		s.respondError(w, r, badRequest("You cannot delete your own account"))
		return
	}
	if err := s.store.DeleteUser(r.Context(), id); err != nil {
		s.respondError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, messageResponse{Message: "User deleted"})
}

// The account actions (admin). approve and activate both make the account
// active: approve is the name used for pending registrations.
func (s *server) approveUser(w http.ResponseWriter, r *http.Request) {
	s.setStatus(w, r, presence.StatusActive, "User approved")
}

func (s *server) activateUser(w http.ResponseWriter, r *http.Request) {
	s.setStatus(w, r, presence.StatusActive, "User activated")
}

func (s *server) suspendUser(w http.ResponseWriter, r *http.Request) {
	s.setStatus(w, r, presence.StatusSuspended, "User suspended")
}

func (s *server) banUser(w http.ResponseWriter, r *http.Request) {
	s.setStatus(w, r, presence.StatusBanned, "User banned")
}

// selfRefusals are the account actions an admin may not apply to themselves.
var selfRefusals = map[presence.AccountStatus]string{
	presence.StatusSuspended: "You cannot suspend your own account",
	presence.StatusBanned:    "You cannot ban your own account",
}

// setStatus sets the account status of the {id} user; the store ends every
// session when the account leaves active.
func (s *server) setStatus(w http.ResponseWriter, r *http.Request, status presence.AccountStatus, message string) {
	s.userAction(w, r, message, func(ctx context.Context, id int64) error {
		if msg, ok := selfRefusals[status]; ok && id == stateOf(r).userID {
			return badRequest(msg)
		}
		_, err := s.store.UpdateUser(ctx, id, presence.UserUpdate{Status: &status})
		return err
	})
}

// forceLogout ends every session of the {id} user (admin).
func (s *server) forceLogout(w http.ResponseWriter, r *http.Request) {
	s.userAction(w, r, "User logged out from all devices", func(ctx context.Context, id int64) error {
		return s.store.EndAllSessions(ctx, id, presence.ReasonAdmin)
	})
}

// userAction runs an account action on the {id} user and answers message.
// The body is optional and its members are ignored, but it must be a JSON
// object when present.
func (s *server) userAction(w http.ResponseWriter, r *http.Request, message string, act func(ctx context.Context, id int64) error) {
	id, err := pathUserID(r)
	if err == nil {
		err = decodeJSON(r, &struct{}{})
	}
	if err == nil {
		err = act(r.Context(), id)
	}
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, messageResponse{Message: message})
}

type onlineUsersResponse struct {
	OnlineUsers []userJSON `json:"online_users"`
	Count       int        `json:"count"`
}

// onlineUsers answers every user who is online or away (staff).
func (s *server) onlineUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.store.OnlineUsers(r.Context())
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, onlineUsersResponse{OnlineUsers: newUsersJSON(users), Count: len(users)})
}

type onlineStatusResponse struct {
	UserID       int64                 `json:"user_id"`
	Username     string                `json:"username"`
	OnlineStatus presence.OnlineStatus `json:"online_status"`
	LastSeen     jsonTime              `json:"last_seen"`
	IsOnline     bool                  `json:"is_online"`
}

// onlineStatus answers the presence of the {id} user (staff).
func (s *server) onlineStatus(w http.ResponseWriter, r *http.Request) {
	id, err := pathUserID(r)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	u, err := s.store.User(r.Context(), id)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, onlineStatusResponse{
		UserID: u.ID, Username: u.Username, OnlineStatus: onlineStatus(u.OnlineStatus),
		LastSeen: jsonTime(u.LastSeen), IsOnline: u.IsOnline(),
	})
}

// allUsers streams every user (staff): {"users": [...], "count": N}, one
// listing page at a time, flushed as it arrives, so that the response is
// never held whole in memory. Each page gets its own timeout (the route has
// no overall one: a large user base takes long).
//
// Once the status is sent an error can no longer be answered. Ending the
// JSON early would hand the client a valid-looking but incomplete list, so
// the response is aborted instead: the client sees a broken response.
func (s *server) allUsers(w http.ResponseWriter, r *http.Request) {
	q := presence.ListQuery{PerPage: presence.MaxPerPage}
	page, err := s.listPage(r, q)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := []byte(`{"users":[`)
	count := 0
	for {
		for _, u := range page.Users {
			if count > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSON(buf, newUserJSON(u))
			count++
		}
		if _, err := w.Write(buf); err != nil {
			return // the client went away
		}
		_ = rc.Flush()
		buf = buf[:0]
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
		if page, err = s.listPage(r, q); err != nil {
			s.abortStream(r, err)
		}
	}
	buf = append(buf, `],"count":`...)
	buf = strconv.AppendInt(buf, int64(count), 10)
	buf = append(buf, '}')
	_, _ = w.Write(buf)
}

// listPage reads one page of a listing within the request timeout.
func (s *server) listPage(r *http.Request, q presence.ListQuery) (presence.Page, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	return s.store.ListUsers(ctx, q)
}
