package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/redistest"
)

// enableEnv turns the fault scenarios on.
const enableEnv = "PRESENCE_CHAOS"

// needChaos skips the test unless PRESENCE_CHAOS=1. The scenarios take
// minutes and start processes; `make chaos` runs them, `make test` does not.
func needChaos(t *testing.T) {
	t.Helper()
	if os.Getenv(enableEnv) != "1" {
		t.Skipf("fault scenario: runs only with %s=1 (make chaos, CI)", enableEnv)
	}
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// raceEnv turns off the race detector in the presenced binary under test
// when set to "0" (it is on by default: a data race in the service then
// fails the scenario that provoked it, at the cost of a slower service).
const raceEnv = "PRESENCE_CHAOS_RACE"

// raceBuild reports whether the binary under test has the race detector.
func raceBuild() bool { return os.Getenv(raceEnv) != "0" }

// presencedBinary builds cmd/presenced once per test run (with -race unless
// PRESENCE_CHAOS_RACE=0) and returns the path of the binary.
func presencedBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "presenced-chaos-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "presenced")
		gotool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go tool not on PATH: %w", err)
			return
		}
		args := []string{"build", "-o", binPath}
		if raceBuild() {
			args = append(args, "-race")
		}
		args = append(args, "github.com/presenced/presenced/cmd/presenced")
		start := time.Now()
		out, err := exec.Command(gotool, args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
			return
		}
		t.Logf("built presenced (race=%v) in %v", raceBuild(), time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Test configuration shared by the scenarios.
const (
	jwtSecret     = "chaos-test-secret-0123456789abcdef-0123456789"
	adminName     = "root"
	adminPassword = "root-password-1"
	userPassword  = "user-password-1"
)

// baseEnv is the environment of a presenced under test on srv.
func baseEnv(srv *redistest.Server) map[string]string {
	return map[string]string{
		"REDIS_URL":                srv.URL(),
		"PRESENCE_JWT_SECRET":      jwtSecret,
		"PRESENCE_ADMIN_USERNAME":  adminName,
		"PRESENCE_ADMIN_PASSWORD":  adminPassword,
		"PRESENCE_BCRYPT_COST":     "4",
		"PRESENCE_TTL":             "3s",
		"PRESENCE_SWEEP_INTERVAL":  "200ms",
		"PRESENCE_REQUEST_TIMEOUT": "2s",
		"LOG_FORMAT":               "json",
		// The scenarios log in far more than a person would.
		"PRESENCE_LOGIN_LIMIT_USER": "off",
		"PRESENCE_LOGIN_LIMIT_IP":   "off",
		// Restarts should not wait for the drain phase; the SIGTERM
		// scenario sets one.
		"PRESENCE_DRAIN_DELAY": "0",
	}
}

// node is one presenced process.
type node struct {
	t    *testing.T
	name string
	env  []string
	// addr is host:port; it stays the same across restarts.
	addr string
	base string
	logs *lockedBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
}

// startNode starts presenced with env (PRESENCE_ADDR is chosen here) and
// waits until it serves. The process is killed when the test ends; its log is
// printed if the test failed.
func startNode(t *testing.T, name string, env map[string]string) *node {
	t.Helper()
	bin := presencedBinary(t)
	port := freePort(t)
	n := &node{t: t, name: name, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), logs: &lockedBuffer{}}
	n.base = "http://" + n.addr
	n.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir(), "PRESENCE_ADDR=" + n.addr}
	if raceBuild() {
		// A data race in the service ends it with a report in its log.
		n.env = append(n.env, "GORACE=halt_on_error=1 exitcode=66")
	}
	for k, v := range env {
		n.env = append(n.env, k+"="+v)
	}
	n.spawn(bin)
	t.Cleanup(func() {
		n.kill()
		logs := n.logs.String()
		if strings.Contains(logs, "DATA RACE") || t.Failed() {
			t.Logf("%s log (tail):\n%s", n.name, tail(logs, 60000))
		}
		if strings.Contains(logs, "DATA RACE") {
			t.Errorf("%s: data race reported", n.name)
		}
		if strings.Contains(logs, "panic") {
			t.Errorf("%s: the log mentions a panic", n.name)
		}
	})
	return n
}

// spawn starts the process and waits until /healthz answers.
func (n *node) spawn(bin string) {
	n.t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = n.env
	cmd.Stdout, cmd.Stderr = n.logs, n.logs
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("%s: start: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()

	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			n.t.Fatalf("%s exited during start-up (%v):\n%s", n.name, cmd.ProcessState, tail(n.logs.String(), 4000))
		default:
		}
		if resp, err := c.Get(n.base + "/healthz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s did not serve within 20s:\n%s", n.name, tail(n.logs.String(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restart starts the process again on the same address (after kill or term).
func (n *node) restart() {
	n.t.Helper()
	n.spawn(presencedBinary(n.t))
}

// pid is the current process's ID.
func (n *node) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// kill sends SIGKILL and waits for the process to exit.
func (n *node) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// term sends SIGTERM and waits up to limit for the process to exit; it
// returns the exit code (-1 when it had to be killed) and how long it took.
func (n *node) term(limit time.Duration) (code int, took time.Duration) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), time.Since(start)
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		return -1, time.Since(start)
	}
}

// rss returns the process's current and peak resident set size in bytes
// (VmRSS and VmHWM of /proc/<pid>/status).
func rss(pid int) (cur, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	field := func(name string) int64 {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	return field("VmRSS"), field("VmHWM"), nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a process's output.
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

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// waitFor polls cond every 20ms until it is true or limit passes; it returns
// whether cond became true.
func waitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isRefused reports whether err is a refused connection: the request never
// reached a server, so it certainly did nothing.
func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
