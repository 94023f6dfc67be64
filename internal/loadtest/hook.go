package loadtest

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// RoundTrips counts what a go-redis client sends: each command sent alone
// and each pipeline is one round trip. The commands go-redis sends to set
// up a new connection (HELLO, CLIENT SETINFO) are not counted: they are not
// the work being measured and happen once per connection.
type RoundTrips struct {
	trips    atomic.Int64
	commands atomic.Int64
}

// Counts returns the round trips and commands counted so far.
func (c *RoundTrips) Counts() (trips, commands int64) {
	return c.trips.Load(), c.commands.Load()
}

// DialHook implements redis.Hook.
func (c *RoundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (c *RoundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !connSetup(cmd) {
			c.trips.Add(1)
			c.commands.Add(1)
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (c *RoundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !connSetup(cmds[0]) {
			c.trips.Add(1)
			c.commands.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

func connSetup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "auth", "select":
		return true
	}
	return false
}
