package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/redistest"
)

// TestOrderingRaces fires requests that contradict each other at the same
// moment, through two replicas, many times: heartbeat against logout,
// refresh against logout-all-devices, login against suspension. Whatever
// order Redis runs them in, the session-ending decision wins: afterwards no
// token of the session works, the user is offline, nothing of the session is
// left in Redis, and it stays so (no late heartbeat or sweep resurrects it).
func TestOrderingRaces(t *testing.T) {
	needChaos(t)
	const (
		racers = 20
		rounds = 10
	)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	a := startNode(t, "replica-a", baseEnv(srv))
	b := startNode(t, "replica-b", baseEnv(srv))
	admin := adminToken(t, a.base)
	users := createUsers(t, a.base, admin, "racer", racers)
	bases := []string{a.base, b.base}
	// on picks a replica at random for each request.
	on := func() string { return bases[rand.IntN(2)] }

	// together runs fns at once, each after a random delay of up to 3 ms.
	together := func(fns ...func()) {
		var wg sync.WaitGroup
		for _, fn := range fns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				fn()
			}()
		}
		wg.Wait()
	}

	var outcomes sync.Map // "race/outcome" -> *atomic.Int64
	count := func(key string) {
		v, _ := outcomes.LoadOrStore(key, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}

	races := []struct {
		name string
		run  func(t *testing.T, u *account) (dead []string)
	}{
		{"heartbeat racing logout", func(t *testing.T, u *account) []string {
			access, _ := login(t, on(), u.name, userPassword)
			var hb [3]reply
			var out reply
			together(
				func() { hb[0] = call("POST", on()+"/api/users/heartbeat/", access, nil) },
				func() { hb[1] = call("POST", on()+"/api/users/heartbeat/", access, nil) },
				func() { out = call("POST", on()+"/api/users/logout/", access, nil) },
				func() { hb[2] = call("POST", on()+"/api/users/heartbeat/", access, nil) },
			)
			if out.status != http.StatusOK {
				t.Errorf("%s: logout: %v", u.name, out)
			}
			for _, r := range hb {
				switch r.status {
				case http.StatusOK:
					count("heartbeat racing logout/heartbeat first")
				case http.StatusUnauthorized:
					count("heartbeat racing logout/logout first")
				default:
					t.Errorf("%s: heartbeat: %v", u.name, r)
				}
			}
			return []string{access}
		}},
		{"refresh racing logout-all", func(t *testing.T, u *account) []string {
			access, refresh := login(t, on(), u.name, userPassword)
			var ref, all reply
			together(
				func() { ref = call("POST", on()+"/api/users/refresh/", "", map[string]string{"refresh": refresh}) },
				func() { all = call("POST", on()+"/api/users/logout-all-devices/", access, nil) },
			)
			if all.status != http.StatusOK {
				t.Errorf("%s: logout-all: %v", u.name, all)
			}
			dead := []string{access}
			switch ref.status {
			case http.StatusOK:
				count("refresh racing logout-all/refresh first")
				m := ref.json()
				a2, _ := m["access"].(string)
				dead = append(dead, a2)
				if r2, _ := m["refresh"].(string); r2 != "" {
					if r := call("POST", on()+"/api/users/refresh/", "", map[string]string{"refresh": r2}); r.status != http.StatusUnauthorized {
						t.Errorf("%s: the refresh token from a refresh that raced logout-all still refreshes: %v", u.name, r)
					}
				}
			case http.StatusUnauthorized:
				count("refresh racing logout-all/logout-all first")
			default:
				t.Errorf("%s: refresh: %v", u.name, ref)
			}
			return dead
		}},
		{"login racing suspension", func(t *testing.T, u *account) []string {
			var in, sus reply
			together(
				func() {
					in = call("POST", on()+"/api/users/login/", "", map[string]string{"username": u.name, "password": userPassword})
				},
				func() {
					sus = call("POST", fmt.Sprintf("%s/api/users/admin/users/%d/suspend/", on(), u.id), admin, nil)
				},
			)
			if sus.status != http.StatusOK {
				t.Errorf("%s: suspend: %v", u.name, sus)
			}
			var dead []string
			switch in.status {
			case http.StatusOK:
				count("login racing suspension/login first")
				tokens, _ := in.json()["tokens"].(map[string]any)
				access, _ := tokens["access"].(string)
				dead = append(dead, access)
			case http.StatusForbidden:
				count("login racing suspension/suspension first")
			default:
				t.Errorf("%s: login: %v", u.name, in)
			}
			if r := call("POST", fmt.Sprintf("%s/api/users/admin/users/%d/activate/", on(), u.id), admin, nil); r.status != http.StatusOK {
				t.Errorf("%s: activate: %v", u.name, r)
			}
			return dead
		}},
	}

	for _, race := range races {
		t.Run(race.name, func(t *testing.T) {
			var wg sync.WaitGroup
			for _, u := range users {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range rounds {
						for _, tok := range race.run(t, u) {
							checkEnded(t, rdb, on(), u, tok)
						}
						checkNoSession(t, rdb, u)
					}
				}()
			}
			wg.Wait()
		})
	}

	// Nothing comes back later: past a TTL and a sweep, every racer is still
	// offline with no session, and the stream shows no resurrection.
	time.Sleep(ttl + sweepInterval)
	trs, total := readTransitions(t, rdb)
	for _, u := range users {
		checkNoSession(t, rdb, u)
		checkAlternation(t, u.name, trs[u.id], "offline")
	}
	var summary []string
	outcomes.Range(func(k, v any) bool {
		summary = append(summary, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	slices.Sort(summary)
	t.Logf("FIGURES races: %d races of each kind over two replicas, outcomes %v; %d transitions checked, no session resurrected", racers*rounds, summary, total)
}

// checkEnded checks that the access token no longer works.
func checkEnded(t *testing.T, rdb *redis.Client, base string, u *account, access string) {
	t.Helper()
	if access == "" {
		t.Errorf("%s: no token to check", u.name)
		return
	}
	for _, r := range []reply{
		call("POST", base+"/api/users/heartbeat/", access, nil),
		call("GET", base+"/api/users/profile/", access, nil),
	} {
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: a token of an ended session still works: %v", u.name, r)
		}
	}
}

// checkNoSession checks that u is offline and that nothing of any session of
// u is left in Redis: no live key, no deadline entry.
func checkNoSession(t *testing.T, rdb *redis.Client, u *account) {
	t.Helper()
	ctx := context.Background()
	if st, _ := userState(t, rdb, u.id); st != "offline" {
		t.Errorf("%s: %s after every session ended", u.name, st)
	}
	live, err := rdb.Keys(ctx, fmt.Sprintf("presence:{0}:live:%d:*", u.id)).Result()
	if err != nil || len(live) != 0 {
		t.Errorf("%s: live keys left: %v %v", u.name, live, err)
	}
	pattern := fmt.Sprintf("%d:*", u.id)
	entries, _, err := rdb.ZScan(ctx, deadlinesKey, 0, pattern, 10000).Result()
	if err != nil || len(entries) != 0 {
		t.Errorf("%s: deadline entries left: %v %v", u.name, entries, err)
	}
}
