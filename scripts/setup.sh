#!/usr/bin/env bash
# Creates .venv and installs Callbook into it. Sourced by serve.sh and test.sh.
# Works on a fresh Debian machine with Python 3.11 as root: it installs python3-venv if needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${1:-}

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: please install these Debian packages: $*" >&2
    return 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  apt_install python3-venv python3-pip
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${EXTRAS}"
