package main

import (
	"bufio"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/redistest"
)

// TestShutdownEndsEventStreams checks the wiring of StreamsDone: an open
// event stream must not hold shutdown until PRESENCE_SHUTDOWN_TIMEOUT
// (http.Server.Shutdown waits for handlers but never cancels them).
func TestShutdownEndsEventStreams(t *testing.T) {
	srv := redistest.Start(t)
	env := baseEnv(srv)
	env["PRESENCE_SHUTDOWN_TIMEOUT"] = "10s"
	s := startService(t, env)
	admin, _ := s.login("root", "rootpass1")

	req, _ := http.NewRequestWithContext(context.Background(), "GET", s.base+"/api/users/admin/events/", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events: status %d", resp.StatusCode)
	}
	// Read up to the ready event: the stream is being served.
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && sc.Text() != "event: ready" {
	}

	start := time.Now()
	if err := s.stop(); err != nil {
		t.Fatalf("shutdown with an open event stream: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("shutdown took %v with an open event stream, want well under the 10s timeout", took)
	}
	// The stream ended cleanly (the handler returned): the client reads
	// to its end without an error.
	for sc.Scan() {
	}
	if err := sc.Err(); err != nil {
		t.Errorf("stream ended with %v, want a clean end", err)
	}
}
