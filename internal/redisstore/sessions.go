package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
)

// MaxSessionsPerUser is how many sessions one user may have at once (one per
// login: a device or a tab). A login beyond it ends the user's oldest
// session, whose tokens then stop working. The scripts walk a user's
// sessions, so without a bound one account logging in in a loop could make
// its every script hold Redis for longer and longer.
const MaxSessionsPerUser = 100

// StartSession implements presence.Store.
func (s *Store) StartSession(ctx context.Context, userID int64, start presence.SessionStart) (presence.Session, presence.User, error) {
	if userID <= 0 {
		return presence.Session{}, presence.User{}, fmt.Errorf("redisstore: login user %d: %w", userID, presence.ErrNotFound)
	}
	now := s.nowMS()
	res, err := s.run(ctx, s.sc.login, s.k.shardOfID(userID), s.k.user(userID),
		userID, now, s.ttlMS, s.maxlen, sanitizeUA(start.UserAgent), start.RefreshID, start.RefreshExpires.UnixMilli(), MaxSessionsPerUser)
	if err != nil {
		return presence.Session{}, presence.User{}, s.fail("login", err)
	}
	switch str(res[0]) {
	case "notfound":
		return presence.Session{}, presence.User{}, fmt.Errorf("redisstore: login user %d: %w", userID, presence.ErrNotFound)
	case "inactive":
		return presence.Session{}, presence.User{}, fmt.Errorf("redisstore: login user %d: %w", userID, presence.ErrAccountInactive)
	}
	flat, _ := res[3].([]any)
	u := userFromFlat(flat)
	if n, _ := res[4].(int64); u.IsOnline() { // invisible users show no live session
		u.LiveSessions = int(n)
	}
	s.observe(str(res[2]), presence.ReasonLogin)
	u.LastSeen = msTime(now)
	sess := presence.Session{
		ID: str(res[1]), UserID: userID, CreatedAt: msTime(now), LastSeen: msTime(now),
		UserAgent: start.UserAgent, Live: true,
	}
	return sess, u, nil
}

// sanitizeUA keeps the session record parseable and small.
func sanitizeUA(ua string) string {
	if len(ua) > 256 {
		ua = ua[:256]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, ua)
}

// Touch implements presence.Store. The steady state is one pipelined round
// trip of SET XX PX GET (refresh and record the activity; and proof the
// session was not ended, since ending a session deletes its live key) and
// ZADD XX (move the deadline; XX so a late heartbeat never re-indexes an
// ended session). Nothing durable is written. The old value GET returns
// carries a mark when the session was idle or the user has a manual status;
// only then does a script run (activate.lua).
func (s *Store) Touch(ctx context.Context, ref presence.SessionRef) (presence.Status, error) {
	now := s.now()
	// One round trip, shared with concurrent heartbeats (touchLive).
	old, err := s.touchLive(ctx, ref, now.UnixMilli())
	if err == nil {
		if old == "" || old[0] < 'a' {
			return presence.Status{OnlineStatus: presence.Online, LastSeen: now.UTC()}, nil
		}
		return s.activate(ctx, ref, now)
	}
	if !errors.Is(err, redis.Nil) {
		return presence.Status{}, s.fail("heartbeat", err)
	}
	return s.revive(ctx, ref, now, false)
}

// TouchIdle implements presence.Store: PEXPIRE keeps the live key's value
// (the last activity) while extending its TTL, so idle heartbeats never count
// as activity. One round trip, as Touch.
func (s *Store) TouchIdle(ctx context.Context, ref presence.SessionRef) (presence.Status, error) {
	now := s.now()
	nowMS := now.UnixMilli()
	shard := s.k.shardOfID(ref.UserID)
	var exp *redis.BoolCmd
	var status *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		exp = p.PExpire(ctx, s.k.live(ref.UserID, ref.SessionID), s.ttl)
		p.ZAddXX(ctx, s.k.deadlines(shard), redis.Z{Score: float64(nowMS + s.ttlMS), Member: member(ref.UserID, ref.SessionID)})
		status = p.HGet(ctx, s.k.user(ref.UserID), "online_status")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return presence.Status{}, s.fail("idle heartbeat", err)
	}
	if !exp.Val() {
		return s.revive(ctx, ref, now, true)
	}
	return presence.Status{OnlineStatus: presence.OnlineStatus(status.Val()), LastSeen: now.UTC()}, nil
}

