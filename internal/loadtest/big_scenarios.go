package loadtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
)

// bigEnv is the large dataset shared by the memory (largest size), listing
// and offline scenarios: MemorySizes' largest count of users on one
// redis-server, first 1% online, then all of them, kept online by a keeper
// that heartbeats every session each TTL/2 (the offline scenario's short
// TTL), and a presenced child on it.
type bigEnv struct {
	srv         *RedisServer
	rdb         *redis.Client
	st          *redisstore.Store
	ids         []int64
	refs        []presence.SessionRef
	kp          *keeper
	adminAccess string
	adminRef    presence.SessionRef
	child       *Child
}

// memFigures are the memory results at one size.
type memFigures struct {
	users                 int
	registered            float64 // bytes per registered user
	session               float64 // bytes per online user: everything a login adds but the stream
	record                float64 // of which the session record
	presence              float64 // session - record
	stream                float64 // stream bytes added per login (bounded by the cap)
	live, deadline, onset float64 // per entry
	naiveOnline           float64 // SET online:<uid> 1 EX 120
	naiveUser             float64 // a 4-field hash
}

func (s *suite) bigScenarios(ctx context.Context, record func(ScenarioReport, error)) error {
	cfg := s.cfg
	sizes := slices.Clone(cfg.MemorySizes)
	slices.Sort(sizes)
	big := sizes[len(sizes)-1]
	memStart := time.Now()
	mem := ScenarioReport{Name: ScenarioMemory, Title: "Redis memory per user",
		Params: map[string]any{"sizes": sizes, "user_fields": "username, email, first_name, last_name, bcrypt hash (cost 10)",
			"user_agent_bytes": len(benchUA)}}
	var figs []memFigures
	if cfg.wants(ScenarioMemory) {
		for _, n := range sizes[:len(sizes)-1] {
			f, err := s.memoryAt(ctx, n)
			if err != nil {
				record(mem, err)
				return err
			}
			figs = append(figs, f)
		}
	}
	memSeconds := time.Since(memStart).Seconds()

	b := &bigEnv{}
	srv, err := StartRedis(ctx, RedisOptions{Notifications: true, MaxMemory: 12 << 30})
	if err != nil {
		return err
	}
	defer srv.Stop()
	b.srv = srv
	// The keeper's, the offline scenario's and the snapshots' client: a
	// small steady pool, so that memory snapshots do not count the
	// loader's connections (each loading phase has its own, closed after).
	rdb, st, err := newStoreSized(srv, cfg.OfflineTTL, 8)
	if err != nil {
		return err
	}
	defer rdb.Close()
	b.rdb, b.st = rdb, st
	b.kp = &keeper{st: st, period: cfg.OfflineTTL / 2}
	kctx, stopKeeper := context.WithCancel(ctx)
	keeperDone := make(chan struct{})
	go func() { b.kp.run(kctx); close(keeperDone) }()
	stopKeeperOnce := func() { stopKeeper(); <-keeperDone }
	defer stopKeeperOnce()

	t0 := time.Now()
	m0, err := settledSnapshot(ctx, rdb)
	if err != nil {
		return err
	}
	if err := withLoader(srv, cfg.OfflineTTL, func(st *redisstore.Store) (err error) {
		b.ids, err = createUsers(ctx, st, "user", 0, big, presence.RoleUser, s.pwHash)
		return err
	}); err != nil {
		return err
	}
	m1, err := settledSnapshot(ctx, rdb)
	if err != nil {
		return err
	}
	bigFig := memFigures{users: big, registered: float64(m1.UsedMemory-m0.UsedMemory) / float64(big)}
	s.logf("big dataset: %d users in %.1fs (%.0f B each)", big, time.Since(t0).Seconds(), bigFig.registered)

	// 1% online (at least one), plus an admin for the listing.
	t1 := time.Now()
	first := max(1, big/100)
	refs, err := startSessions(ctx, st, s.tokens, b.ids[:first])
	if err != nil {
		return err
	}
	b.refs = refs
	b.kp.add(refs)
	adminIDs, err := createUsers(ctx, st, "admin", 0, 1, presence.RoleAdmin, s.pwHash)
	if err != nil {
		return err
	}
	adminRefs, err := startSessions(ctx, st, s.tokens, adminIDs)
	if err != nil {
		return err
	}
	b.adminRef = adminRefs[0]
	b.kp.add(adminRefs) // the keeper's index of the admin is len(refs) here: see offline groups
	adminTok, err := accessTokens(s.tokens, adminRefs)
	if err != nil {
		return err
	}
	b.adminAccess = adminTok[0]
	s.logf("big dataset: %d sessions (1%%) in %.1fs", first, time.Since(t1).Seconds())

	if cfg.wants(ScenarioListing) {
		if b.child, err = StartChild(ctx, cfg.Self, ChildConfig{Mode: ModePresenced, RedisURL: srv.URL(),
			Env: s.childEnv(cfg.OfflineTTL, cfg.OfflineSweep), Workers: true, Notifications: true}); err != nil {
			return err
		}
		record(s.listingScenario(ctx, b))
		b.child.Stop()
		b.child = nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !cfg.wants(ScenarioMemory) && !cfg.wants(ScenarioOffline) {
		return nil
	}

	// Everyone else online. The keeper's list is refs (1%), the admin,
	// then the rest, in that order.
	t2 := time.Now()
	mb, err := settledSnapshot(ctx, rdb)
	if err != nil {
		return err
	}
	streamKey := "presence:{0}:events"
	sb, err := memoryUsage(ctx, rdb, streamKey)
	if err != nil {
		return err
	}
	rest := b.ids[first:]
	const chunk = 50000
	if err := withLoader(srv, cfg.OfflineTTL, func(st *redisstore.Store) error {
		for i := 0; i < len(rest); i += chunk {
			r, err := startSessions(ctx, st, s.tokens, rest[i:min(i+chunk, len(rest))])
			if err != nil {
				return err
			}
			b.refs = append(b.refs, r...)
			b.kp.add(r)
		}
		return nil
	}); err != nil {
		return err
	}
	mc, err := settledSnapshot(ctx, rdb)
	if err != nil {
		return err
	}
	sc, err := memoryUsage(ctx, rdb, streamKey)
	if err != nil {
		return err
	}
	n := float64(len(rest))
	if len(rest) > 0 {
		bigFig.stream = float64(sc-sb) / n
		bigFig.session = float64(mc.UsedMemory-mb.UsedMemory-(sc-sb)) / n
	}
	s.logf("big dataset: %d online in %.1fs (%.0f B per session, stream excluded)", len(b.refs), time.Since(t2).Seconds(), bigFig.session)

	if cfg.wants(ScenarioOffline) {
		record(s.offlineScenario(ctx, b))
	}
	if b.child != nil {
		b.child.Stop()
	}
	stopKeeperOnce()
	if !cfg.wants(ScenarioMemory) {
		return nil
	}
	memStart = time.Now()
	// Components, by deleting them (the dataset is no longer needed).
	if err := s.breakdown(ctx, rdb, b.ids, &bigFig); err != nil {
		return err
	}
	if err := naive(ctx, rdb, big, s.pwHash, &bigFig); err != nil {
		return err
	}
	figs = append(figs, bigFig)
	memSeconds += time.Since(memStart).Seconds()
	s.reportMemory(&mem, figs)
	mem.Seconds = memSeconds
	record(mem, nil)
	return nil
}

// withLoader runs fn with a store on its own connection pool, closed when
// fn returns: a memory snapshot taken afterwards does not count the
// loader's connections.
func withLoader(srv *RedisServer, ttl time.Duration, fn func(st *redisstore.Store) error) error {
	rdb, st, err := newStore(srv, ttl)
	if err != nil {
		return err
	}
	defer rdb.Close()
	return fn(st)
}

// settledSnapshot waits for the server to account the clients it still
// has (INFO's mem_clients_normal is updated by a cron, a few times a
// second), then takes a snapshot.
func settledSnapshot(ctx context.Context, rdb *redis.Client) (Snapshot, error) {
	select {
	case <-ctx.Done():
		return Snapshot{}, ctx.Err()
	case <-time.After(120 * time.Millisecond):
	}
	return TakeSnapshot(ctx, rdb)
}

// memoryUsage is MEMORY USAGE key SAMPLES 0 (0 when the key is absent).
func memoryUsage(ctx context.Context, rdb *redis.Client, key string) (int64, error) {
	v, err := rdb.MemoryUsage(ctx, key, 0).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

// memoryAt measures n users on a fresh redis-server: registered, online,
// the components, and the naive baselines.
func (s *suite) memoryAt(ctx context.Context, n int) (memFigures, error) {
	f := memFigures{users: n}
	srv, err := StartRedis(ctx, RedisOptions{Notifications: true, MaxMemory: 4 << 30})
	if err != nil {
		return f, err
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 1})
	defer rdb.Close()
	t0 := time.Now()
	m0, err := settledSnapshot(ctx, rdb)
	if err != nil {
		return f, err
	}
	var ids []int64
	if err := withLoader(srv, 120*time.Second, func(st *redisstore.Store) (err error) {
		ids, err = createUsers(ctx, st, "user", 0, n, presence.RoleUser, s.pwHash)
		return err
	}); err != nil {
		return f, err
	}
	m1, err := settledSnapshot(ctx, rdb)
	if err != nil {
		return f, err
	}
	if err := withLoader(srv, 120*time.Second, func(st *redisstore.Store) error {
		_, err := startSessions(ctx, st, s.tokens, ids)
		return err
	}); err != nil {
		return f, err
	}
	m2, err := settledSnapshot(ctx, rdb)
	if err != nil {
		return f, err
	}
	stream, err := memoryUsage(ctx, rdb, "presence:{0}:events")
	if err != nil {
		return f, err
	}
	f.registered = float64(m1.UsedMemory-m0.UsedMemory) / float64(n)
	f.stream = float64(stream) / float64(n)
	f.session = float64(m2.UsedMemory-m1.UsedMemory-stream) / float64(n)
	if err := s.breakdown(ctx, rdb, ids, &f); err != nil {
		return f, err
	}
	if err := naive(ctx, rdb, n, s.pwHash, &f); err != nil {
		return f, err
	}
	s.logf("memory at %d users: %.0f B registered, %.0f B per session (record %.0f, presence %.0f) in %.1fs",
		n, f.registered, f.session, f.record, f.presence, time.Since(t0).Seconds())
	return f, nil
}

// breakdown deletes, in turn, every session record, live key, the deadline
// index and the online set, and derives each one's cost per entry from the
// used_memory deltas. f.session must be set; f.presence becomes session
// minus record.
func (s *suite) breakdown(ctx context.Context, rdb *redis.Client, ids []int64, f *memFigures) error {
	zcard, err := rdb.ZCard(ctx, "presence:{0}:deadlines").Result()
	if err != nil {
		return err
	}
	scard, err := rdb.SCard(ctx, "presence:{0}:online").Result()
	if err != nil {
		return err
	}
	var liveKeys []string
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "presence:{0}:live:*", 10000).Result()
		if err != nil {
			return err
		}
		liveKeys = append(liveKeys, keys...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	sessKeys := make([]string, len(ids))
	for i, id := range ids {
		sessKeys[i] = "presence:{0}:sessions:" + strconv.FormatInt(id, 10)
	}
	step := func(keys []string) (int64, int64, error) {
		before, err := settledSnapshot(ctx, rdb)
		if err != nil {
			return 0, 0, err
		}
		var deleted int64
		for i := 0; i < len(keys); i += 1000 {
			cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys[i:min(i+1000, len(keys))] {
					p.Del(ctx, k)
				}
				return nil
			})
			if err != nil {
				return 0, 0, err
			}
			for _, c := range cmds {
				deleted += c.(*redis.IntCmd).Val()
			}
		}
		after, err := settledSnapshot(ctx, rdb)
		if err != nil {
			return 0, 0, err
		}
		return before.UsedMemory - after.UsedMemory, deleted, nil
	}
	// Live keys first: they are the only keys with a TTL, and the keeper
	// has stopped (the most recent refresh of each was at most TTL/2 ago).
	liveBytes, lives, err := step(liveKeys)
	if err != nil {
		return err
	}
	recBytes, recs, err := step(sessKeys)
	if err != nil {
		return err
	}
	dlBytes, _, err := step([]string{"presence:{0}:deadlines"})
	if err != nil {
		return err
	}
	onBytes, _, err := step([]string{"presence:{0}:online"})
	if err != nil {
		return err
	}
	per := func(b, n int64) float64 {
		if n == 0 {
			return nan
		}
		return float64(b) / float64(n)
	}
	f.record = per(recBytes, recs)
	f.live = per(liveBytes, lives)
	f.deadline = per(dlBytes, zcard)
	f.onset = per(onBytes, scard)
	f.presence = f.session - f.record
	return nil
}

