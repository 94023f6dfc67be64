package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// listingScenario makes full passes over the big dataset's users through
// GET admin/users/?per_page=1000 (every user, then online_status=online),
// following next until the pass ends, and checks each pass returns every
// user exactly once.
func (s *suite) listingScenario(ctx context.Context, b *bigEnv) (ScenarioReport, error) {
	cfg := s.cfg
	start := time.Now()
	total := len(b.ids) + 1 // and the admin
	online := len(b.refs) + 1
	sr := ScenarioReport{Name: ScenarioListing, Title: "Admin listing, full pass (GET admin/users/?per_page=1000)",
		Params: map[string]any{"users": total, "online": online, "per_page": 1000, "runs": cfg.Runs}}
	client := &http.Client{Timeout: 60 * time.Second}
	if cfg.Profile {
		path, err := s.profileWhile(ctx, b.child, "listing", func() error {
			_, err := s.listingPass(ctx, client, b, "", total)
			return err
		})
		if err != nil {
			return sr, err
		}
		sr.note("CPU profile of presenced during full passes (extra, not counted): %s", path)
	}
	var rate, wall, p99, fRate, fP99, base, presCPU, redisUsec []float64
	for run := 0; run < cfg.Runs; run++ {
		before, err := TakeSnapshot(ctx, b.rdb)
		if err != nil {
			return sr, err
		}
		cpu0, _ := b.child.CPU()
		res, err := s.listingPass(ctx, client, b, "", total)
		if err != nil {
			return sr, err
		}
		cpu1, _ := b.child.CPU()
		after, err := TakeSnapshot(ctx, b.rdb)
		if err != nil {
			return sr, err
		}
		delta := after.Sub(before)
		presCPU = append(presCPU, us(cpu1-cpu0)/float64(res.users))
		redisUsec = append(redisUsec, float64(delta.Usec)/float64(res.users))
		rate, wall, p99 = append(rate, res.rate()), append(wall, res.wallRate()), append(p99, ms(res.pages.Quantile(0.99)))
		fres, err := s.listingPass(ctx, client, b, "&online_status=online", online)
		if err != nil {
			return sr, fmt.Errorf("online filter: %w", err)
		}
		fRate, fP99 = append(fRate, fres.rate()), append(fP99, ms(fres.pages.Quantile(0.99)))
		d, err := directListing(ctx, b.rdb)
		if err != nil {
			return sr, err
		}
		base = append(base, d)
		s.logf("run %d: full pass %.0f users/s (page p99 %.1fms, %d pages); online filter %.0f users/s (page p99 %.1fms); direct HSCAN+HGETALL %.0f users/s",
			run+1, rate[run], p99[run], res.pages.Len(), fRate[run], fP99[run], d)
	}
	r := median(wall)
	sr.row(Row{Name: "full pass, wall clock", Unit: "users/s", Value: r, Runs: wall, Baseline: median(base),
		BaselineName: "HSCAN + pipelined HGETALL", Target: "≥ 100000", Met: atLeast(r, 100000)})
	sr.row(Row{Name: "full pass, server time (sum of page latencies)", Unit: "users/s", Value: median(rate), Runs: rate, Baseline: nan})
	p := median(p99)
	sr.row(Row{Name: "page p99", Unit: "ms", Value: p, Runs: p99, Baseline: nan, Target: "≤ 50", Met: atMost(p, 50)})
	sr.row(Row{Name: "presenced CPU per user listed", Unit: "µs", Value: median(presCPU), Runs: presCPU, Baseline: nan})
	sr.row(Row{Name: "Redis command time per user listed", Unit: "µs", Value: median(redisUsec), Runs: redisUsec, Baseline: nan,
		Note: "INFO commandstats usec, everything Redis ran during the pass (keeper included)"})
	sr.row(Row{Name: "online_status=online pass (1% online)", Unit: "users/s", Value: median(fRate), Runs: fRate, Baseline: nan})
	sr.row(Row{Name: "online_status=online page p99", Unit: "ms", Value: median(fP99), Runs: fP99, Baseline: nan})
	sr.note("one client, pages back to back; wall clock includes the client reading each ~%s page; every pass checked to return each user exactly once", "0.4 MB")
	sr.note("baseline: the bench walks the same username index straight from Redis (HSCAN COUNT 1000, then one pipeline of HGETALL per batch), no presence data, no JSON")
	sr.Seconds = time.Since(start).Seconds()
	return sr, nil
}