// activate is Touch's path for a marked live key (idle session or manual
// status): the activity is already stored; the script re-applies the status.
func (s *Store) activate(ctx context.Context, ref presence.SessionRef, now time.Time) (presence.Status, error) {
	res, err := s.run(ctx, s.sc.activate, s.k.shardOfID(ref.UserID), s.k.user(ref.UserID),
		ref.UserID, ref.SessionID, now.UnixMilli(), s.ttlMS, s.maxlen)
	if err != nil {
		return presence.Status{}, s.fail("activate session", err)
	}
	if str(res[0]) == "gone" {
		return s.revive(ctx, ref, now, false)
	}
	st := presence.OnlineStatus(str(res[1]))
	s.observe(str(res[2]), presence.ReasonHeartbeat)
	return presence.Status{OnlineStatus: st, LastSeen: now.UTC()}, nil
}

// revive is the slow path when the live key was missing.
func (s *Store) revive(ctx context.Context, ref presence.SessionRef, now time.Time, idle bool) (presence.Status, error) {
	idleArg := "0"
	if idle {
		idleArg = "1"
	}
	res, err := s.run(ctx, s.sc.revive, s.k.shardOfID(ref.UserID), s.k.user(ref.UserID),
		ref.UserID, ref.SessionID, ref.TokenVersion, now.UnixMilli(), s.ttlMS, s.maxlen, idleArg)
	if err != nil {
		return presence.Status{}, s.fail("revive session", err)
	}
	switch str(res[0]) {
	case "revoked":
		if len(res) > 1 { // the refresh window had ended: the session ended now
			s.observe(str(res[1]), presence.ReasonLogout)
		}
		return presence.Status{}, fmt.Errorf("redisstore: user %d session %s: %w", ref.UserID, ref.SessionID, presence.ErrSessionRevoked)
	case "inactive":
		return presence.Status{}, fmt.Errorf("redisstore: user %d: %w", ref.UserID, presence.ErrAccountInactive)
	}
	st := presence.OnlineStatus(str(res[1]))
	s.observe(str(res[2]), presence.ReasonHeartbeat)
	return presence.Status{OnlineStatus: st, LastSeen: now.UTC(), Revived: true}, nil
}

// CheckSession implements presence.Store in one pipelined round trip.
func (s *Store) CheckSession(ctx context.Context, ref presence.SessionRef) (presence.Status, error) {
	var u *redis.SliceCmd
	var has *redis.BoolCmd
	var score *redis.FloatCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		u = p.HMGet(ctx, s.k.user(ref.UserID), "status", "tv", "online_status", "last_seen")
		has = p.HExists(ctx, s.k.sessions(ref.UserID), ref.SessionID)
		score = p.ZScore(ctx, s.k.deadlines(s.k.shardOfID(ref.UserID)), member(ref.UserID, ref.SessionID))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return presence.Status{}, s.fail("check session", err)
	}
	v := u.Val()
	status, _ := v[0].(string)
	tv, _ := v[1].(string)
	if status == "" || tv != strconv.FormatInt(ref.TokenVersion, 10) || !has.Val() {
		return presence.Status{}, fmt.Errorf("redisstore: user %d session %s: %w", ref.UserID, ref.SessionID, presence.ErrSessionRevoked)
	}
	if presence.AccountStatus(status) != presence.StatusActive {
		return presence.Status{}, fmt.Errorf("redisstore: user %d: %w", ref.UserID, presence.ErrAccountInactive)
	}
	os, _ := v[2].(string)
	ls, _ := v[3].(string)
	st := presence.Status{OnlineStatus: presence.OnlineStatus(os), LastSeen: parseMS(ls)}
	if st.OnlineStatus == "" {
		st.OnlineStatus = presence.Offline
	}
	if d := int64(score.Val()); score.Err() == nil && d > s.nowMS() && st.OnlineStatus != presence.Offline {
		if last := msTime(d - s.ttlMS); last.After(st.LastSeen) {
			st.LastSeen = last
		}
	}
	return st, nil
}