// naive empties the server and measures, for n users, the naive design's
// presence key (SET online:<uid> 1 EX 120) and a minimal durable user (a
// hash of username, email, password hash and status).
func naive(ctx context.Context, rdb *redis.Client, n int, pwHash string, f *memFigures) error {
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}
	fill := func(op func(p redis.Pipeliner, i int)) (float64, error) {
		before, err := settledSnapshot(ctx, rdb)
		if err != nil {
			return 0, err
		}
		for i := 0; i < n; i += 1000 {
			if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for j := i; j < min(i+1000, n); j++ {
					op(p, j)
				}
				return nil
			}); err != nil {
				return 0, err
			}
		}
		after, err := settledSnapshot(ctx, rdb)
		if err != nil {
			return 0, err
		}
		return float64(after.UsedMemory-before.UsedMemory) / float64(n), nil
	}
	var err error
	if f.naiveOnline, err = fill(func(p redis.Pipeliner, i int) {
		p.Set(ctx, "online:"+strconv.Itoa(i+1), "1", 120*time.Second)
	}); err != nil {
		return err
	}
	f.naiveUser, err = fill(func(p redis.Pipeliner, i int) {
		name := fmt.Sprintf("user%07d", i)
		p.HSet(ctx, "user:"+strconv.Itoa(i+1), "username", name, "email", name+"@example.com", "password", pwHash, "status", "active")
	})
	return err
}

