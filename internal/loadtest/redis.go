package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server process this package started.
type RedisServer struct {
	// Addr is its host:port on loopback.
	Addr string
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// RedisOptions configures StartRedis.
type RedisOptions struct {
	// Notifications turns keyspace expiry events on (notify-keyspace-events
	// Ex), as presenced wants them. Off: "".
	Notifications bool
	// MaxMemory bounds the server's memory (bytes); writes fail beyond it.
	// Default 8 GiB.
	MaxMemory int64
	// Args are more redis-server arguments, appended last (the cluster
	// scenario's --cluster-enabled and friends).
	Args []string
}

// StartRedis starts redis-server from PATH on a free loopback port with its
// own temporary directory, no persistence, and waits until it answers.
func StartRedis(ctx context.Context, o RedisOptions) (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("loadtest: redis-server not on PATH (apt-get install redis-server): %w", err)
	}
	if o.MaxMemory == 0 {
		o.MaxMemory = 8 << 30
	}
	dir, err := os.MkdirTemp("", "presence-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		if port == 6379 {
			continue // the machine's shared server; never ours
		}
		events := ""
		if o.Notifications {
			events = "Ex"
		}
		args := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
			"--notify-keyspace-events", events,
			"--maxmemory", strconv.FormatInt(o.MaxMemory, 10), "--maxmemory-policy", "noeviction",
		}
		args = append(args, o.Args...)
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("loadtest: start redis-server: %w", err)
		}
		s := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, dir: dir, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(s.done) }()
		if lastErr = s.waitReady(ctx, cmd.Process.Pid); lastErr == nil {
			return s, nil
		}
		s.kill()
	}
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("loadtest: redis-server did not start: %w", lastErr)
}

func (s *RedisServer) waitReady(ctx context.Context, pid int) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return errors.New("redis-server exited during start-up")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if conn, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond); err == nil {
			_ = conn.Close()
			info, err := c.Info(ctx, "server").Result()
			if err == nil {
				if got := infoValue(info, "process_id"); got != strconv.Itoa(pid) {
					return fmt.Errorf("another server (pid %s) answers on %s", got, s.Addr)
				}
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("no answer within 10s")
}

// URL is the server as a REDIS_URL.
func (s *RedisServer) URL() string { return "redis://" + s.Addr + "/0" }

// Stop kills the server and removes its directory.
func (s *RedisServer) Stop() {
	s.kill()
	_ = os.RemoveAll(s.dir)
}

func (s *RedisServer) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("loadtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// infoValue returns field name of an INFO reply ("" when absent).
func infoValue(info, name string) string {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), name+":"); ok {
			return v
		}
	}
	return ""
}

// CmdStat is one command's line of INFO commandstats.
type CmdStat struct {
	Calls int64
	Usec  int64
}

// Snapshot is the part of INFO the suite compares before and after a load.
type Snapshot struct {
	Commands map[string]CmdStat
	// CPU is used_cpu_user + used_cpu_sys of the server process.
	CPU time.Duration
	// UsedMemory is used_memory minus mem_clients_normal, in bytes: the
	// data and its overhead, without the clients' buffers (which grow with
	// the loader's connections, not with the data).
	UsedMemory int64
}

// TakeSnapshot reads INFO commandstats, cpu and memory.
func TakeSnapshot(ctx context.Context, rdb redis.UniversalClient) (Snapshot, error) {
	info, err := rdb.Info(ctx, "commandstats", "cpu", "memory").Result()
	if err != nil {
		return Snapshot{}, fmt.Errorf("loadtest: INFO: %w", err)
	}
	snap := Snapshot{Commands: map[string]CmdStat{}}
	sc := bufio.NewScanner(strings.NewReader(info))
	var cpu float64
	var clients int64
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "cmdstat_"); ok {
			name, fields, _ := strings.Cut(rest, ":")
			var st CmdStat
			for _, f := range strings.Split(fields, ",") {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "calls":
					st.Calls, _ = strconv.ParseInt(v, 10, 64)
				case "usec":
					st.Usec, _ = strconv.ParseInt(v, 10, 64)
				}
			}
			snap.Commands[name] = st
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "used_cpu_user", "used_cpu_sys":
			f, _ := strconv.ParseFloat(v, 64)
			cpu += f
		case "used_memory":
			snap.UsedMemory, _ = strconv.ParseInt(v, 10, 64)
		case "mem_clients_normal":
			clients, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	snap.UsedMemory -= clients
	snap.CPU = time.Duration(cpu * float64(time.Second))
	return snap, nil
}

// Delta is what happened between two snapshots.
type Delta struct {
	// Commands by name, without the INFO calls of the snapshots.
	Commands map[string]CmdStat
	Calls    int64
	Usec     int64
	CPU      time.Duration
	Memory   int64
}

// Sub returns after - before.
func (after Snapshot) Sub(before Snapshot) Delta {
	d := Delta{Commands: map[string]CmdStat{}, CPU: after.CPU - before.CPU, Memory: after.UsedMemory - before.UsedMemory}
	for name, a := range after.Commands {
		b := before.Commands[name]
		c := CmdStat{Calls: a.Calls - b.Calls, Usec: a.Usec - b.Usec}
		if name == "info" {
			continue // the snapshots themselves
		}
		if c.Calls > 0 {
			d.Commands[name] = c
			d.Calls += c.Calls
			d.Usec += c.Usec
		}
	}
	return d
}
