"""Dial to first decoded frame, per kind of network, in the network lab (tests/netlab.py).

For each kind it builds a fresh lab, runs ``callbook serve`` (and coturn where needed) in a
public host, and places ``--calls`` calls one after the other, each between two new people in
the device hosts, with the SDK's softphones (aiortc, audio only). Each call's time runs from the
caller's invite ("dial") to the first audio frame decoded on each side; the callee answers at
once, so ringing is not a person's reaction time. The caller hangs up once both sides decode.

Kinds:

- ``lan``: both devices behind one home router (host candidates, no NAT between them);
- ``cone``: each behind its own cone NAT, the server's built-in STUN (srflx, peer to peer);
- ``symmetric-turn``: one behind a symmetric NAT, coturn relays (strangers: relay-only).

Needs root (network namespaces, iptables). Run from the repository root::

    sudo .venv/bin/python -m bench.netlab --calls 10        # table;  --json for JSON lines

Every address is in 198.18.0.0/15, inside namespaces it deletes at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.netlab import Host, Lab, lab_reason
from tests.netlab_calls import (
    Deployment,
    Person,
    befriend,
    signed_up,
    start_server,
    until,
)

KINDS = ("lan", "cone", "symmetric-turn")


def _lan(lab: Lab, inet: Host) -> tuple[Host, Host]:
    router = lab.host("home-nat", router=True)
    wan = lab.link(inet, router)
    router.nat(wan.down, "cone")
    a, b = lab.host("a"), lab.host("b")
    lab.link(router, a, private=True)
    lab.link(router, b, private=True)
    return a, b


async def _network(lab: Lab, kind: str, tmp: Path) -> tuple[Deployment, Host, Host]:
    inet = lab.internet()
    public = lab.host("server")
    lab.link(inet, public)
    if kind == "lan":
        a, b = _lan(lab, inet)
    else:
        a, _ = lab.behind_nat(inet, "a", "symmetric" if kind == "symmetric-turn" else "cone")
        b, _ = lab.behind_nat(inet, "b", "cone")
    deployment = await start_server(public, tmp, turn="udp" if kind == "symmetric-turn" else None)
    return deployment, a, b


async def _one_call(caller: Person, callee: Person) -> tuple[float, float]:
    """Seconds from dial to the first decoded frame (caller's, callee's)."""
    await callee.host.run(callee.phone.line.open())  # online before the invite rings it
    answering = asyncio.ensure_future(callee.host.run(callee.phone.answer(duration_s=None)))
    dialled = time.monotonic()
    calling = asyncio.ensure_future(caller.host.run(caller.phone.call(callee.handle, None)))

    def first(person: Person) -> float | None:
        received = person.phone.received
        return received.first_frame_at if received is not None else None

    firsts: dict[str, float] = {}

    def both() -> bool:
        for name, person in (("caller", caller), ("callee", callee)):
            at = first(person)
            if at is not None:
                firsts.setdefault(name, at)
        return len(firsts) == 2

    await until(both, "media both ways", 60)
    await caller.host.run(caller.phone.hang_up())
    await calling
    await answering
    return firsts["caller"] - dialled, firsts["callee"] - dialled


async def _kind(kind: str, calls: int) -> list[tuple[float, float]]:
    lab = Lab()
    try:
        with tempfile.TemporaryDirectory(prefix="callbook-netlab-") as tmp:
            deployment, a, b = await _network(lab, kind, Path(tmp))
            samples = []
            for i in range(calls):
                # Two new people per call: a device may only sign in so often (11.1).
                people = ((a, f"alice{i}"), (b, f"bob{i}"))
                async with signed_up(deployment, *people) as (alice, bob):
                    if kind != "symmetric-turn":
                        await befriend(alice, bob)  # peer to peer; strangers are relayed
                    samples.append(await _one_call(alice, bob))
            return samples
    finally:
        await lab.close()


def _summary(kind: str, samples: list[tuple[float, float]]) -> dict[str, Any]:
    worst = sorted(max(pair) for pair in samples)
    return {
        "kind": kind,
        "calls": len(samples),
        "caller_median_ms": round(statistics.median(s[0] for s in samples) * 1000),
        "callee_median_ms": round(statistics.median(s[1] for s in samples) * 1000),
        "both_median_ms": round(statistics.median(worst) * 1000),
        "both_max_ms": round(worst[-1] * 1000),
    }


async def main(kinds: list[str], calls: int, emit: Callable[[dict[str, Any]], None]) -> None:
    for kind in kinds:
        emit(_summary(kind, await _kind(kind, calls)))


def _table(row: dict[str, Any]) -> None:
    print(
        f"{row['kind']:<15} {row['calls']:>3} calls  caller {row['caller_median_ms']:>5} ms  "
        f"callee {row['callee_median_ms']:>5} ms  both {row['both_median_ms']:>5} ms "
        f"(max {row['both_max_ms']} ms)",
        flush=True,
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--calls", type=int, default=10, help="calls per kind (10)")
    parser.add_argument("--kind", action="append", choices=KINDS, help="repeatable; default all")
    parser.add_argument("--json", action="store_true", help="one JSON line per kind")
    args = parser.parse_args()
    reason = lab_reason()
    if reason is not None:
        sys.exit(reason)
    emit: Callable[[dict[str, Any]], None] = (
        (lambda row: print(json.dumps(row), flush=True)) if args.json else _table
    )
    run: Awaitable[None] = main(args.kind or list(KINDS), args.calls, emit)
    asyncio.run(run)


if __name__ == "__main__":
    cli()
