package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func configGet(t *testing.T, s *Server, name string) string {
	t.Helper()
	got, err := s.Client(t).ConfigGet(context.Background(), name).Result()
	if err != nil {
		t.Fatalf("CONFIG GET %s: %v", name, err)
	}
	return got[name]
}

func TestStartDefaults(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := context.Background()
	c := s.Client(t)
	if got, err := c.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING: got %q, %v, want PONG", got, err)
	}
	if !strings.HasPrefix(s.Addr, "127.0.0.1:") || strings.HasSuffix(s.Addr, ":6379") {
		t.Errorf("Addr: got %q, want 127.0.0.1 on a private port", s.Addr)
	}
	if got, want := s.URL(), "redis://"+s.Addr+"/0"; got != want {
		t.Errorf("URL: got %q, want %q", got, want)
	}
	ev := configGet(t, s, "notify-keyspace-events")
	if !strings.Contains(ev, "E") || !strings.Contains(ev, "x") {
		t.Errorf("notify-keyspace-events: got %q, want E and x", ev)
	}
	for name, want := range map[string]string{"save": "", "appendonly": "no", "bind": "127.0.0.1"} {
		if got := configGet(t, s, name); got != want {
			t.Errorf("CONFIG GET %s: got %q, want %q", name, got, want)
		}
	}

	// The notifications are really delivered.
	sub := c.Subscribe(ctx, "__keyevent@0__:expired")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	if err := c.Set(ctx, "k", "v", 20*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-sub.Channel():
		if msg.Payload != "k" {
			t.Errorf("expired event: got key %q, want k", msg.Payload)
		}
	case <-time.After(3 * time.Second):
		t.Error("no expired event within 3s")
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		opts        []Option
		param, want string
	}{
		{"without notifications", []Option{WithoutNotifications()}, "notify-keyspace-events", ""},
		{"with args", []Option{WithArgs("--hz", "100")}, "hz", "100"},
		{"args override defaults", []Option{WithArgs("--notify-keyspace-events", "KEA")}, "notify-keyspace-events", "AKE"},
		{"with aof", []Option{WithAOF()}, "appendonly", "yes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, tt.opts...)
			if got := configGet(t, s, tt.param); got != tt.want {
				t.Errorf("CONFIG GET %s: got %q, want %q", tt.param, got, tt.want)
			}
		})
	}
}

func TestServersAreIndependent(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	if a.Addr == b.Addr {
		t.Fatalf("two servers on one address %s", a.Addr)
	}
	ctx := context.Background()
	if err := a.Client(t).Set(ctx, "only-in-a", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Client(t).Exists(ctx, "only-in-a").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS on the other server: got %d, %v, want 0", n, err)
	}
}

func TestStopAndRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     []Option
		keepData bool
	}{
		{"without aof data is lost", nil, false},
		{"with aof data survives", []Option{WithAOF()}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, tt.opts...)
			addr := s.Addr
			ctx := context.Background()
			c := s.Client(t)
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}

			s.Stop()
			s.Stop() // a second Stop is harmless
			if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				conn.Close()
				t.Fatalf("after Stop: %s still accepts connections", addr)
			}

			s.Restart(t)
			if s.Addr != addr {
				t.Errorf("Restart: got address %s, want the same %s", s.Addr, addr)
			}
			// The old client reconnects by itself.
			n, err := c.Exists(ctx, "k").Result()
			if err != nil {
				t.Fatalf("EXISTS after Restart: %v", err)
			}
			if got := n == 1; got != tt.keepData {
				t.Errorf("key after Restart: got present=%v, want %v", got, tt.keepData)
			}
			s.Restart(t) // restarting a running server works too
			if err := c.Ping(ctx).Err(); err != nil {
				t.Errorf("PING after second Restart: %v", err)
			}
		})
	}
}

func TestStartOnTakenPort(t *testing.T) {
	t.Parallel()
	other := Start(t)                          // a redis-server already on the port
	l, err := net.Listen("tcp", "127.0.0.1:0") // a plain listener on the port
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tests := []struct {
		name string
		port int
	}{
		{"port of another redis", other.port},
		{"port of a listener", l.Addr().(*net.TCPAddr).Port},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{bin: other.bin, dir: t.TempDir(), opts: options{notifications: true}}
			err := s.start(tt.port)
			if !errors.Is(err, errPortTaken) {
				s.Stop()
				t.Fatalf("start on a taken port: got %v, want errPortTaken", err)
			}
			if s.proc != nil {
				t.Errorf("start on a taken port left a process behind")
			}
		})
	}
	if err := other.Client(t).Ping(context.Background()).Err(); err != nil {
		t.Errorf("the other server after the failed starts: %v", err)
	}
}

func TestCleanupStopsServer(t *testing.T) {
	var addr string
	t.Run("owner", func(t *testing.T) {
		addr = Start(t).Addr
	})
	if addr == "" {
		t.Skip("redis-server unavailable")
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("after the owning test ended: %s still accepts connections", addr)
	}
}

// recordingTB records Skip and Fatal instead of stopping the test, so that
// Start's behaviour without redis-server can be observed.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper()                   {}
func (r *recordingTB) Skip(args ...any)          { r.skipped = fmt.Sprint(args...) }
func (r *recordingTB) Fatalf(f string, a ...any) { r.failed = fmt.Sprintf(f, a...) }

func TestMissingBinary(t *testing.T) {
	tests := []struct {
		name, require        string
		wantSkip, wantFailed bool
	}{
		{"skips by default", "", true, false},
		{"fails when required", "1", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv(RequireEnv, tt.require)
			r := &recordingTB{TB: t}
			if s := Start(r); s != nil {
				t.Fatalf("Start: got a server at %s without redis-server on PATH", s.Addr)
			}
			if got := r.skipped != ""; got != tt.wantSkip {
				t.Errorf("skipped: got %v (%q), want %v", got, r.skipped, tt.wantSkip)
			}
			if got := r.failed != ""; got != tt.wantFailed {
				t.Errorf("failed: got %v (%q), want %v", got, r.failed, tt.wantFailed)
			}
			for _, msg := range []string{r.skipped, r.failed} {
				if msg != "" && !strings.Contains(msg, "apt-get install redis-server") {
					t.Errorf("message %q does not say how to install redis-server", msg)
				}
			}
		})
	}
}
