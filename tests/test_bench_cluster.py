"""bench/cluster.py end to end with tiny counts: its own Valkey, two real ``callbook serve`` nodes,
a load-generator process. Checks the JSON it reports and that the set-ups completed; the figures
themselves are not asserted (they belong in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
#: Paced well below every per-account and per-connection limit, so no call is refused.
COMMAND = [
    sys.executable, "-m", "bench.cluster", "--json",
    "--pairs", "2", "--callers-per-pair", "2", "--callees-per-pair", "2",
    "--no-peak", "--rate", "4", "--duration", "1.5", "--idle", "1", "--warmup", "0",
    "--wait-quiet", "0", "--no-ceiling",
]  # fmt: skip
RUN_KEYS = {
    "calls", "failed", "setups_per_s", "ring_p50_ms", "ring_p99_ms", "setups_per_node_cpu_s",
    "node_cpu_ms_per_setup", "valkey_cpu_ms_per_setup", "bots_cpu_ms_per_setup", "cpu_percent",
    "noisy", "commands_per_setup", "by_command_per_setup",
}  # fmt: skip


@pytest.fixture(scope="module")
def result() -> dict[str, object]:
    done = subprocess.run(
        COMMAND, cwd=REPO, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parsed: dict[str, object] = json.loads(done.stdout)
    return parsed


def test_every_layout_reports_its_windows(result: dict[str, object]) -> None:
    modes = result["modes"]
    assert isinstance(modes, list)
    assert [mode["mode"] for mode in modes] == ["1-node", "2-node-cross", "2-node-same"]
    assert [mode["nodes"] for mode in modes] == [1, 2, 2]
    for mode in modes:
        assert mode["idle"]["devices"] == 8  # 2 pairs of 2 callers and 2 callees
        (paced,) = mode["runs"]
        assert paced["name"] == "paced"
        assert paced.keys() >= RUN_KEYS


def test_set_ups_complete_on_both_nodes(result: dict[str, object]) -> None:
    modes = result["modes"]
    assert isinstance(modes, list)
    for mode in modes:
        (paced,) = mode["runs"]
        assert paced["failed"] == 0, paced["failure_examples"]
        assert paced["calls"] > 0
        measured = {name for name in paced["cpu_percent"] if name.startswith("bench-")}
        assert measured == ({"bench-a"} if mode["nodes"] == 1 else {"bench-a", "bench-b"})


def test_store_commands_are_counted(result: dict[str, object]) -> None:
    modes = result["modes"]
    assert isinstance(modes, list)
    cross = modes[1]["runs"][0]
    # Every message for the other node is a PUBLISH on its inbox channel.
    assert cross["by_command_per_setup"].get("publish", 0) > 0
    nodes_only = result["nodes_only"]
    assert isinstance(nodes_only, list)
    assert [idle["nodes"] for idle in nodes_only] == [1, 2]
    # Each node beats its heartbeat into the node registry.
    assert all("zadd" in idle["by_command_per_s"] for idle in nodes_only)
