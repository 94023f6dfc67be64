// Package redistest starts real redis-server processes for tests: one per
// call, on a free loopback port, with its own data directory, gone when the
// test ends. The store's paging, keyspace notifications and fault handling
// can only be tested against a real server (miniredis has no notifications
// and no real SCAN), and tests must never touch a shared Redis.
// StartCluster does the same for a whole Redis Cluster (masters and
// replicas joined by redis-cli), for the cluster tests: resharding, killing
// a master, adding one.
//
// When redis-server is not on PATH, Start skips the test, unless the
// environment sets PRESENCE_REQUIRE_REDIS=1 (as `make test` and CI do): then
// it fails, so that a missing server can never silently skip the
// integration tests.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RequireEnv is the environment variable that turns a missing redis-server
// from a skip into a failure when set to "1".
const RequireEnv = "PRESENCE_REQUIRE_REDIS"

const (
	// startTimeout bounds how long a server may take to answer PING.
	startTimeout = 5 * time.Second
	// stopTimeout bounds how long a server may take to exit after SHUTDOWN
	// before it is killed.
	stopTimeout = 5 * time.Second
	// portAttempts is how often Start picks another port when the chosen
	// one was taken between probing and binding.
	portAttempts = 5
)

// Option changes how Start runs the server.
type Option func(*options)

type options struct {
	notifications bool
	aof           bool
	args          []string
	// clusterNodeTimeout, when set, runs the server as a Redis Cluster node
	// (see StartCluster) with this cluster-node-timeout.
	clusterNodeTimeout time.Duration
}

// WithoutNotifications starts the server with keyspace notifications off
// (the default enables expired events, "Ex"), as on a managed Redis that
// does not allow CONFIG SET.
func WithoutNotifications() Option { return func(o *options) { o.notifications = false } }

// WithArgs appends redis-server command-line arguments, for example
// WithArgs("--hz", "100"). They come last, so they override the defaults.
func WithArgs(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// WithAOF turns on the append-only file, so that data survives Stop and
// Restart.
func WithAOF() Option { return func(o *options) { o.aof = true } }

// Server is a running redis-server owned by one test.
type Server struct {
	// Addr is host:port of the server; it stays the same across Restart.
	Addr string

	bin  string
	dir  string
	port int
	// bus is the cluster bus port of a cluster node (0 otherwise); it stays
	// the same across Restart, like the port.
	bus  int
	opts options

	mu   sync.Mutex
	proc *process // nil while stopped
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	log  *lockedBuffer
}

// Start starts a redis-server on a free loopback port and waits until it
// answers PING. The server is stopped when the test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("redis-server not found on PATH, and %s=1 forbids skipping: install it (apt-get install redis-server) or run make test, which does", RequireEnv)
		} else {
			tb.Skip("redis-server not found on PATH; install it (apt-get install redis-server) or run make test, which does")
		}
		return nil // reached only with a fake testing.TB
	}
	o := options{notifications: true}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{bin: bin, dir: tb.TempDir(), opts: o}
	// Registered after TempDir, so it runs before the directory is removed.
	tb.Cleanup(s.Stop)

	var errs []error
	for range portAttempts {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("redistest: %v", err)
			return nil
		}
		err = s.start(port)
		if err == nil {
			return s
		}
		errs = append(errs, err)
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	tb.Fatalf("redistest: cannot start redis-server: %v", errors.Join(errs...))
	return nil
}

