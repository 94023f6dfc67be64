package loadtest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
)

// Offline detection modes.
const (
	offlineRedis = iota // no presenced: Redis's own expired events
	offlineOff          // presenced, keyspace notifications off: the sweep alone
	offlineOn           // presenced, notifications on: listener and sweep
)

// offlineScenario stops the heartbeats of OfflineStop sessions, spread over
// OfflineSpread, while every other session keeps heartbeating, and measures
// per user how long after its deadline (last heartbeat + TTL) the offline
// transition landed in the stream.
func (s *suite) offlineScenario(ctx context.Context, b *bigEnv) (ScenarioReport, error) {
	cfg := s.cfg
	start := time.Now()
	stop := min(cfg.OfflineStop, len(b.refs)/4)
	sr := ScenarioReport{Name: ScenarioOffline, Title: "Offline detection lag",
		Params: map[string]any{"online": len(b.refs) + 1, "stopping": stop, "spread_s": cfg.OfflineSpread.Seconds(),
			"ttl_s": cfg.OfflineTTL.Seconds(), "sweep_interval_s": cfg.OfflineSweep.Seconds(), "wait_s": cfg.OfflineWait.Seconds(), "runs": cfg.OfflineRuns}}
	type modeRun struct {
		mode int
		name string
	}
	plan := []modeRun{{offlineRedis, "Redis's own expired events (no presenced)"}}
	for range cfg.OfflineRuns {
		plan = append(plan, modeRun{offlineOff, "notifications OFF (sweep only)"})
	}
	for range cfg.OfflineRuns {
		plan = append(plan, modeRun{offlineOn, "notifications ON (listener + sweep)"})
	}
	results := map[int][][]float64{} // mode -> runs -> lags in s (+Inf: never)
	for k, m := range plan {
		if ctx.Err() != nil {
			return sr, ctx.Err()
		}
		lags, err := s.offlineRun(ctx, b, m.mode, k, stop)
		if err != nil {
			return sr, fmt.Errorf("%s: %w", m.name, err)
		}
		results[m.mode] = append(results[m.mode], lags)
		q := quantiles(lags)
		s.logf("%s: p50 %s p99 %s max %s, %.1f%% detected", m.name, fmtLag(q.p50), fmtLag(q.p99), fmtLag(q.max), q.delivered*100)
	}
	limit := cfg.OfflineSweep.Seconds() + 1
	for _, m := range []struct {
		mode int
		name string
	}{{offlineOff, "notifications OFF"}, {offlineOn, "notifications ON"}} {
		var p50, p99, mx, got []float64
		for _, lags := range results[m.mode] {
			q := quantiles(lags)
			p50, p99, mx, got = append(p50, q.p50), append(p99, q.p99), append(mx, q.max), append(got, q.delivered*100)
		}
		base := quantiles(results[offlineRedis][0])
		r := Row{Name: m.name + ": lag p50", Unit: "s", Value: median(p50), Runs: p50, Baseline: base.p50, BaselineName: "Redis expired events"}
		sr.row(r)
		r = Row{Name: m.name + ": lag p99", Unit: "s", Value: median(p99), Runs: p99, Baseline: base.p99, BaselineName: "Redis expired events"}
		if m.mode == offlineOff {
			r.Target, r.Met = "≤ 1.5", atMost(r.Value, 1.5)
		}
		sr.row(r)
		r = Row{Name: m.name + ": lag max", Unit: "s", Value: median(mx), Runs: mx, Baseline: base.max, BaselineName: "Redis expired events"}
		if m.mode == offlineOff {
			r.Target, r.Met = "≤ "+format(limit), atMost(r.Value, limit)
		}
		sr.row(r)
		sr.row(Row{Name: m.name + ": detected", Unit: "%", Value: median(got), Runs: got, Baseline: base.delivered * 100, BaselineName: "Redis expired events"})
	}
	sr.note("lag = time the offline transition's entry landed in the stream (its ID) − (last heartbeat + TTL), per user; baseline: arrival of Redis's own __keyevent@0__:expired for the same sessions' live keys with no presenced running (nothing touches them), within %s after the last deadline; ∞ = not within that window", cfg.OfflineWait)
	sr.note("TTL %s (not the 120s default) so the scenario fits its time budget; every other session keeps heartbeating through the same commands as a heartbeat (redisstore.TouchSessions, each session every TTL/2)", cfg.OfflineTTL)
	sr.Seconds = time.Since(start).Seconds()
	return sr, nil
}

type lagQuantiles struct{ p50, p99, max, delivered float64 }

func quantiles(lags []float64) lagQuantiles {
	if len(lags) == 0 {
		return lagQuantiles{nan, nan, nan, 0}
	}
	s := slices.Clone(lags)
	slices.Sort(s)
	q := func(p float64) float64 { return s[max(0, min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1))] }
	n := 0
	for _, v := range s {
		if !math.IsInf(v, 1) {
			n++
		}
	}
	return lagQuantiles{q(0.5), q(0.99), s[len(s)-1], float64(n) / float64(len(s))}
}

func fmtLag(v float64) string {
	if math.IsInf(v, 1) {
		return "∞"
	}
	return fmt.Sprintf("%.3fs", v)
}

