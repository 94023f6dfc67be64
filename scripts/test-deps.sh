#!/usr/bin/env bash
# Makes sure the tools the test suite needs are installed:
#   - redis-server (with redis-cli), which the integration tests start
#     themselves on free ports, as single servers and as Redis Clusters;
#   - chromium, which the dashboard's browser test drives headless;
#   - docker-compose (Debian's 1.29), with which CI checks docker-compose.yml
#     without a Docker engine (scripts/check-compose.sh); skipped when
#     `docker compose` (v2) is there.
# Idempotent: does nothing when everything is there. Installs what is missing
# with apt-get when run as root on Debian/Ubuntu; otherwise says what to
# install and fails. It never starts the distribution's Redis service: tests
# run their own.
set -euo pipefail

have_chromium() {
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
		command -v google-chrome >/dev/null 2>&1 || command -v google-chrome-stable >/dev/null 2>&1
}

missing=()
if command -v redis-server >/dev/null 2>&1; then
	echo "test-deps: redis-server found: $(redis-server --version)"
else
	missing+=(redis-server)
fi
if have_chromium; then
	echo "test-deps: chromium found"
else
	missing+=(chromium)
fi
if command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1; then
	echo "test-deps: docker compose found"
else
	missing+=(docker-compose)
fi
if [[ ${#missing[@]} -eq 0 ]]; then
	exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
	echo "test-deps: missing ${missing[*]}, which cannot be installed automatically (needs root and apt-get)" >&2
	echo "test-deps: install them yourself, e.g. apt-get install redis-server chromium, or brew install redis chromium" >&2
	exit 1
fi

echo "test-deps: ${missing[*]} missing; installing with apt-get"
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
apt-get install -y -q --no-install-recommends "${missing[@]}"

if ! command -v redis-server >/dev/null 2>&1; then
	echo "test-deps: apt-get finished but redis-server is still not on PATH" >&2
	exit 1
fi
if ! have_chromium; then
	echo "test-deps: apt-get finished but chromium is still not on PATH" >&2
	exit 1
fi
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
	echo "test-deps: apt-get finished but docker-compose is still not on PATH" >&2
	exit 1
fi
echo "test-deps: installed ${missing[*]}; $(redis-server --version)"
