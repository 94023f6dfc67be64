package redisstore

import (
	"context"
	"strings"
	"time"

	"github.com/presenced/presenced/internal/presence"
)

// Expired is a session the expiry script ended.
type Expired struct {
	UserID int64
	// LastSeen is the session's last activity: its deadline minus the TTL.
	LastSeen time.Time
	// Deadline is when the session's TTL ran out.
	Deadline time.Time
	// WentOffline reports whether this ended the user's presence (false when
	// another session kept them online).
	WentOffline bool
	// Status is the user's status after a transition this made (offline, or
	// away when the sessions left are idle), "" when it made none.
	Status presence.OnlineStatus
}

// SweepResult is what one sweep call did.
type SweepResult struct {
	// Examined is how many overdue index entries were looked at; when it
	// equals the limit there may be more.
	Examined int
	Expired  []Expired
}

// SweepShard settles up to limit sessions of shard whose deadline has passed:
// it reads only the head of the shard's deadline index, touches each
// session's live key (so Redis expires it now and announces it), and takes
// users with no live session left offline with last_seen = last activity.
func (s *Store) SweepShard(ctx context.Context, shard, limit int) (SweepResult, error) {
	return s.expire(ctx, int64(shard), limit, nil)
}

// ExpireSessions settles the named sessions of one shard (the listener's
// path). Sessions that are still live or already settled are left alone.
func (s *Store) ExpireSessions(ctx context.Context, shard int, members []string) (SweepResult, error) {
	if len(members) == 0 {
		return SweepResult{}, nil
	}
	return s.expire(ctx, int64(shard), 0, members)
}

func (s *Store) expire(ctx context.Context, shard int64, limit int, members []string) (SweepResult, error) {
	args := make([]any, 0, len(members)+4)
	args = append(args, s.nowMS(), s.ttlMS, s.maxlen, limit)
	for _, m := range members {
		args = append(args, m)
	}
	res, err := s.run(ctx, s.sc.expire, shard, s.k.deadlines(shard), args...)
	if err != nil {
		return SweepResult{}, s.fail("expire sessions", err)
	}
	var out SweepResult
	if n, ok := res[0].(int64); ok {
		out.Examined = int(n)
	}
	for _, r := range res[1:] {
		row, _ := r.([]any)
		if len(row) < 4 {
			continue
		}
		uid, _ := row[0].(int64)
		last, _ := row[1].(int64)
		deadline, _ := row[2].(int64)
		e := Expired{UserID: uid, LastSeen: msTime(last), Deadline: msTime(deadline)}
		if status, _, ok := strings.Cut(str(row[3]), "|"); ok {
			e.Status = presence.OnlineStatus(status)
			e.WentOffline = e.Status == presence.Offline
			s.onTransition(e.Status, presence.ReasonExpired)
		}
		out.Expired = append(out.Expired, e)
	}
	return out, nil
}

// ScanIdle runs one slice of the shard's idle scan (see lua/idle.lua): live
// sessions without activity for the away period are marked idle and users
// whose every live session is idle become away. It returns the number of
// transitions made; with away detection disabled it does nothing.
func (s *Store) ScanIdle(ctx context.Context, shard int) (int, error) {
	if s.awayAfter <= 0 {
		return 0, nil
	}
	period := max(s.awayAfter/5, s.interval)
	res, err := s.run(ctx, s.sc.idle, int64(shard), s.k.deadlines(int64(shard)),
		s.nowMS(), s.ttlMS, s.maxlen, s.awayAfter.Milliseconds(), period.Milliseconds(), s.interval.Milliseconds())
	if err != nil {
		return 0, s.fail("idle scan", err)
	}
	made := 0
	for i, reason := range []presence.Reason{presence.ReasonIdle, presence.ReasonManual} {
		evs, _ := res[i+1].([]any)
		for _, ev := range evs {
			s.observe(str(ev), reason)
			made++
		}
	}
	return made, nil
}
