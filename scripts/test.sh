#!/usr/bin/env bash
# Installs everything the tests need, then runs the quality gates and the whole suite.
# Extra arguments go to pytest (e.g. -m "not slow" -x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh "[test]"
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/python -m pytest "$@"
