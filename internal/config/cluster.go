package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Schemes of a REDIS_URL that names a Redis Cluster.
const (
	// ClusterScheme is a Redis Cluster over plain TCP.
	ClusterScheme = "redis+cluster"
	// ClusterTLSScheme is a Redis Cluster over TLS.
	ClusterTLSScheme = "rediss+cluster"
)

// Cluster client settings presenced uses unless the URL says otherwise.
const (
	// DefaultClusterMaxRedirects is how many times one command follows a
	// MOVED/ASK redirection or retries a TRYAGAIN before it fails (the
	// request then gets 503 with Retry-After). With go-redis's backoff, 8
	// attempts span about 2 s, enough to ride out a slot migration of a
	// busy shard; go-redis's own default is 3 (about 0.1 s).
	DefaultClusterMaxRedirects = 8
	// ClusterStateReloadInterval is how often the client refreshes its
	// map of which master serves which slot. go-redis refreshes on MOVED
	// but not when a master dies: with its default of 60 s, the slots of a
	// master whose replica took over would stay unreachable for up to a
	// minute.
	ClusterStateReloadInterval = 2 * time.Second
)

// IsClusterURL reports whether raw names a Redis Cluster (scheme
// redis+cluster or rediss+cluster) rather than a single Redis server.
func IsClusterURL(raw string) bool {
	scheme, _, ok := strings.Cut(raw, "://")
	return ok && (strings.EqualFold(scheme, ClusterScheme) || strings.EqualFold(scheme, ClusterTLSScheme))
}

// ClusterOptions turns a cluster REDIS_URL into go-redis cluster options:
//
//	redis+cluster://[user:password@]host1:port1[,host2:port2,...][/][?option=value&...]
//	rediss+cluster://...   (TLS)
//
// The hosts are seed nodes: any of the cluster's nodes will do, the client
// discovers the others (list several, so that start-up does not depend on
// one node). There is no database number (a Redis Cluster has only database
// 0; "/0" is accepted). The options are go-redis's cluster URL options
// (dial_timeout, read_timeout, pool_size, max_redirects, ...). presenced
// sets MaxRedirects to DefaultClusterMaxRedirects unless max_redirects is
// given, and ClusterStateReloadInterval. With TLS every node must present a
// certificate valid for the first host's name (go-redis checks every node
// against that one name).
//
// Errors never contain the URL, which may hold a password.
func ClusterOptions(raw string) (*redis.ClusterOptions, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, errors.New("missing scheme")
	}
	var goScheme string
	switch strings.ToLower(scheme) {
	case ClusterScheme:
		goScheme = "redis"
	case ClusterTLSScheme:
		goScheme = "rediss"
	default:
		return nil, fmt.Errorf("invalid cluster URL scheme %s; want %s or %s", printable(scheme), ClusterScheme, ClusterTLSScheme)
	}
	if strings.Contains(rest, "#") {
		return nil, errors.New("a cluster URL has no #fragment")
	}
	rest, query, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")
	if path != "" && path != "0" {
		return nil, errors.New("a Redis Cluster has only database 0: end the URL with the last host, / or /0")
	}
	userinfo := ""
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, authority = authority[:i+1], authority[i+1:]
	}
	var hosts []string
	for _, h := range strings.Split(authority, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return nil, fmt.Errorf("node %q is not host:port", printable(h))
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return nil, fmt.Errorf("node %q: the port must be a number from 1 to 65535", printable(h))
		}
		hosts = append(hosts, h)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, errors.New("the query is not name=value&...")
	}
	if _, ok := q["addr"]; ok {
		return nil, errors.New("list the nodes in the host part (host1:port1,host2:port2), not as addr options")
	}
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	opts, err := redis.ParseClusterURL(goScheme + "://" + userinfo + hosts[0] + "?" + q.Encode())
	if err != nil {
		// url.Parse errors repeat the whole URL; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, errors.New(printable(strings.TrimPrefix(err.Error(), "redis: ")))
	}
	if !q.Has("max_redirects") {
		opts.MaxRedirects = DefaultClusterMaxRedirects
	}
	opts.ClusterStateReloadInterval = ClusterStateReloadInterval
	return opts, nil
}

// redactClusterURL masks the password of a cluster URL (which url.Parse may
// refuse: several hosts, IPv6 literals).
func redactClusterURL(raw string) string {
	scheme, rest, _ := strings.Cut(raw, "://")
	rest, query, hasQuery := strings.Cut(rest, "?")
	authority, path, hasPath := strings.Cut(rest, "/")
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		user, _, hasPassword := strings.Cut(authority[:i], ":")
		if hasPassword {
			user += ":xxxxx"
		}
		authority = user + authority[i:]
	}
	out := scheme + "://" + authority
	if hasPath {
		out += "/" + path
	}
	if hasQuery {
		out += "?" + query
	}
	return out
}
