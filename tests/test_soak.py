"""The soak (bench/soak.py), short: clients cycling 1:1 and group calls on two real nodes that
share one real Valkey, with two media nodes; zero errors, and every figure back where it started.

The 10-minute, 200-client run and its figures are in docs/benchmarks.md ("Soak").
"""

from __future__ import annotations

import pytest

from bench import soak

#: Percent a figure may end away from its start, by kind. With no leak, tasks, file descriptors
#: and DBSIZE come back exactly once the settle has passed (bench/soak.py, SETTLE_S): every
#: call's state in the store has expired or been deleted, every idle connection closed. The 5 %
#: the issue allows is kept for them and for RSS, which CPython's allocator does not hand back
#: at once; a leak of one task, socket or key per call (hundreds here) is far above it.
TOLERANCE = {"rss": 5.0, "tasks": 5.0, "fds": 5.0, "dbsize": 5.0}


@pytest.mark.slow
async def test_a_short_soak_has_no_errors_and_returns_to_its_start() -> None:
    args = soak.parse_args(["--clients", "24", "--duration", "30", "--pause", "0.5",
                            "--sample-every", "3"])  # fmt: skip

    report = await soak.run(args)

    assert report["errors"] == {} and report["warm_up"]["errors"] == {}, report
    assert min(report["scenarios"].get(s, 0) for s in soak.SCENARIOS) >= 10, report
    assert soak.within(report, TOLERANCE) == [], report
    # The load was real: calls were in flight at the peak.
    assert any(report["peak"][k] > report["start"][k] for k in report["start"]), report
