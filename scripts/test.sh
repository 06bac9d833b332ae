#!/usr/bin/env bash
# Installs everything the tests need, then runs the quality gates and the whole suite.
# Extra arguments go to pytest (e.g. -m "not slow" -x); CALLBOOK_TEST_WORKERS=0 runs it in one
# process, as before pytest-xdist.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh "[test]"
# Debian packages the tests drive: Redis 7 (the fast tests run on it as well as on the embedded
# Valkey), Chromium for the browser tests, coturn for TURN, iptables for the network lab's NATs
# and firewalls (tests/netlab.py).
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
command -v turnserver >/dev/null || missing+=(coturn)
command -v iptables >/dev/null || missing+=(iptables)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
# Workers (pytest-xdist): tests that must not run side by side share a group (tests/parallel.py).
# Two, one per core of the machine CI runs on: a third made liveness-bound tests flaky under a CPU hog.
workers=${CALLBOOK_TEST_WORKERS:-2}
parallel=(-n "$workers" --dist loadgroup)
echo "== pytest on Redis $(redis-server --version | grep -o 'v=[0-9.]*') (the fast tests that touch the store)"
CALLBOOK_TEST_STORE_BINARY=$(command -v redis-server) \
  .venv/bin/python -m pytest -q "${parallel[@]}" -m "store and not slow" "$@"
echo "== pytest on the embedded Valkey (the whole suite)"
# Every test's time, for finding what holds the run up: test-artifacts/junit.xml.
exec .venv/bin/python -m pytest "${parallel[@]}" --durations=15 --junitxml=test-artifacts/junit.xml "$@"
