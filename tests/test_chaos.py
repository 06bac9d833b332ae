"""Chaos (bench/chaos.py), short: under the soak's load, ``kill -9`` a signaling node, a media
node and the store in turn; every witness is told within its documented bound
(docs/scaling.md, "Chaos: what a client is told, and when"), nothing the server acknowledged is
lost, and the load runs again once each killed process is back.
"""

from __future__ import annotations

import pytest

from bench import chaos


@pytest.mark.slow
async def test_kills_tell_every_witness_in_time_and_lose_nothing_acknowledged() -> None:
    args = chaos.parse_args(["--clients", "12", "--witnesses", "2", "--warmup", "3"])

    report = await chaos.run(args)

    late = [b for b in chaos.verdict(report) if not b.startswith("after ")]
    assert late == [], report
    assert report["lost"] == {"accounts": 0, "contacts": 0}, report
    assert min(report["acknowledged"].values()) > 0, report
    # The load runs again after each kill. Its errors then are reported, not asserted: a few
    # calls still fail under load with or without a kill (docs/benchmarks.md, "Chaos").
    for kill in ("signaling", "media", "store"):
        assert report["scenarios_when_clean"][kill] > 0, report