type passResult struct {
	users int
	pages Latencies
	sum   time.Duration
	wall  time.Duration
}

func (p passResult) rate() float64     { return float64(p.users) / p.sum.Seconds() }
func (p passResult) wallRate() float64 { return float64(p.users) / p.wall.Seconds() }

// listingPass follows one listing from the first page to the end and
// checks it returned want distinct users.
func (s *suite) listingPass(ctx context.Context, client *http.Client, b *bigEnv, filter string, want int) (passResult, error) {
	var res passResult
	seen := make(map[int64]struct{}, want)
	url := b.child.URL + "/api/users/admin/users/?per_page=1000" + filter
	start := time.Now()
	var buf bytes.Buffer
	for url != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return res, err
		}
		req.Header.Set("Authorization", "Bearer "+b.adminAccess)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return res, err
		}
		buf.Reset()
		_, err = io.Copy(&buf, resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if err != nil {
			return res, err
		}
		if resp.StatusCode != http.StatusOK {
			return res, fmt.Errorf("GET %s: %d %.300s", url, resp.StatusCode, buf.Bytes())
		}
		res.pages.Add(d)
		res.sum += d
		ids, next, err := scanPage(buf.Bytes())
		if err != nil {
			return res, err
		}
		for _, id := range ids {
			if _, dup := seen[id]; dup {
				return res, fmt.Errorf("user %d listed twice in one pass", id)
			}
			seen[id] = struct{}{}
		}
		url = next
	}
	res.wall = time.Since(start)
	res.users = len(seen)
	if len(seen) != want {
		return res, fmt.Errorf("a pass%s returned %d users, want %d", filter, len(seen), want)
	}
	return res, nil
}

// scanPage pulls the user IDs and the next URL out of a listing page
// without decoding the users (the client's cost is not what is measured).
// Each user object starts with "id"; the page's own members come after
// the results.
func scanPage(body []byte) (ids []int64, next string, err error) {
	marker := []byte(`{"id":`)
	rest := body
	for {
		i := bytes.Index(rest, marker)
		if i < 0 {
			break
		}
		rest = rest[i+len(marker):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		id, err := strconv.ParseInt(string(rest[:j]), 10, 64)
		if err != nil {
			return nil, "", fmt.Errorf("listing page: bad id near %.40q", rest)
		}
		ids = append(ids, id)
	}
	k := bytes.Index(body, []byte(`"next":`))
	if k < 0 {
		return nil, "", fmt.Errorf("listing page without next: %.200s", body)
	}
	v := body[k+len(`"next":`):]
	if bytes.HasPrefix(v, []byte("null")) {
		return ids, "", nil
	}
	end := bytes.IndexByte(v[1:], '"')
	if v[0] != '"' || end < 0 {
		return nil, "", fmt.Errorf("listing page: bad next %.80q", v)
	}
	u, err := strconv.Unquote(string(v[:end+2]))
	return ids, u, err
}

// directListing walks the username index straight from Redis and returns
// users/s.
func directListing(ctx context.Context, rdb *redis.Client) (float64, error) {
	start := time.Now()
	var cursor uint64
	n := 0
	for {
		kv, next, err := rdb.HScan(ctx, "presence:{0}:names", cursor, "", 1000).Result()
		if err != nil {
			return 0, err
		}
		_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 1; i < len(kv); i += 2 {
				p.HGetAll(ctx, "presence:{0}:user:"+kv[i])
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		n += len(kv) / 2
		if cursor = next; cursor == 0 {
			break
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
