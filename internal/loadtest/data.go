package loadtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
)

// benchUA is the user agent recorded with each session: a typical browser
// string, so session records have their real size.
const benchUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

// loaderConcurrency is how many store calls the loader keeps in flight.
const loaderConcurrency = 64

// parallel runs fn(i) for i in [from, to) on loaderConcurrency goroutines
// and returns the first error.
func parallel(ctx context.Context, from, to int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	next.Store(int64(from))
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range loaderConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		// Only the parent's context can be done here.
		return context.Cause(ctx)
	}
	return first
}

// createUsers creates users name<from>..name<to-1> (active, role user) and
// returns their IDs. passwordHash is stored as is: a real bcrypt hash, so
// the credentials have their real size.
func createUsers(ctx context.Context, st *redisstore.Store, prefix string, from, to int, role presence.Role, passwordHash string) ([]int64, error) {
	ids := make([]int64, to-from)
	err := parallel(ctx, from, to, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("%s%07d", prefix, i)
		u, err := st.CreateUser(ctx, presence.NewUser{
			Username: name, Email: name + "@example.com", FirstName: "Bench", LastName: "User",
			Role: role, Status: presence.StatusActive, PasswordHash: passwordHash,
		})
		if err != nil {
			return fmt.Errorf("create user %s: %w", name, err)
		}
		ids[i-from] = u.ID
		return nil
	})
	return ids, err
}

// startSessions logs each user in once (one session each, as a login
// does) and returns the sessions.
func startSessions(ctx context.Context, st *redisstore.Store, tokens *auth.Tokens, ids []int64) ([]presence.SessionRef, error) {
	refs := make([]presence.SessionRef, len(ids))
	err := parallel(ctx, 0, len(ids), func(ctx context.Context, i int) error {
		rid, rexp, err := tokens.NewRefresh()
		if err != nil {
			return err
		}
		sess, u, err := st.StartSession(ctx, ids[i], presence.SessionStart{UserAgent: benchUA, RefreshID: rid, RefreshExpires: rexp})
		if err != nil {
			return fmt.Errorf("login user %d: %w", ids[i], err)
		}
		refs[i] = presence.SessionRef{UserID: ids[i], SessionID: sess.ID, TokenVersion: u.TokenVersion}
		return nil
	})
	return refs, err
}

// accessTokens mints an access token per session.
func accessTokens(tokens *auth.Tokens, refs []presence.SessionRef) ([]string, error) {
	out := make([]string, len(refs))
	for i, ref := range refs {
		p, err := tokens.Issue(ref)
		if err != nil {
			return nil, err
		}
		out[i] = p.Access
	}
	return out, nil
}

// keeper heartbeats a growing set of sessions in the background, each once
// per period, through Store.TouchSessions (the same commands as a
// heartbeat), so that a million sessions with a short TTL stay online. A
// range of them can be set aside: the keeper stops touching them.
type keeper struct {
	st     *redisstore.Store
	period time.Duration

	mu       sync.Mutex
	refs     []presence.SessionRef
	skipFrom int
	skipTo   int
	touched  atomic.Int64
	errs     atomic.Int64
}

func (k *keeper) add(refs []presence.SessionRef) {
	k.mu.Lock()
	k.refs = append(k.refs, refs...)
	k.mu.Unlock()
}

// skip sets aside refs[from:to] (indexes into everything added so far).
func (k *keeper) skip(from, to int) {
	k.mu.Lock()
	k.skipFrom, k.skipTo = from, to
	k.mu.Unlock()
}

// run touches every session once per period until ctx ends.
func (k *keeper) run(ctx context.Context) {
	for ctx.Err() == nil {
		start := time.Now()
		k.mu.Lock()
		n := len(k.refs)
		k.mu.Unlock()
		for i := 0; i < n && ctx.Err() == nil; i += redisstore.MaxBatch {
			k.mu.Lock()
			batch := make([]presence.SessionRef, 0, redisstore.MaxBatch)
			for j := i; j < min(i+redisstore.MaxBatch, n); j++ {
				if j < k.skipFrom || j >= k.skipTo {
					batch = append(batch, k.refs[j])
				}
			}
			k.mu.Unlock()
			if len(batch) > 0 {
				res, err := k.st.TouchSessions(ctx, batch)
				if err != nil || len(res.Revoked)+len(res.Unknown) > 0 {
					k.errs.Add(1)
				}
				k.touched.Add(int64(res.Refreshed))
			}
			// Pace the round over the period.
			due := start.Add(time.Duration(float64(k.period) * float64(min(i+redisstore.MaxBatch, n)) / float64(n)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
		if n == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}
