"""Report timing: does filing a report take longer when the handle names someone hidden or
blocking than when it names nobody? (issue 12, finding 5: it did, by ~0.2 ms.)

It starts a fresh embedded Valkey (unix socket, temporary directory), signs up the reporter, a
hidden account (``discoverable: nobody``) and one that blocks the reporter, and then times
``directory.reports.file`` — all of ``POST /v1/reports``'s store work; the HTTP layer around it
does not look at the target — for the three targets, interleaved in a random order each round.
It prints, per target, the median and the 90th percentile, the median's difference from the
unknown handle's, and the probability that a report naming the target is slower than one naming
nobody (Mann-Whitney's common-language effect size: 0.5 means indistinguishable).

Run from the repository root::

    .venv/bin/python -m bench.reports                 # table
    .venv/bin/python -m bench.reports --json          # one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from directory import accounts, contacts, reports
from directory.storage.connection import connect
from directory.storage.embedded import EmbeddedValkey
from directory.store import DirectoryConfig, Store
from signaling.sdk.client import new_device_key

TARGETS = ("nobody_here", "hidden", "blocker")


def slower_probability(sample: list[float], reference: list[float]) -> float:
    """P(a draw from ``sample`` exceeds one from ``reference``), ties counting half."""
    ordered = sorted(reference)
    wins = 0.0
    for value in sample:
        below = bisect.bisect_left(ordered, value)
        wins += below + (bisect.bisect_right(ordered, value) - below) / 2
    return wins / (len(sample) * len(ordered))


async def measure(url: str, trials: int, warmup: int) -> dict[str, list[float]]:
    config = DirectoryConfig(report_burst=10**9, report_refill_per_s=10.0**6)
    store = Store(connect(url, cluster=False), config)
    reporter = (await accounts.signup(store, "reporter", None, "p", new_device_key()[1])).account
    hidden = (await accounts.signup(store, "hidden", None, "p", new_device_key()[1])).account
    await accounts.update(store, hidden.id, discoverable="nobody")
    blocker = (await accounts.signup(store, "blocker", None, "p", new_device_key()[1])).account
    await contacts.block(store, blocker.id, "reporter")
    times: dict[str, list[float]] = {target: [] for target in TARGETS}
    order = list(TARGETS)
    for round_number in range(warmup + trials):
        random.shuffle(order)
        for target in order:
            started = time.perf_counter_ns()
            await reports.file(store, reporter.id, target, "harassment", "Calls at night.", None)
            if round_number >= warmup:
                times[target].append((time.perf_counter_ns() - started) / 1e6)
    await store.redis.aclose()
    return times


def summary(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    reference = times[TARGETS[0]]
    base = statistics.median(reference)
    result = {}
    for target, sample in times.items():
        median = statistics.median(sample)
        result[target] = {
            "median_ms": round(median, 4),
            "p90_ms": round(statistics.quantiles(sample, n=10)[-1], 4),
            "delta_median_ms": round(median - base, 4),
            "p_slower_than_unknown": round(slower_probability(sample, reference), 3),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3000, help="reports per target")
    parser.add_argument("--warmup", type=int, default=200, help="rounds not counted")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cb-bench-") as data_dir:
        valkey = EmbeddedValkey(Path(data_dir))
        try:
            url = valkey.start()
            result = summary(asyncio.run(measure(url, args.trials, args.warmup)))
        finally:
            valkey.stop()
    if args.json:
        print(json.dumps({"trials": args.trials, "targets": result}))
        return
    print(f"{'target':<14}{'median ms':>11}{'p90 ms':>9}{'Δ median':>10}{'P(slower)':>11}")
    for target, row in result.items():
        print(
            f"{target:<14}{row['median_ms']:>11.4f}{row['p90_ms']:>9.4f}"
            f"{row['delta_median_ms']:>+10.4f}{row['p_slower_than_unknown']:>11.3f}"
        )


if __name__ == "__main__":
    main()
