package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/presence"
)

// Config configures a Store.
type Config struct {
	// Prefix starts every key name. Default "presence:".
	Prefix string
	// Shards is how many hash-tag shards users are spread over (for Redis
	// Cluster). It cannot change once data exists. Default 1.
	Shards int
	// TTL is how long a session stays live after its last activity.
	// Default 120s.
	TTL time.Duration
	// EventsMaxLen bounds each transitions stream (approximate trimming).
	// Default 100000.
	EventsMaxLen int64
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the store's few log lines. Default slog.Default().
	Logger *slog.Logger
	// AwayAfter is how long a user with live sessions may go without
	// activity before they are away; 0 disables away detection. Default 0.
	AwayAfter time.Duration
	// SweepInterval is how often the sweeper calls ScanIdle; it sizes the
	// idle scan's slices. Default 1s.
	SweepInterval time.Duration
	// OnTransition, when set, is called for every transition this process
	// makes (for metrics). It must not block.
	OnTransition func(status presence.OnlineStatus, reason presence.Reason)
	// ClusterPollInterval is how often a blocking ReadTransitions looks for
	// new transitions on a Redis Cluster with several shards, where one
	// XREAD cannot wait on streams of different slots (see events.go).
	// Unused on a single Redis server, or with one shard. Default 25ms.
	ClusterPollInterval time.Duration
}

// Store implements presence.Store on Redis.
type Store struct {
	rdb          redis.UniversalClient
	k            keys
	ttl          time.Duration
	ttlMS        int64
	maxlen       int64
	now          func() time.Time
	log          *slog.Logger
	sc           *scripts
	awayAfter    time.Duration
	interval     time.Duration
	onTransition func(presence.OnlineStatus, presence.Reason)
	// cluster is the client when it is a Redis Cluster client, else nil:
	// reads of every shard's stream and keyspace notifications then work
	// per slot and per master.
	cluster      *redis.ClusterClient
	pollInterval time.Duration
	touches      touchCoalescer // Touch's shared pipelines (batch.go)
	nodeTouches  sync.Map       // on a cluster: *redis.Client of a master → *touchCoalescer (batch.go)
}

var _ presence.Store = (*Store)(nil)

// New returns a Store on client. Call Prepare once at start-up to check the
// layout recorded in Redis and preload the scripts.
func New(client redis.UniversalClient, cfg Config) (*Store, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "presence:"
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("redisstore: prefix %q must not contain { or }", cfg.Prefix)
	}
	if cfg.Shards == 0 {
		cfg.Shards = 1
	}
	if cfg.Shards < 0 || cfg.Shards > 16384 {
		return nil, fmt.Errorf("redisstore: shards %d out of range 1..16384", cfg.Shards)
	}
	if cfg.TTL == 0 {
		cfg.TTL = 120 * time.Second
	}
	if cfg.TTL < time.Millisecond {
		return nil, fmt.Errorf("redisstore: TTL %s too small", cfg.TTL)
	}
	if cfg.EventsMaxLen == 0 {
		cfg.EventsMaxLen = 100000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Second
	}
	if cfg.OnTransition == nil {
		cfg.OnTransition = func(presence.OnlineStatus, presence.Reason) {}
	}
	if cfg.ClusterPollInterval <= 0 {
		cfg.ClusterPollInterval = 25 * time.Millisecond
	}
	sc, err := loadScripts(clusterClient(client) != nil)
	if err != nil {
		return nil, err
	}
	return &Store{
		rdb: client, k: keys{prefix: cfg.Prefix, shards: int64(cfg.Shards)},
		ttl: cfg.TTL, ttlMS: cfg.TTL.Milliseconds(), maxlen: cfg.EventsMaxLen,
		now: cfg.Now, log: cfg.Logger, sc: sc, onTransition: cfg.OnTransition,
		awayAfter: cfg.AwayAfter, interval: cfg.SweepInterval,
		cluster: clusterClient(client), pollInterval: cfg.ClusterPollInterval,
	}, nil
}

