"""When the keeper of the embedded store starts it again, and when it gives up (pure policy; the
processes: tests/test_embedded_restart.py)."""

from __future__ import annotations

import pytest

from signaling.store_keeper import RestartPolicy

DELAYS = (0.0, 0.5, 1.0)


@pytest.mark.parametrize(
    ("events", "delays"),
    [
        # A death, then starts that fail: each pause longer, then none (give up).
        ([("died", 10.0), "next", "next", "next", "next"], [0.0, 0.5, 1.0, None]),
        # A start that works, and the store dies again soon: the count goes on.
        ([("died", 10.0), "next", ("started", 11.0), ("died", 12.0), "next"], [0.0, 0.5]),
        # It ran long enough before dying: its earlier failures are forgotten.
        ([("died", 10.0), "next", "next", ("started", 11.0), ("died", 80.0), "next"],
         [0.0, 0.5, 0.0]),
        # Failed starts never count as time up: no reset between them however long they take.
        ([("died", 10.0), "next", "next", "next", ("died", 500.0), "next"],
         [0.0, 0.5, 1.0, None]),
    ],
)  # fmt: skip
def test_restart_policy(events: list[str | tuple[str, float]], delays: list[float | None]) -> None:
    policy = RestartPolicy(delays=DELAYS, stable_after_s=60.0)
    policy.started(0.0)
    seen = []
    for event in events:
        if event == "next":
            seen.append(policy.next_delay())
        elif isinstance(event, tuple) and event[0] == "died":
            policy.died(event[1])
        elif isinstance(event, tuple):
            policy.started(event[1])
    assert seen == delays