// EndSession implements presence.Store.
func (s *Store) EndSession(ctx context.Context, ref presence.SessionRef, reason presence.Reason) error {
	res, err := s.run(ctx, s.sc.logout, s.k.shardOfID(ref.UserID), s.k.user(ref.UserID),
		ref.UserID, ref.SessionID, s.nowMS(), s.ttlMS, s.maxlen, string(reason))
	if err != nil {
		return s.fail("logout", err)
	}
	if str(res[0]) == "revoked" {
		return fmt.Errorf("redisstore: user %d session %s: %w", ref.UserID, ref.SessionID, presence.ErrSessionRevoked)
	}
	s.observe(str(res[1]), reason)
	return nil
}

// RotateRefresh implements presence.Store.
func (s *Store) RotateRefresh(ctx context.Context, ref presence.SessionRef, oldID, newID string, newExpires time.Time) error {
	res, err := s.run(ctx, s.sc.rotate, s.k.shardOfID(ref.UserID), s.k.user(ref.UserID),
		ref.UserID, ref.SessionID, ref.TokenVersion, oldID, newID, newExpires.UnixMilli(), s.nowMS(), s.ttlMS, s.maxlen)
	if err != nil {
		return s.fail("rotate refresh", err)
	}
	switch str(res[0]) {
	case "revoked":
		if len(res) > 1 { // the refresh window had ended: the session ended now
			s.observe(str(res[1]), presence.ReasonLogout)
		}
		return fmt.Errorf("redisstore: user %d session %s: %w", ref.UserID, ref.SessionID, presence.ErrSessionRevoked)
	case "inactive":
		return fmt.Errorf("redisstore: user %d: %w", ref.UserID, presence.ErrAccountInactive)
	case "reused":
		s.observe(str(res[1]), presence.ReasonLogout)
		return fmt.Errorf("redisstore: user %d session %s: %w", ref.UserID, ref.SessionID, presence.ErrRefreshReused)
	}
	return nil
}

// Sessions implements presence.Store.
func (s *Store) Sessions(ctx context.Context, userID int64) ([]presence.Session, error) {
	var recsCmd *redis.MapStringStringCmd
	var visible *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		recsCmd = p.HGetAll(ctx, s.k.sessions(userID))
		visible = p.HGet(ctx, s.k.user(userID), "online_status")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.fail("sessions", err)
	}
	recs := recsCmd.Val()
	// An invisible user's sessions are shown, but none as live.
	present := presence.User{OnlineStatus: presence.OnlineStatus(visible.Val())}.IsOnline()
	if len(recs) == 0 {
		return []presence.Session{}, nil
	}
	sids := make([]string, 0, len(recs))
	members := make([]string, 0, len(recs))
	for sid := range recs {
		sids = append(sids, sid)
		members = append(members, member(userID, sid))
	}
	scores, err := s.rdb.ZMScore(ctx, s.k.deadlines(s.k.shardOfID(userID)), members...).Result()
	if err != nil {
		return nil, s.fail("sessions", err)
	}
	now := s.nowMS()
	out := make([]presence.Session, 0, len(recs))
	for i, sid := range sids {
		f := strings.SplitN(recs[sid], "|", 5)
		if len(f) != 5 {
			continue
		}
		sess := presence.Session{ID: sid, UserID: userID, CreatedAt: parseMS(f[0]), LastSeen: parseMS(f[1]), UserAgent: f[4]}
		if d := int64(scores[i]); d > now && present {
			sess.Live = true
			sess.LastSeen = msTime(d - s.ttlMS)
		}
		out = append(out, sess)
	}
	slices.SortFunc(out, func(a, b presence.Session) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}
