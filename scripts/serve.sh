#!/usr/bin/env bash
# Quick start: install Callbook and run the whole system on an embedded store.
# Extra arguments go to `callbook serve` (e.g. --port 9000 --data-dir /var/lib/callbook).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/callbook serve "$@"
