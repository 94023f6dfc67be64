package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/presenced/presenced/internal/presence"
)

// Event stream settings.
const (
	// ticketTTL is how long an event-stream ticket stays valid. Short: it
	// travels in a URL (EventSource cannot send headers), where proxies and
	// browser histories may keep it; it also works only once.
	ticketTTL = 30 * time.Second
	// eventRetry is the reconnection delay the stream asks EventSource
	// clients to use.
	eventRetry = "2000"
	// maxEventIDLen bounds a Last-Event-ID: a position is a stream ID per
	// shard.
	maxEventIDLen = 4096
)

// Defaults of the event stream configuration.
const (
	// DefaultEventPing is the default interval of the stream's comment
	// heartbeats.
	DefaultEventPing = 15 * time.Second
	// DefaultMaxEventStreams is the default cap of concurrent event streams
	// per instance.
	DefaultMaxEventStreams = 1000
)

// errTooManyStreams refuses an event stream over the instance's cap.
var errTooManyStreams = &apiError{status: http.StatusServiceUnavailable, msg: "Too many event streams on this instance; retry later"}

type ticketResponse struct {
	Ticket string `json:"ticket"`
	// ExpiresIn is the ticket's lifetime in seconds.
	ExpiresIn int `json:"expires_in"`
}

// eventTicket issues a single-use, short-lived ticket that opens one event
// stream for the caller's session (staff): `GET admin/events/?ticket=...`
// for browsers, whose EventSource cannot send an Authorization header.
func (s *server) eventTicket(w http.ResponseWriter, r *http.Request) {
	if err := decodeJSON(r, &struct{}{}); err != nil {
		s.respondError(w, r, err)
		return
	}
	ticket, err := s.store.IssueTicket(r.Context(), stateOf(r).ref, ticketTTL)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, ticketResponse{Ticket: ticket, ExpiresIn: int(ticketTTL / time.Second)})
}

// ticketSession returns the session a `?ticket=` of r stands for, consuming
// the ticket; ok is false when r has no ticket (or also has an
// Authorization header, which then wins). An unknown, used or expired
// ticket is an invalid token.
func (s *server) ticketSession(ctx context.Context, r *http.Request) (ref presence.SessionRef, ok bool, err error) {
	if r.Header.Get("Authorization") != "" || !strings.Contains(r.URL.RawQuery, "ticket=") {
		return presence.SessionRef{}, false, nil
	}
	ticket := r.URL.Query().Get("ticket")
	if ticket == "" {
		return presence.SessionRef{}, false, nil
	}
	ref, err = s.store.RedeemTicket(ctx, ticket)
	if errors.Is(err, presence.ErrNotFound) {
		return presence.SessionRef{}, true, fmt.Errorf("event ticket: %w", presence.ErrSessionRevoked)
	}
	return ref, true, err
}

// eventJSON is the data of one `status` event.
type eventJSON struct {
	UserID       int64                 `json:"user_id"`
	Username     string                `json:"username"`
	OnlineStatus presence.OnlineStatus `json:"online_status"`
	LastSeen     jsonTime              `json:"last_seen"`
	Reason       presence.Reason       `json:"reason"`
	At           jsonTime              `json:"at"`
}

// appendEvents appends trs as SSE events: `id:` the position after the
// transition (what Last-Event-ID resumes from), `event: status`, `data:` the
// transition as JSON on one line.
func appendEvents(b []byte, trs []presence.Transition) []byte {
	for _, t := range trs {
		if t.ID != "" && !strings.ContainsAny(t.ID, "\r\n") {
			b = append(b, "id: "...)
			b = append(b, t.ID...)
			b = append(b, '\n')
		}
		b = append(b, "event: status\ndata: "...)
		b = appendJSON(b, eventJSON{
			UserID: t.UserID, Username: t.Username, OnlineStatus: onlineStatus(t.OnlineStatus),
			LastSeen: jsonTime(t.LastSeen), Reason: t.Reason, At: jsonTime(t.At),
		})
		b = append(b, "\n\n"...)
	}
	return b
}

// appendReady appends the `ready` event: the stream has sent everything up
// to pos and is live from here. Its id sets EventSource's last event ID;
// its data is an empty object (an event without data is never dispatched).
func appendReady(b []byte, pos string) []byte {
	if pos != "" && !strings.ContainsAny(pos, "\r\n") {
		b = append(b, "id: "...)
		b = append(b, pos...)
		b = append(b, '\n')
	}
	return append(b, "event: ready\ndata: {}\n\n"...)
}

// lastEventID is the position a stream starts after: the Last-Event-ID
// header (sent by EventSource when it reconnects by itself), else the
// last_event_id parameter (for clients that open a new EventSource, which
// cannot set the header), else "$": only transitions from now on.
func lastEventID(r *http.Request) (string, error) {
	id := r.Header.Get("Last-Event-ID")
	if id == "" && strings.Contains(r.URL.RawQuery, "last_event_id=") {
		id = r.URL.Query().Get("last_event_id")
	}
	id = strings.TrimSpace(id)
	if len(id) > maxEventIDLen {
		return "", badRequest("Last-Event-ID is too long")
	}
	if id == "" {
		return "$", nil
	}
	return id, nil
}

