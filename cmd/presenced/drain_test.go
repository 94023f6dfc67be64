package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/redistest"
)

// keepAliveClient has its own pool, so a test can see which connections it
// keeps and close them.
func keepAliveClient() (*http.Client, *http.Transport) {
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, tr
}

type drainReply struct {
	status int
	close  bool // the server asked to close the connection
	body   map[string]any
}

func drainCall(t *testing.T, c *http.Client, method, url, token string) drainReply {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := drainReply{status: resp.StatusCode, close: resp.Close}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// stopAsync starts the shutdown of s (as SIGTERM does) and reports on the
// returned channel how long it took.
func stopAsync(t *testing.T, s *service) <-chan time.Duration {
	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		if err := s.stop(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		done <- time.Since(start)
	}()
	return done
}

// TestDrain checks the phase between SIGTERM and closing the listener:
// /readyz answers 503 at once, requests are still served but each response
// closes its connection, and the phase ends as soon as no client connection
// is open, or after PRESENCE_DRAIN_DELAY when one stays open.
func TestDrain(t *testing.T) {
	srv := redistest.Start(t)

	t.Run("ends when the clients have left", func(t *testing.T) {
		env := baseEnv(srv)
		env["PRESENCE_DRAIN_DELAY"] = "20s"
		s := startService(t, env)
		admin, _ := s.login("root", "rootpass1")
		c, tr := keepAliveClient()
		if r := drainCall(t, c, "GET", s.base+"/readyz", ""); r.status != http.StatusOK || r.close {
			t.Fatalf("readyz before shutdown: %+v", r)
		}

		stopped := stopAsync(t, s)
		// The drain begins as soon as the context ends; poll until it shows.
		var r drainReply
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if r = drainCall(t, c, "GET", s.base+"/readyz", ""); r.status == http.StatusServiceUnavailable {
				break
			}
		}
		if r.status != http.StatusServiceUnavailable || r.body["error"] != "Shutting down" || !r.close {
			t.Fatalf("readyz while draining: %+v, want 503 {error: Shutting down} with Connection: close", r)
		}
		// Still serving: a heartbeat works, and its connection closes.
		hb := drainCall(t, c, "POST", s.base+"/api/users/heartbeat/", admin)
		if hb.status != http.StatusOK || !hb.close {
			t.Errorf("heartbeat while draining: %+v, want 200 with Connection: close", hb)
		}
		select {
		case took := <-stopped:
			t.Fatalf("shutdown finished after %v with a client connection possibly open", took)
		case <-time.After(300 * time.Millisecond):
		}
		tr.CloseIdleConnections()
		http.DefaultClient.CloseIdleConnections() // s.login's
		left := time.Now()
		select {
		case <-stopped:
			if after := time.Since(left); after > 2*time.Second {
				t.Errorf("shutdown ended %v after the last connection closed, want at once", after)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("shutdown did not end after the last connection closed (drain delay 20s)")
		}
		if !strings.Contains(s.log.String(), "draining") {
			t.Errorf("the log does not mention the drain:\n%s", s.log.String())
		}
	})

	t.Run("lasts its delay while a connection stays open", func(t *testing.T) {
		const delay = 1500 * time.Millisecond
		env := baseEnv(srv)
		env["PRESENCE_DRAIN_DELAY"] = delay.String()
		s := startService(t, env)
		c, tr := keepAliveClient()
		defer tr.CloseIdleConnections()
		// One idle keep-alive connection the client never uses again.
		if r := drainCall(t, c, "GET", s.base+"/healthz", ""); r.status != http.StatusOK {
			t.Fatalf("healthz: %+v", r)
		}
		took := <-stopAsync(t, s)
		if took < delay || took > delay+3*time.Second {
			t.Errorf("shutdown took %v with an idle connection open, want the drain delay %v and little more", took, delay)
		}
	})

	t.Run("zero skips it", func(t *testing.T) {
		s := startService(t, baseEnv(srv)) // PRESENCE_DRAIN_DELAY=0
		c, tr := keepAliveClient()
		defer tr.CloseIdleConnections()
		if r := drainCall(t, c, "GET", s.base+"/healthz", ""); r.status != http.StatusOK {
			t.Fatalf("healthz: %+v", r)
		}
		if took := <-stopAsync(t, s); took > time.Second {
			t.Errorf("shutdown took %v with PRESENCE_DRAIN_DELAY=0", took)
		}
	})
}
