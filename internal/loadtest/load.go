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
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        l.Conns,
		MaxIdleConnsPerHost: l.Conns,
		MaxConnsPerHost:     l.Conns,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
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