// events streams presence transitions as Server-Sent Events (staff).
//
// The stream reads through the instance's feed (see feed): it catches up
// from its own position, then waits for the feed's wake-ups, so a client
// that goes away frees its goroutine, its feed subscription and its slot at
// once (the wait selects on the request's context). Every ping interval it
// sends a comment, which keeps proxies from closing an idle connection, and
// checks again that its session is open and its user still staff: a
// stream outlives its access token, but not a logout, a suspension or a
// demotion (it ends within one ping interval).
//
// The stream does not refresh its session's presence: subscribing is not
// activity. A dashboard heartbeats on its own (it is a client like any
// other), a refresh per event would make an admin's presence depend on
// other users' churn and multiply presence writes by the number of
// subscribers, and a forgotten background tab would stay online forever.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	after, err := lastEventID(r)
	if err != nil {
		s.respondError(w, r, err)
		return
	}
	if n := s.streams.Add(1); n > int64(s.maxStreams) {
		s.streams.Add(-1)
		w.Header().Set("Retry-After", "5")
		s.respondError(w, r, errTooManyStreams)
		return
	}
	defer s.streams.Add(-1)
	// Subscribed before the first read, so a batch the feed publishes
	// meanwhile still wakes this stream.
	unsubscribe := s.feed.subscribe()
	defer unsubscribe()

	ctx := r.Context()
	wake, head := s.feed.state()
	trs, pos, err := s.feed.read(ctx, after)
	if errors.Is(err, presence.ErrInvalidCursor) {
		err = badRequest("Last-Event-ID is not a position of the transitions stream")
	}
	if err != nil {
		s.respondError(w, r, err)
		return
	}

	rc := http.NewResponseController(w)
	// The server's read and write timeouts are meant for ordinary requests;
	// past them a stream would be cut (a read timeout even cancels the
	// request's context). Not every writer supports deadlines (httptest's
	// recorder does not), and then there is no timeout to lift.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	out := &eventWriter{w: w, rc: rc, buf: make([]byte, 0, 4096)}
	out.buf = append(out.buf, "retry: "+eventRetry+"\n\n"...)
	out.buf = appendEvents(out.buf, trs)
	if !out.flush() {
		return
	}

	st := stateOf(r)
	ping := time.NewTimer(s.eventPing)
	defer ping.Stop()
	force := len(trs) > 0 // read on: the first read may have stopped at its count
	ready := false
	for {
		if pos, err = s.catchUp(ctx, out, pos, head, force); err != nil {
			s.endStream(r, err)
			return
		}
		if !ready {
			// Caught up: say so, with the position, so that a client
			// that sees no transition before it reconnects still
			// resumes exactly here.
			ready = true
			out.buf = appendReady(out.buf, pos)
			if !out.flush() {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.streamsDone:
			return
		case <-wake:
			force = false
		case <-ping.C:
			if err := s.recheckStream(ctx, st.ref); err != nil {
				s.endStream(r, err)
				return
			}
			out.buf = append(out.buf, ": ping\n\n"...)
			if !out.flush() {
				return
			}
			ping.Reset(s.eventPing)
			// Read even when the feed says nothing happened: a stream
			// does not depend on the feed alone.
			force = true
		}
		wake, head = s.feed.state()
	}
}

// catchUp sends the transitions after pos up to the feed's head (or the end
// of the stream, when forced or when pos is not on the feed's path), taking
// the feed's batches where they start at pos and reading Redis otherwise,
// and returns the new position.
func (s *server) catchUp(ctx context.Context, out *eventWriter, pos, head string, force bool) (string, error) {
	for force || pos != head {
		force = false
		if b := s.feed.batchFrom(pos); b != nil {
			out.buf = append(out.buf, b.frames...)
			pos = b.to
			continue
		}
		trs, next, err := s.feed.read(ctx, pos)
		if err != nil {
			return pos, err
		}
		pos = next
		if len(trs) == 0 {
			break
		}
		out.buf = appendEvents(out.buf, trs)
		if len(out.buf) >= 64<<10 && !out.flush() {
			return pos, errClientGone
		}
	}
	if len(out.buf) > 0 && !out.flush() {
		return pos, errClientGone
	}
	return pos, nil
}

// errClientGone ends a stream whose client stopped reading.
var errClientGone = errors.New("event stream client went away")

// recheckStream checks that the stream's session is still open and its user
// still staff.
func (s *server) recheckStream(ctx context.Context, ref presence.SessionRef) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.store.CheckSession(ctx, ref); err != nil {
		return err
	}
	u, err := s.store.User(ctx, ref.UserID)
	if err != nil {
		return err
	}
	if !u.Role.CanList() {
		return errPermissionDenied
	}
	return nil
}

// endStream logs why a stream ended early. Its status is long sent: the
// client sees the stream end, reconnects, and is then told (401, 403, 503).
func (s *server) endStream(r *http.Request, err error) {
	level := slog.LevelDebug
	if !errors.Is(err, errClientGone) && !errors.Is(err, context.Canceled) && classify(err).status >= 500 {
		level = slog.LevelWarn
	}
	if !s.log.Enabled(r.Context(), level) {
		return
	}
	st := stateOf(r)
	s.log.LogAttrs(r.Context(), level, "event stream ended",
		slog.String("request_id", st.id), slog.Int64("user_id", st.userID), slog.String("error", err.Error()))
}

// eventWriter writes and flushes the buffered events of one stream.
type eventWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
}

// flush writes the buffer and flushes it to the client; false when the
// client is gone.
func (e *eventWriter) flush() bool {
	_, err := e.w.Write(e.buf)
	e.buf = e.buf[:0]
	if err != nil {
		return false
	}
	return e.rc.Flush() == nil
}
