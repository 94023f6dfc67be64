// Package config reads presenced's configuration from the environment, once,
// into a typed Config. Load validates every variable and reports all problems
// together, each naming its variable, so that an operator fixes a broken
// deployment in one pass instead of one restart per mistake. Secret values
// (the JWT secret, the admin password, a password inside REDIS_URL) never
// appear in error messages or in the Config's log form.
//
// Variables (defaults in brackets):
//
//	PRESENCE_ADDR                 HTTP listen address [:8080]
//	REDIS_URL                     redis://, rediss:// or unix:// URL, or redis+cluster://host1:port1,host2:port2
//	                              (rediss+cluster:// for TLS) for a Redis Cluster; unset runs an embedded Redis
//	PRESENCE_EMBEDDED_REDIS_ADDR  where the embedded Redis listens [127.0.0.1:6380]
//	PRESENCE_JWT_SECRET(_FILE)    HS256 key, >= 32 bytes; required with REDIS_URL
//	PRESENCE_TTL                  session presence TTL [120s]
//	PRESENCE_SWEEP_INTERVAL       backup expiry sweep period [1s]
//	PRESENCE_AWAY_AFTER           no activity for this long makes a connected user away; 0 disables [5m]
//	PRESENCE_ACCESS_TOKEN_TTL     access token lifetime [15m]
//	PRESENCE_REFRESH_TOKEN_TTL    refresh token (and session) lifetime [168h]
//	PRESENCE_KEY_PREFIX           prefix of every Redis key [presence:]
//	PRESENCE_REGISTRATION         approval | open | closed [approval]
//	PRESENCE_ADMIN_USERNAME       first admin, created at start-up if absent
//	PRESENCE_ADMIN_PASSWORD(_FILE) its password (8-128 characters)
//	PRESENCE_CORS_ORIGINS         comma-separated allowed origins, or * [none]
//	PRESENCE_SHARDS               hash-tag shards of the hot indexes; on a cluster, masters x 4 or more [1]
//	PRESENCE_EVENTS_MAXLEN        approximate cap of the transitions stream [100000]
//	PRESENCE_BCRYPT_COST          bcrypt cost of new password hashes [10]
//	PRESENCE_REQUEST_TIMEOUT      deadline for the Redis work of one request [5s]
//	PRESENCE_SHUTDOWN_TIMEOUT     grace period for in-flight requests at shutdown [15s]
//	LOG_LEVEL                     debug | info | warn | error [info]
//	LOG_FORMAT                    text | json [text]
//	PRESENCE_SERVICE_KEYS         name:sha256hex,... credentials of services that may batch heartbeats [none]
//	PRESENCE_SSE_PING_INTERVAL    comment heartbeat (and session re-check) interval of the event stream [15s]
//	PRESENCE_SSE_MAX_STREAMS      concurrent event streams per instance [1000]
//
// An empty variable counts as unset. Values other than secrets are trimmed of
// surrounding white space.
package config
