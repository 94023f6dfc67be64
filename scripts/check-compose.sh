#!/usr/bin/env bash
# Checks docker-compose.yml without a Docker engine: the default services and
# the "cluster" profile (3+3 Redis Cluster nodes, the init job, two presenced
# replicas, nginx) must parse and resolve. Uses docker-compose (Debian's
# 1.29, which scripts/test-deps.sh installs) or `docker compose` (v2),
# whichever is there; neither needs a running engine for `config`.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v docker-compose >/dev/null 2>&1; then
	compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
else
	echo "check-compose: neither docker-compose nor docker compose is installed (scripts/test-deps.sh installs docker-compose)" >&2
	exit 1
fi
echo "check-compose: $("${compose[@]}" version 2>/dev/null | head -1)"

# The file insists on a JWT secret; any value does for parsing.
export PRESENCE_JWT_SECRET=check-compose-placeholder-secret-0123456789

"${compose[@]}" -f docker-compose.yml config -q
"${compose[@]}" -f docker-compose.yml --profile cluster config -q

want="redis presenced redis-node-1 redis-node-2 redis-node-3 redis-node-4 redis-node-5 redis-node-6 redis-cluster-init presenced-1 presenced-2 lb"
got=$("${compose[@]}" -f docker-compose.yml --profile cluster config --services | sort | tr '\n' ' ')
for s in $want; do
	case " $got " in
	*" $s "*) ;;
	*)
		echo "check-compose: service $s missing from the cluster profile (have: $got)" >&2
		exit 1
		;;
	esac
done
resolved=$("${compose[@]}" -f docker-compose.yml --profile cluster config)
grep -q 'REDIS_URL: redis+cluster://redis-node-1:6379,redis-node-2:6379,redis-node-3:6379' <<<"$resolved" || {
	echo "check-compose: the cluster presenced replicas do not use the redis+cluster:// REDIS_URL" >&2
	exit 1
}
echo "check-compose: docker-compose.yml ok (with the cluster profile: $got)"
