// Command presence-bench runs presenced's benchmark suite (internal/loadtest):
// it starts its own redis-server and presenced, loads data, runs the
// scenarios, prints a table per scenario and writes JSON.
//
//	presence-bench -preset short            # make bench: small sizes, about two minutes
//	presence-bench -preset full             # make bench-full: 10k users, 1M-user dataset, < 15 minutes
//	presence-bench -scenarios heartbeat,redis-cost -profile
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/presenced/presenced/internal/loadtest"
)

func main() {
	if loadtest.ChildRequested() {
		// Re-executed by the suite as one of its servers.
		os.Exit(loadtest.ChildMain())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "presence-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("presence-bench", flag.ContinueOnError)
	preset := fs.String("preset", "full", "sizes: full, short or tiny")
	out := fs.String("out", "", "directory for the JSON reports (default artifacts/bench-<preset>)")
	scenarios := fs.String("scenarios", "", "comma-separated scenarios (default all): "+strings.Join(loadtest.AllScenarios, ","))
	users := fs.Int("users", 0, "users of the HTTP scenarios (default from the preset)")
	conns := fs.Int("conns", 0, "keep-alive connections of the load (default from the preset)")
	runs := fs.Int("runs", 0, "repetitions of each measurement (default from the preset)")
	duration := fs.Duration("duration", 0, "length of each load run (default from the preset)")
	profile := fs.Bool("profile", false, "take a CPU profile of presenced under the heartbeat load (OUT/heartbeat.cpu.pprof)")
	timeout := fs.Duration("timeout", 30*time.Minute, "abort the whole run after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cfg loadtest.Config
	switch *preset {
	case "full":
		cfg = loadtest.Full()
	case "short":
		cfg = loadtest.Short()
	case "tiny":
		cfg = loadtest.Tiny()
	default:
		return fmt.Errorf("-preset %q: want full, short or tiny", *preset)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Self = self
	cfg.Out = *out
	if cfg.Out == "" {
		cfg.Out = "artifacts/bench-" + *preset
	}
	cfg.Command = "presence-bench " + strings.Join(args, " ")
	if *scenarios != "" {
		cfg.Scenarios = strings.Split(*scenarios, ",")
	}
	if *users > 0 {
		cfg.Users = *users
	}
	if *conns > 0 {
		cfg.Conns = *conns
	}
	if *runs > 0 {
		cfg.Runs = *runs
	}
	if *duration > 0 {
		cfg.Duration = *duration
	}
	cfg.Profile = *profile
	cfg.Log = stdout
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	_, err = loadtest.Run(ctx, cfg)
	return err
}
