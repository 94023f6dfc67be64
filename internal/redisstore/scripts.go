package redisstore

import (
	"embed"
	"fmt"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// scripts holds every Lua script, each with lua/lib.lua prepended, and on a
// Redis Cluster lua/cluster_guard.lua after it (a script refuses to start
// while its slot is being migrated). They run with EVALSHA (go-redis falls
// back to EVAL once after a SCRIPT FLUSH or on a fresh server, which also
// loads them).
type scripts struct {
	createUser, login, revive, activate, logout, rotate, account, expire, idle, loginLimit *redis.Script
}

func loadScripts(cluster bool) (*scripts, error) {
	lib, err := luaFiles.ReadFile("lua/lib.lua")
	if err != nil {
		return nil, fmt.Errorf("redisstore: read lib.lua: %w", err)
	}
	if cluster {
		guard, err := luaFiles.ReadFile("lua/cluster_guard.lua")
		if err != nil {
			return nil, fmt.Errorf("redisstore: read cluster_guard.lua: %w", err)
		}
		lib = append(append(lib, '\n'), guard...)
	}
	load := func(name string) (*redis.Script, error) {
		body, err := luaFiles.ReadFile("lua/" + name + ".lua")
		if err != nil {
			return nil, fmt.Errorf("redisstore: read %s.lua: %w", name, err)
		}
		return redis.NewScript(string(lib) + "\n" + string(body)), nil
	}
	s := &scripts{}
	for name, dst := range map[string]**redis.Script{
		"create_user": &s.createUser, "login": &s.login, "revive": &s.revive,
		"logout": &s.logout, "rotate": &s.rotate, "account": &s.account,
		"expire": &s.expire, "activate": &s.activate, "idle": &s.idle,
		"login_limit": &s.loginLimit,
	} {
		sc, err := load(name)
		if err != nil {
			return nil, err
		}
		*dst = sc
	}
	return s, nil
}
