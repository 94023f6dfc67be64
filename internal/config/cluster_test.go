package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestClusterOptions(t *testing.T) {
	tests := []struct {
		name          string
		url           string
		addrs         []string
		user, pass    string
		tls           bool
		maxRedirects  int
		dialTimeout   time.Duration
		wantTLSServer string
	}{
		{name: "one seed", url: "redis+cluster://10.0.0.1:7000", addrs: []string{"10.0.0.1:7000"}, maxRedirects: DefaultClusterMaxRedirects},
		{name: "three seeds with slash", url: "redis+cluster://a:7000,b:7001,c:7002/", addrs: []string{"a:7000", "b:7001", "c:7002"}, maxRedirects: DefaultClusterMaxRedirects},
		{name: "database zero", url: "redis+cluster://a:7000,b:7001/0", addrs: []string{"a:7000", "b:7001"}, maxRedirects: DefaultClusterMaxRedirects},
		{
			name: "credentials and options", url: "redis+cluster://app:s%40cret@a:7000,b:7001/?dial_timeout=3s&max_redirects=2",
			addrs: []string{"a:7000", "b:7001"}, user: "app", pass: "s@cret", maxRedirects: 2, dialTimeout: 3 * time.Second,
		},
		{name: "password only", url: "redis+cluster://:pw@a:7000", addrs: []string{"a:7000"}, pass: "pw", maxRedirects: DefaultClusterMaxRedirects},
		{name: "ipv6 seeds", url: "redis+cluster://[::1]:7000,[fd00::2]:7001", addrs: []string{"[::1]:7000", "[fd00::2]:7001"}, maxRedirects: DefaultClusterMaxRedirects},
		{name: "tls", url: "rediss+cluster://redis-0.internal:6380,redis-1.internal:6380", addrs: []string{"redis-0.internal:6380", "redis-1.internal:6380"}, tls: true, wantTLSServer: "redis-0.internal", maxRedirects: DefaultClusterMaxRedirects},
		{name: "scheme case", url: "REDIS+CLUSTER://a:7000", addrs: []string{"a:7000"}, maxRedirects: DefaultClusterMaxRedirects},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !IsClusterURL(tt.url) {
				t.Fatalf("IsClusterURL(%q): got false, want true", tt.url)
			}
			o, err := ClusterOptions(tt.url)
			if err != nil {
				t.Fatalf("ClusterOptions: %v", err)
			}
			if !reflect.DeepEqual(o.Addrs, tt.addrs) {
				t.Errorf("Addrs: got %v, want %v", o.Addrs, tt.addrs)
			}
			if o.Username != tt.user || o.Password != tt.pass {
				t.Errorf("credentials: got %q/%q, want %q/%q", o.Username, o.Password, tt.user, tt.pass)
			}
			if got := o.TLSConfig != nil; got != tt.tls {
				t.Errorf("TLS: got %v, want %v", got, tt.tls)
			} else if tt.tls && o.TLSConfig.ServerName != tt.wantTLSServer {
				t.Errorf("TLS ServerName: got %q, want %q", o.TLSConfig.ServerName, tt.wantTLSServer)
			}
			if o.MaxRedirects != tt.maxRedirects {
				t.Errorf("MaxRedirects: got %d, want %d", o.MaxRedirects, tt.maxRedirects)
			}
			if o.DialTimeout != tt.dialTimeout {
				t.Errorf("DialTimeout: got %s, want %s", o.DialTimeout, tt.dialTimeout)
			}
			if o.ClusterStateReloadInterval != ClusterStateReloadInterval {
				t.Errorf("ClusterStateReloadInterval: got %s, want %s", o.ClusterStateReloadInterval, ClusterStateReloadInterval)
			}
		})
	}
}

func TestClusterOptionsErrors(t *testing.T) {
	const pw = "hunter2-secret"
	tests := []struct{ name, url, want string }{
		{"other scheme", "redis://a:7000", "invalid cluster URL scheme"},
		{"no port", "redis+cluster://a", `node "a" is not host:port`},
		{"empty node", "redis+cluster://a:7000,,b:7001", `node "" is not host:port`},
		{"empty host", "redis+cluster://:7000", `node ":7000" is not host:port`},
		{"port zero", "redis+cluster://a:0", "port must be a number from 1 to 65535"},
		{"port too big", "redis+cluster://a:70000", "port must be a number from 1 to 65535"},
		{"port not a number", "redis+cluster://a:redis", "port must be a number"},
		{"other database", "redis+cluster://a:7000/3", "only database 0"},
		{"fragment", "redis+cluster://a:7000#x", "no #fragment"},
		{"unknown option", "redis+cluster://a:7000?colour=blue", "unexpected option: colour"},
		{"bad option value", "redis+cluster://a:7000?dial_timeout=soon", "dial_timeout"},
		{"addr option", "redis+cluster://a:7000?addr=b:7001", "list the nodes in the host part"},
		{"bad query", "redis+cluster://a:7000?%zz", "not name=value"},
		{"password kept out of errors", "redis+cluster://u:" + pw + "@a:7000/9", "only database 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ClusterOptions(tt.url)
			if err == nil {
				t.Fatalf("ClusterOptions(%q): got no error, want %q", tt.url, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error: got %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
}

func TestLoadClusterURL(t *testing.T) {
	const pw = "cluster-pw-1234"
	tests := []struct {
		name, url   string
		wantErr     string
		wantCluster bool
	}{
		{name: "cluster", url: "redis+cluster://:" + pw + "@a:7000,b:7001,c:7002", wantCluster: true},
		{name: "single server is not a cluster", url: "redis://a:6379/0"},
		{name: "bad cluster url", url: "redis+cluster://:" + pw + "@a:7000/2", wantErr: "REDIS_URL: not a valid Redis Cluster URL (a Redis Cluster has only database 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(envFunc(map[string]string{EnvRedisURL: tt.url, EnvJWTSecret: testSecret}, ""))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load: got %v, want an error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), pw) {
					t.Errorf("error %q contains the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.RedisURL != tt.url {
				t.Errorf("RedisURL: got %q, want %q", c.RedisURL, tt.url)
			}
			if got := c.RedisCluster(); got != tt.wantCluster {
				t.Errorf("RedisCluster(): got %v, want %v", got, tt.wantCluster)
			}
		})
	}
}

func TestRedactClusterURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis+cluster://a:7000,b:7001", "redis+cluster://a:7000,b:7001"},
		{"redis+cluster://u:pw@a:7000,b:7001/?dial_timeout=3s", "redis+cluster://u:xxxxx@a:7000,b:7001/?dial_timeout=3s"},
		{"rediss+cluster://:pw@[::1]:7000,[::1]:7001?pool_size=5", "rediss+cluster://:xxxxx@[::1]:7000,[::1]:7001?pool_size=5"},
		{"redis+cluster://user@a:7000", "redis+cluster://user@a:7000"},
		{"redis+cluster://u:p@ss@a:7000", "redis+cluster://u:xxxxx@a:7000"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := redactURL(tt.in); got != tt.want {
				t.Errorf("redactURL: got %q, want %q", got, tt.want)
			}
		})
	}
}
