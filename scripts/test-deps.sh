#!/usr/bin/env bash
# Makes sure the tools the test suite needs are installed: today only
# redis-server, which the integration tests start themselves on free ports.
# Idempotent: does nothing when everything is there. Installs with apt-get
# when run as root on Debian/Ubuntu; otherwise says what to install and fails.
# It never starts the distribution's Redis service: tests run their own.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
	echo "test-deps: redis-server found: $(redis-server --version)"
	exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
	echo "test-deps: redis-server is not on PATH and cannot be installed automatically" >&2
	echo "test-deps: (needs root and apt-get); install Redis 7 yourself, e.g. apt-get install redis-server or brew install redis" >&2
	exit 1
fi

echo "test-deps: redis-server is missing; installing it with apt-get"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d refuses service starts for the duration of the install, so the
# package's post-install script does not start a system Redis on port 6379.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod +x "$policy"
	created_policy=1
fi
cleanup() { if [[ $created_policy -eq 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -q
apt-get install -y -q --no-install-recommends redis-server

if ! command -v redis-server >/dev/null 2>&1; then
	echo "test-deps: apt-get finished but redis-server is still not on PATH" >&2
	exit 1
fi
echo "test-deps: installed $(redis-server --version)"
