package loadtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Load is a closed-loop HTTP load: Conns workers, each with its own
// keep-alive connection, send requests back to back for Warmup + Duration;
// only requests that complete within Duration after the warm-up count.
type Load struct {
	Conns    int
	Warmup   time.Duration
	Duration time.Duration
	// Request builds the seq-th request of worker w.
	Request func(w, seq int) (*http.Request, error)
	// Status is the expected response status; any other is an error.
	Status int
	// Check, when set, inspects each counted response body.
	Check func(body []byte) error
	// Client, when set, sends the requests (its keep-alive connections
	// carry over between runs); default a new one per run.
	Client *http.Client
}

// NewClient returns a client for conns keep-alive connections to one host.
func NewClient(conns int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// LoadResult is what a Load measured.
type LoadResult struct {
	Requests int64
	Errors   int64
	// FirstError is the first failure seen, for the report.
	FirstError string
	Elapsed    time.Duration
	Latency    Latencies
}

// RPS is the rate of successful requests.
func (r LoadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Run runs the load. It returns an error only when no request succeeded.
func (l Load) Run(ctx context.Context) (LoadResult, error) {
	client := l.Client
	if client == nil {
		client = NewClient(l.Conns)
		defer client.CloseIdleConnections()
	}
	start := time.Now()
	from := start.Add(l.Warmup)
	until := from.Add(l.Duration)
	ctx, cancel := context.WithDeadline(ctx, until.Add(30*time.Second))
	defer cancel()

	type worker struct {
		lat       Latencies
		n, errs   int64
		firstErr  string
		noteError func(string)
	}
	workers := make([]*worker, l.Conns)
	var wg sync.WaitGroup
	for w := range workers {
		wk := &worker{}
		wk.noteError = func(s string) {
			wk.errs++
			if wk.firstErr == "" {
				wk.firstErr = s
			}
		}
		workers[w] = wk
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 4096)
			for seq := 0; ; seq++ {
				t0 := time.Now()
				if !t0.Before(until) || ctx.Err() != nil {
					return
				}
				req, err := l.Request(w, seq)
				if err != nil {
					wk.noteError(err.Error())
					return
				}
				resp, err := client.Do(req.WithContext(ctx))
				if err != nil {
					wk.noteError(err.Error())
					continue
				}
				buf, err = readAll(resp.Body, buf[:0])
				resp.Body.Close()
				t1 := time.Now()
				if t0.Before(from) || t1.After(until) {
					continue
				}
				switch {
				case err != nil:
					wk.noteError(err.Error())
				case resp.StatusCode != l.Status:
					wk.noteError(fmt.Sprintf("status %d: %.200s", resp.StatusCode, buf))
				default:
					if l.Check != nil {
						if err := l.Check(buf); err != nil {
							wk.noteError(err.Error())
							continue
						}
					}
					wk.n++
					wk.lat.Add(t1.Sub(t0))
				}
			}
		}()
	}
	wg.Wait()
	var res LoadResult
	res.Elapsed = l.Duration
	for _, wk := range workers {
		res.Requests += wk.n
		res.Errors += wk.errs
		res.Latency.Merge(&wk.lat)
		if res.FirstError == "" {
			res.FirstError = wk.firstErr
		}
	}
	if res.Requests == 0 {
		return res, fmt.Errorf("loadtest: no request succeeded (%d errors, first: %s)", res.Errors, res.FirstError)
	}
	return res, nil
}

// Interleave runs a and b in alternating slices (a's warm-up, then
// slices of each, a first) and returns each one's merged result. Machine
// noise that comes and goes (other processes on a shared machine) then
// hits both about equally, so their ratio is steadier than that of two
// long runs one after the other. Each keeps its own connections across
// its slices.
func Interleave(ctx context.Context, a, b Load, slices int) (LoadResult, LoadResult, error) {
	ca, cb := NewClient(a.Conns), NewClient(b.Conns)
	defer ca.CloseIdleConnections()
	defer cb.CloseIdleConnections()
	a.Client, b.Client = ca, cb
	// Warm both up (connections, caches) outside the measurement.
	for _, l := range []Load{a, b} {
		w := l
		w.Duration, w.Warmup = l.Warmup, 0
		if _, err := w.Run(ctx); err != nil {
			return LoadResult{}, LoadResult{}, err
		}
	}
	a.Warmup, b.Warmup = 0, 0
	a.Duration /= time.Duration(slices)
	b.Duration /= time.Duration(slices)
	var ra, rb LoadResult
	for i := 0; i < slices; i++ {
		for _, x := range []struct {
			l   Load
			acc *LoadResult
		}{{a, &ra}, {b, &rb}} {
			r, err := x.l.Run(ctx)
			if err != nil {
				return ra, rb, err
			}
			x.acc.Requests += r.Requests
			x.acc.Errors += r.Errors
			x.acc.Elapsed += r.Elapsed
			x.acc.Latency.Merge(&r.Latency)
			if x.acc.FirstError == "" {
				x.acc.FirstError = r.FirstError
			}
		}
	}
	return ra, rb, nil
}

// readAll reads r into buf, growing it as needed.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
