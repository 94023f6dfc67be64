package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/redistest"
)

// TestEndToEndRedisCluster runs two presenced instances against a local
// 3-master Redis Cluster named by a redis+cluster:// REDIS_URL: createuser,
// logins and heartbeats spread over both instances, bulk status, a full
// admin listing (every user exactly once), expiry, logout.
func TestEndToEndRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	env := map[string]string{
		"REDIS_URL":               c.URL(),
		"PRESENCE_SHARDS":         "16",
		"PRESENCE_JWT_SECRET":     strings.Repeat("k", 40),
		"PRESENCE_ADMIN_USERNAME": "root",
		"PRESENCE_ADMIN_PASSWORD": "rootpass1",
		// Long enough for the set-up under -race; short enough to wait for.
		"PRESENCE_TTL":            "3s",
		"PRESENCE_SWEEP_INTERVAL": "200ms",
		"PRESENCE_BCRYPT_COST":    "4",
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"createuser", "-username", "ops", "-role", "admin"}, func(k string) string { return env[k] },
		strings.NewReader("opspass123\n"), &out, &errOut); err != nil {
		t.Fatalf("createuser on the cluster: %v\n%s", err, errOut.String())
	}
	copyEnv := func() map[string]string {
		m := map[string]string{}
		for k, v := range env {
			m[k] = v
		}
		return m
	}
	a, b := startService(t, copyEnv()), startService(t, copyEnv())
	if log := a.log.String(); !strings.Contains(log, "redis cluster") || !strings.Contains(log, "masters_with_shards=3") || strings.Contains(log, "unevenly") {
		t.Errorf("start-up log does not describe the cluster (3 masters, 16 shards, no warning):\n%s", log)
	}
	admin, _ := a.login("ops", "opspass123")

	const users = 20
	var ids []int64
	tokens := map[int64]string{}
	for i := range users {
		name := fmt.Sprintf("member%02d", i)
		code, created := a.do("POST", "/api/users/admin/users/", admin, map[string]any{"username": name, "password": "memberpass1"})
		if code != 201 {
			t.Fatalf("create %s: %d %v", name, code, created)
		}
		id := int64(created["id"].(float64))
		ids = append(ids, id)
		// Log in on one instance, heartbeat on the other.
		login, hb := a, b
		if i%2 == 1 {
			login, hb = b, a
		}
		tokens[id], _ = login.login(name, "memberpass1")
		if code, body := hb.do("POST", "/api/users/heartbeat/", tokens[id], nil); code != 200 || body["online_status"] != "online" {
			t.Fatalf("heartbeat of %s: %d %v", name, code, body)
		}
	}

	code, body := b.do("POST", "/api/users/status/", tokens[ids[0]], map[string]any{"ids": append(append([]int64{}, ids...), 999999)})
	statuses, _ := body["statuses"].(map[string]any)
	if code != 200 || len(statuses) != users {
		t.Fatalf("bulk status: %d, %d statuses, want %d", code, len(statuses), users)
	}
	for _, id := range ids {
		if st, _ := statuses[fmt.Sprint(id)].(map[string]any); st["online_status"] != "online" {
			t.Errorf("bulk status of %d: %v, want online", id, st)
		}
	}

	// A full listing in pages of 7, following "next": every user once.
	seen := map[int64]int{}
	path := "/api/users/admin/users/?per_page=7"
	pages := 0
	for path != "" {
		code, page := a.do("GET", path, admin, nil)
		if code != 200 {
			t.Fatalf("listing %s: %d %v", path, code, page)
		}
		if total := int(page["count"].(float64)); total != users+2 {
			t.Fatalf("listing count %d, want %d", total, users+2)
		}
		for _, r := range page["results"].([]any) {
			seen[int64(r.(map[string]any)["id"].(float64))]++
		}
		pages++
		path = ""
		if next, ok := page["next"].(string); ok {
			path = strings.TrimPrefix(next, a.base)
		}
	}
	if len(seen) != users+2 {
		t.Errorf("listing returned %d users, want %d", len(seen), users+2)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("user %d listed %d times", id, n)
		}
	}
	t.Logf("listing: %d users in %d pages", len(seen), pages)

	// The first half stops heartbeating and goes offline; the second half
	// keeps going, through both instances.
	deadline := time.Now().Add(10 * time.Second)
	for {
		for i, id := range ids[users/2:] {
			inst := []*service{a, b}[i%2]
			if code, _ := inst.do("POST", "/api/users/heartbeat/", tokens[id], nil); code != 200 {
				t.Fatalf("heartbeat of %d: %d", id, code)
			}
		}
		_, body := a.do("POST", "/api/users/status/", admin, map[string]any{"ids": ids})
		offline := 0
		for i, id := range ids {
			st := body["statuses"].(map[string]any)[fmt.Sprint(id)].(map[string]any)
			if st["online_status"] == "offline" {
				if i >= users/2 {
					t.Fatalf("user %d went offline while heartbeating", id)
				}
				offline++
			}
		}
		if offline == users/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d idle users offline after 10s", offline, users/2)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Logout on one instance revokes the token on the other.
	last := ids[users-1]
	if code, _ := a.do("POST", "/api/users/logout/", tokens[last], nil); code != 200 {
		t.Fatalf("logout: %d", code)
	}
	if code, _ := b.do("POST", "/api/users/heartbeat/", tokens[last], nil); code != 401 {
		t.Fatalf("heartbeat after logout on the other instance: %d, want 401", code)
	}
	for _, s := range []*service{a, b} {
		if code, _ := s.do("GET", "/readyz", "", nil); code != 200 {
			t.Fatalf("readyz: %d", code)
		}
		if err := s.stop(); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	}
	if !strings.Contains(a.log.String(), "keyspace notifications enabled") {
		t.Errorf("log does not report keyspace notifications:\n%s", a.log.String())
	}

	// Too few shards for the cluster: said at start-up.
	few := copyEnv()
	few["PRESENCE_KEY_PREFIX"], few["PRESENCE_SHARDS"] = "few:", "2"
	if log := startService(t, few).log.String(); !strings.Contains(log, "PRESENCE_SHARDS spreads the presence load unevenly") {
		t.Errorf("2 shards on 3 masters: no warning in the log:\n%s", log)
	}
}