// URL is the server's address as a REDIS_URL (database 0).
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a new client of the server, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop shuts the server down (SHUTDOWN NOSAVE, then SIGKILL if it does not
// exit in time) and waits for it to exit. Data survives only WithAOF. Stop on
// a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	p := s.proc
	s.proc = nil
	select {
	case <-p.done:
		return // already gone (crashed, or killed by the test)
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	// SHUTDOWN answers by closing the connection, so its error says
	// nothing; whether the process exits is what counts.
	_ = c.ShutdownNoSave(ctx).Err()
	_ = c.Close()
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill ends the server with SIGKILL, as a crash or a lost machine would (no
// SHUTDOWN, nothing saved, clients see the connection drop), and waits for
// it to exit. Restart brings it back. Kill on a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	p := s.proc
	s.proc = nil
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Restart stops the server if it is running and starts it again on the same
// port with the same data directory and options, as a Redis that went down
// and came back. Clients of the old process reconnect on their own.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	var err error
	// The port was free a moment ago; a retry covers a slow release.
	for range 3 {
		if err = s.start(s.port); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("redistest: cannot restart redis-server on %s: %v", s.Addr, err)
}

// errPortTaken means another process bound the port first.
var errPortTaken = errors.New("port already in use")

// start runs redis-server on port and waits until it answers.
func (s *Server) start(port int) error {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", "",
	}
	if s.opts.aof {
		args = append(args, "--appendonly", "yes")
	}
	if s.opts.notifications {
		args = append(args, "--notify-keyspace-events", "Ex")
	}
	bus := s.bus
	if s.opts.clusterNodeTimeout > 0 {
		// The default bus port (port + 10000) may be taken or past 65535:
		// pick a free one too, kept across Restart (other nodes know it).
		if bus == 0 || port != s.port {
			var err error
			if bus, err = freePort(); err != nil {
				return err
			}
		}
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", strconv.FormatInt(s.opts.clusterNodeTimeout.Milliseconds(), 10),
			// A replica that never finished its first sync may not take
			// over. Diskless sync waits 5 s for more replicas by default,
			// and with that wait at 0 a replica was sometimes left "online"
			// at offset 0, receiving nothing (Redis 7.0.15): sync through
			// a file instead, which is quick for a test's empty data.
			"--repl-diskless-sync", "no",
		)
	}
	args = append(args, s.opts.args...)

	p := &process{cmd: exec.Command(s.bin, args...), done: make(chan struct{}), log: &lockedBuffer{}}
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitReady(addr, p); err != nil {
		_ = p.cmd.Process.Kill()
		<-p.done
		if strings.Contains(p.log.String(), "Address already in use") {
			return fmt.Errorf("%s: %w", addr, errPortTaken)
		}
		if errors.Is(err, errPortTaken) {
			return fmt.Errorf("%s: %w", addr, err)
		}
		return fmt.Errorf("%s: %w\nredis-server output:\n%s", addr, err, p.log.Tail(2048))
	}
	s.mu.Lock()
	s.Addr, s.port, s.bus, s.proc = addr, port, bus, p
	s.mu.Unlock()
	return nil
}

// waitReady polls addr until it answers PING as our process (not some other
// server that happened to take the port), the process exits, or
// startTimeout passes.
func waitReady(addr string, p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{
		Addr: addr, MaxRetries: -1, DialerRetries: 1,
		// Whatever answers on addr may not be our process and may never
		// reply (a listener that does not speak RESP). go-redis does not
		// abort a blocked read when ctx is cancelled, so short timeouts
		// keep each attempt brief and the loop notices our process exit.
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
	})
	defer c.Close()
	for {
		select {
		case <-p.done:
			return errors.New("redis-server exited during start-up")
		default:
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no answer to PING within %s", startTimeout)
		}
		// Probe with a bare dial first: go-redis logs every failed dial,
		// which would fill test output while the server boots.
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		_ = conn.Close()
		if err := c.Ping(ctx).Err(); err == nil {
			info, err := c.Info(ctx, "server").Result()
			if err != nil {
				return fmt.Errorf("INFO server: %w", err)
			}
			if pid := infoField(info, "process_id"); pid != strconv.Itoa(p.cmd.Process.Pid) {
				return fmt.Errorf("another redis-server (pid %s) answers on %s: %w", pid, addr, errPortTaken)
			}
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// infoField returns the value of name in an INFO reply.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before redis-server binds it; Start retries then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects a process's output; the process writes from its own
// goroutine while start reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail returns at most the last n bytes of output.
func (b *lockedBuffer) Tail(n int) string {
	s := b.String()
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}