// offlineRun runs one group (the k-th from the end of the sessions).
func (s *suite) offlineRun(ctx context.Context, b *bigEnv, mode, k, stop int) ([]float64, error) {
	cfg := s.cfg
	group := b.refs[len(b.refs)-(k+1)*stop : len(b.refs)-k*stop]
	b.kp.mu.Lock()
	kpLen := len(b.kp.refs)
	b.kp.mu.Unlock()

	events := "Ex"
	if mode == offlineOff {
		events = ""
	}
	if err := b.rdb.ConfigSet(ctx, "notify-keyspace-events", events).Err(); err != nil {
		return nil, err
	}
	// Redis's own events, for the baseline: arrival time per live key.
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	var sub *redis.PubSub
	if mode == offlineRedis {
		sub = b.rdb.Subscribe(ctx, "__keyevent@0__:expired")
		if _, err := sub.Receive(ctx); err != nil {
			return nil, err
		}
		defer sub.Close()
		ch := sub.Channel(redis.WithChannelSize(100000))
		go func() {
			for msg := range ch {
				t := time.Now()
				mu.Lock()
				arrived[msg.Payload] = t
				mu.Unlock()
			}
		}()
	} else {
		var err error
		b.child, err = StartChild(ctx, cfg.Self, ChildConfig{Mode: ModePresenced, RedisURL: b.srv.URL(),
			Env: s.childEnv(cfg.OfflineTTL, cfg.OfflineSweep), Workers: true, Notifications: mode == offlineOn})
		if err != nil {
			return nil, err
		}
		defer func() { b.child.Stop(); b.child = nil }()
		// Sessions left overdue by the previous run are settled first.
		if err := waitNoOverdue(ctx, b.rdb, 60*time.Second); err != nil {
			return nil, err
		}
	}

	// The group leaves the keeper, is refreshed once more all together,
	// then each session's last heartbeat comes at its turn.
	b.kp.skip(kpLen-(k+1)*stop, kpLen)
	for i := 0; i < len(group); i += redisstore.MaxBatch {
		if _, err := b.st.TouchSessions(ctx, group[i:min(i+redisstore.MaxBatch, len(group))]); err != nil {
			return nil, err
		}
	}
	t0 := time.Now().Add(100 * time.Millisecond)
	streamFrom := strconv.FormatInt(t0.UnixMilli()-1000, 10)
	deadlines := make([]time.Time, len(group))
	for next := 0; next < len(group); {
		now := time.Now()
		end := next
		for end < len(group) && !t0.Add(time.Duration(float64(cfg.OfflineSpread)*float64(end)/float64(len(group)))).After(now) {
			end++
		}
		if end > next {
			for i := next; i < end; i += redisstore.MaxBatch {
				j := min(i+redisstore.MaxBatch, end)
				sent := time.Now()
				if _, err := b.st.TouchSessions(ctx, group[i:j]); err != nil {
					return nil, err
				}
				for x := i; x < j; x++ {
					deadlines[x] = sent.Add(cfg.OfflineTTL)
				}
			}
			next = end
		}
		time.Sleep(2 * time.Millisecond)
	}
	last := deadlines[len(deadlines)-1]
	idx := make(map[int64]int, len(group))
	for i, r := range group {
		idx[r.UserID] = i
	}
	lags := make([]float64, len(group))
	for i := range lags {
		lags[i] = math.Inf(1)
	}
	deadline := last.Add(cfg.OfflineWait)
	for {
		if mode != offlineRedis {
			n, err := readOfflineLags(ctx, b.rdb, streamFrom, idx, cfg.OfflineTTL, lags)
			if err != nil {
				return nil, err
			}
			if n == len(group) {
				break
			}
		} else if time.Now().After(last) {
			mu.Lock()
			n := len(arrived)
			mu.Unlock()
			if n >= len(group) {
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	if mode == offlineRedis {
		mu.Lock()
		for i, r := range group {
			if t, ok := arrived["presence:{0}:live:"+strconv.FormatInt(r.UserID, 10)+":"+r.SessionID]; ok {
				lags[i] = t.Sub(deadlines[i]).Seconds()
			}
		}
		mu.Unlock()
	}
	return lags, nil
}

// waitNoOverdue waits until no session in the deadline index is past its
// deadline (a sweep has settled them all).
func waitNoOverdue(ctx context.Context, rdb *redis.Client, limit time.Duration) error {
	until := time.Now().Add(limit)
	for {
		n, err := rdb.ZCount(ctx, "presence:{0}:deadlines", "-inf", strconv.FormatInt(time.Now().Add(-2*time.Second).UnixMilli(), 10)).Result()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(until) {
			return fmt.Errorf("%d sessions still overdue after %s", n, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readOfflineLags reads the stream from streamFrom and fills lags[idx[uid]]
// with (entry time − (last_seen + ttl)) in seconds for each expiry of a
// user in idx; it returns how many users of idx have one.
func readOfflineLags(ctx context.Context, rdb *redis.Client, streamFrom string, idx map[int64]int, ttl time.Duration, lags []float64) (int, error) {
	from := streamFrom
	for {
		msgs, err := rdb.XRangeN(ctx, "presence:{0}:events", from, "+", 5000).Result()
		if err != nil {
			return 0, err
		}
		for _, m := range msgs {
			if m.Values["online_status"] != string(presence.Offline) || m.Values["reason"] != string(presence.ReasonExpired) {
				continue
			}
			uid, _ := strconv.ParseInt(fmt.Sprint(m.Values["user_id"]), 10, 64)
			i, ok := idx[uid]
			if !ok {
				continue
			}
			seen, _ := strconv.ParseInt(fmt.Sprint(m.Values["last_seen"]), 10, 64)
			at, _ := strconv.ParseInt(strings.SplitN(m.ID, "-", 2)[0], 10, 64)
			lags[i] = float64(at-(seen+ttl.Milliseconds())) / 1000
		}
		if len(msgs) < 5000 {
			break
		}
		from = "(" + msgs[len(msgs)-1].ID
	}
	n := 0
	for _, v := range lags {
		if !math.IsInf(v, 1) {
			n++
		}
	}
	return n, nil
}
