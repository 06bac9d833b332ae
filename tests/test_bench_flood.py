"""bench/flood.py end to end with tiny durations: a real ``callbook serve``, a flood process from
127.0.0.1, people signing up from other loopback addresses. Checks the JSON it reports and the
outcomes the design promises for one client's flood (legitimate sign-ups all succeed, the flood
gets no more than its source's budget); latency figures belong in docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
COMMAND = [
    sys.executable, "-m", "bench.flood", "--json", "--floods", "signup,lookup",
    "--duration", "2", "--quiet", "1", "--concurrency", "8", "--signup-window", "2",
]  # fmt: skip


def test_one_clients_flood_leaves_every_legitimate_sign_up_through() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        COMMAND, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    signup, lookup = json.loads(done.stdout)
    for outcome in (signup, lookup):
        assert outcome["legit_total"] > 0
        assert outcome["legit_ok"] == outcome["legit_total"], outcome["legit_failures"]
        assert outcome["me_quiet_p95_ms"] > 0 and outcome["latency_ratio"] > 0
    # One source gets its own budget of sign-ups (10 by default), not the node's.
    assert signup["flood_statuses"].get("201", 0) <= 10
    assert "429" in signup["flood_statuses"]
    assert 0 < lookup["sybil_accounts"] <= 10