func (s *suite) reportMemory(sr *ScenarioReport, figs []memFigures) {
	for _, f := range figs {
		at := fmt.Sprintf(" @ %d users", f.users)
		sr.row(Row{Name: "registered user (durable)" + at, Unit: "B", Value: f.registered, Baseline: f.naiveUser,
			BaselineName: "4-field hash", Target: "≤ 400", Met: atMost(f.registered, 400)})
		sr.row(Row{Name: "online user, presence state" + at, Unit: "B", Value: f.presence, Baseline: f.naiveOnline,
			BaselineName: "SET online:<uid> 1 EX 120", Target: "≤ 256", Met: atMost(f.presence, 256)})
		sr.row(Row{Name: "online user, whole session" + at, Unit: "B", Value: f.session, Baseline: nan})
		sr.row(Row{Name: "  session record (auth: created, refresh id, user agent)" + at, Unit: "B", Value: f.record, Baseline: nan})
		sr.row(Row{Name: "  live key" + at, Unit: "B", Value: f.live, Baseline: nan})
		sr.row(Row{Name: "  deadline index entry" + at, Unit: "B", Value: f.deadline, Baseline: nan})
		sr.row(Row{Name: "  online set entry" + at, Unit: "B", Value: f.onset, Baseline: nan})
		sr.row(Row{Name: "  transitions stream, per login" + at, Unit: "B", Value: f.stream, Baseline: nan,
			Note: "bounded by PRESENCE_EVENTS_MAXLEN, not per user"})
	}
	sr.note("INFO memory used_memory deltas; users and sessions created through redisstore (CreateUser, StartSession), one session per user")
	sr.note("presence state = whole session − session record: live key, deadline index entry, online set entry and the user hash's presence fields; the session record is the login's auth metadata (created, refresh token id, %d-byte user agent)", len(benchUA))
	sr.note("components measured by deleting each kind of key at the end and dividing the used_memory drop by the count; the transitions stream is excluded (it is capped at PRESENCE_EVENTS_MAXLEN entries whatever the user count)")
}