// Prepare records the shard count in Redis on first use and refuses to run
// with a different one (users would be looked up in the wrong shard), then
// loads the scripts so the first requests do not pay for EVAL.
func (s *Store) Prepare(ctx context.Context) error {
	want := strconv.FormatInt(s.k.shards, 10)
	if err := s.rdb.HSetNX(ctx, s.k.meta(), "shards", want).Err(); err != nil {
		return s.fail("prepare", err)
	}
	got, err := s.rdb.HGet(ctx, s.k.meta(), "shards").Result()
	if err != nil {
		return s.fail("prepare", err)
	}
	if got != want {
		return fmt.Errorf("redisstore: PRESENCE_SHARDS is %s but the data under prefix %q was written with %s shards", want, s.k.prefix, got)
	}
	for _, sc := range []*redis.Script{s.sc.createUser, s.sc.login, s.sc.revive, s.sc.activate, s.sc.logout, s.sc.rotate, s.sc.account, s.sc.expire, s.sc.idle} {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return s.fail("prepare: load script", err)
		}
	}
	return nil
}

// Announce records, for other services reading the keys, the schema version
// and the TTL in force (an online user's latest activity is a deadline minus
// ttl_ms). Only the server calls it, after Prepare succeeded: a tool such as
// createuser, or a start refused for a wrong shard count, must not change it.
func (s *Store) Announce(ctx context.Context) error {
	if err := s.rdb.HSet(ctx, s.k.meta(), "schema", 1, "ttl_ms", s.ttlMS).Err(); err != nil {
		return s.fail("announce", err)
	}
	return nil
}

// clusterClient returns client as a Redis Cluster client, or nil when it
// talks to a single server.
func clusterClient(client redis.UniversalClient) *redis.ClusterClient {
	cc, _ := client.(*redis.ClusterClient)
	return cc
}

// Shards returns the number of shards.
func (s *Store) Shards() int { return int(s.k.shards) }

// TTL returns the session presence TTL.
func (s *Store) TTL() time.Duration { return s.ttl }

// Ping checks Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return s.fail("ping", err)
	}
	return nil
}

// fail wraps err with the operation and marks connectivity failures with
// presence.ErrUnavailable so the HTTP layer answers 503, not 500.
func (s *Store) fail(op string, err error) error {
	if isUnavailable(err) {
		return fmt.Errorf("redisstore: %s: %w: %w", op, presence.ErrUnavailable, err)
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

func isUnavailable(err error) bool {
	var ne net.Error
	switch {
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout):
		return true
	}
	// On a Redis Cluster, TRYAGAIN (a script refused during a slot
	// migration, see lib.lua), ASK and MOVED (redirections still bouncing
	// when the client gave up) all mean a resharding or failover is under
	// way: retry shortly.
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "ASK", "MOVED"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

func (s *Store) nowMS() int64 { return s.now().UnixMilli() }

// observe reports a transition a script made: ev is "<status>|<stream ID>",
// or "" when none happened.
func (s *Store) observe(ev string, reason presence.Reason) {
	if status, _, ok := strings.Cut(ev, "|"); ok {
		s.onTransition(presence.OnlineStatus(status), reason)
	}
}

// run executes a script routed by key, with the shard prefix as ARGV[1].
func (s *Store) run(ctx context.Context, sc *redis.Script, shard int64, routeKey string, args ...any) ([]any, error) {
	argv := make([]any, 0, len(args)+1)
	argv = append(argv, s.k.tag(shard))
	argv = append(argv, args...)
	v, err := sc.Run(ctx, s.rdb, []string{routeKey}, argv...).Slice()
	if err != nil {
		return nil, err
	}
	return v, nil
}

func str(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case int64:
		return strconv.FormatInt(t, 10)
	}
	return ""
}

func msTime(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func parseMS(v string) time.Time {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return msTime(ms)
}

// userFromFlat decodes a user hash returned as a flat field/value array.
func userFromFlat(flat []any) presence.User {
	var u presence.User
	for i := 0; i+1 < len(flat); i += 2 {
		v := str(flat[i+1])
		switch str(flat[i]) {
		case "id":
			u.ID, _ = strconv.ParseInt(v, 10, 64)
		case "username":
			u.Username = v
		case "email":
			u.Email = v
		case "first_name":
			u.FirstName = v
		case "last_name":
			u.LastName = v
		case "role":
			u.Role = presence.Role(v)
		case "status":
			u.Status = presence.AccountStatus(v)
		case "online_status":
			u.OnlineStatus = presence.OnlineStatus(v)
		case "last_seen":
			u.LastSeen = parseMS(v)
		case "created_at":
			u.CreatedAt = parseMS(v)
		case "updated_at":
			u.UpdatedAt = parseMS(v)
		case "tv":
			u.TokenVersion, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if u.OnlineStatus == "" {
		u.OnlineStatus = presence.Offline
	}
	return u
}
