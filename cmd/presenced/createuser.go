package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/internal/auth"
	"github.com/presenced/presenced/internal/config"
	"github.com/presenced/presenced/internal/presence"
	"github.com/presenced/presenced/internal/redisstore"
)

// createUser is `presenced createuser`: it writes a user straight into Redis
// with the same store code the server uses. The password comes from a file or
// stdin, never from the command line (where ps and shell history would show it).
func createUser(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("createuser", flag.ContinueOnError)
	fs.SetOutput(stderr)
	username := fs.String("username", "", "username (3-150 letters, digits and @.+-_)")
	email := fs.String("email", "", "email address (optional)")
	role := fs.String("role", string(presence.RoleAdmin), "admin, moderator or user")
	passwordFile := fs.String("password-file", "", "file holding the password (default: read one line from stdin)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := presence.ValidateUsername(*username); err != nil {
		return err
	}
	if err := presence.ValidateEmail(*email); err != nil {
		return err
	}
	if !presence.Role(*role).Valid() {
		return fmt.Errorf("-role %q: must be admin, moderator or user", *role)
	}
	password, err := readPassword(*passwordFile, stdin)
	if err != nil {
		return err
	}
	if err := presence.ValidatePassword(password); err != nil {
		return err
	}

	// createuser signs no tokens, so it does not need the JWT secret the
	// server requires with a real Redis.
	env := func(k string) string {
		if k == config.EnvJWTSecret && getenv(config.EnvJWTSecret) == "" && getenv(config.EnvJWTSecretFile) == "" {
			return strings.Repeat("x", config.MinSecretLen)
		}
		return getenv(k)
	}
	cfg, err := config.Load(env)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	var rdb redis.UniversalClient
	if cfg.Embedded() {
		// The embedded Redis lives inside a running `presenced` (make run).
		rdb = redis.NewClient(&redis.Options{Addr: cfg.EmbeddedRedisAddr})
		fmt.Fprintf(stderr, "REDIS_URL is unset: writing to the embedded Redis of a running presenced at %s\n", cfg.EmbeddedRedisAddr)
	} else if rdb, err = newRedisClient(cfg); err != nil {
		return err
	}
	defer rdb.Close()
	store, err := redisstore.New(rdb, redisstore.Config{Prefix: cfg.KeyPrefix, Shards: cfg.Shards, TTL: cfg.TTL, EventsMaxLen: cfg.EventsMaxLen})
	if err != nil {
		return err
	}
	if err := store.Prepare(ctx); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	hash, err := auth.NewHasher(cfg.BcryptCost).Hash(password)
	if err != nil {
		return err
	}
	u, err := store.CreateUser(ctx, presence.NewUser{
		Username: *username, Email: *email, Role: presence.Role(*role), Status: presence.StatusActive, PasswordHash: hash,
	})
	if errors.Is(err, presence.ErrUsernameTaken) {
		return fmt.Errorf("user %q already exists (createuser never overwrites)", *username)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s %q with id %d\n", u.Role, u.Username, u.ID)
	return nil
}

func readPassword(file string, stdin io.Reader) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("-password-file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
