"""A caller cannot tell by timing a callee who may not be called from one who is offline
(protocol.md 11.8; issue 12, "timing tells blocked from offline").

Many invites to two callees, interleaved: bob, who lets anyone call him and is offline, and
carol, who blocks every caller. Each invite is cancelled as soon as it rings. Measured through
real WebSockets: the time from ``invite`` to ``ringing``, and from ``hangup`` to ``ended``. The
two samples must not differ (``bench.rank_test.compare``: the rank test sure of it *and* a
shift above a tenth of the median), on one node with thousands of idle devices connected (the
online check used to walk every connected device, for callable callees only) and on two nodes
(the invite used to await a store write first, for callable callees only).

The idle devices are registered with the node's call service directly, without a socket each:
they are load, not what is measured, and thousands of real sign-ins would take minutes.
"""

from __future__ import annotations

import random
import secrets
import time

import pytest

from bench.rank_test import Comparison, compare
from signaling.appkeys import CALLS
from signaling.calls import machine as sm
from signaling.protocol import messages as m
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.conftest import MakeServer, Server, unique

pytestmark = pytest.mark.slow

#: Invites per kind of callee; callers rotate so none exceeds its invite budget (burst 20).
TRIALS = 150
CALLERS = 16
IDLE_DEVICES = 5000


class _Idle:
    """A connected device that never says anything (a phone in a pocket)."""

    def send(self, message: m.ServerMessage) -> None:
        pass

    def replaced(self) -> None:
        pass

    def revoked(self) -> None:
        pass

    def disconnected(self) -> None:
        pass

    def drained(self) -> None:
        pass


async def _callers(server: Server) -> list[Client]:
    callers = [await server.signup(f"caller{i:02d}") for i in range(CALLERS)]
    await server.signup("bob")
    carol = await server.signup("carol")
    for i in range(CALLERS):
        await carol.block(f"caller{i:02d}")
    return callers


async def _measure(callers: list[Client], on: Server) -> dict[str, dict[str, list[float]]]:
    """Per callee: seconds from invite to ringing, and from hangup to ended."""
    timings: dict[str, dict[str, list[float]]] = {
        callee: {"ringing": [], "ended": []} for callee in ("bob", "carol")
    }
    lines = []
    for caller in callers:
        moved = on.client()
        moved.profile = caller.profile
        line = Line(moved)
        await line.open()
        lines.append(line)
    # Interleaved in one random order: drift, and whatever an invite leaves running for the
    # next one, weigh on both kinds alike.
    order = ["bob", "carol"] * TRIALS
    random.Random(7).shuffle(order)
    try:
        for n, callee in enumerate(order):
            line = lines[n % len(lines)]
            started = time.perf_counter()
            await line.send(m.Invite(handle=callee))
            call_id = (await line.expect(m.Ringing)).call_id
            rang = time.perf_counter()
            await line.send(m.Hangup(call_id=call_id))
            ended = await line.expect(m.Ended)
            done = time.perf_counter()
            assert (ended.call_id, ended.reason) == (call_id, "cancelled")
            timings[callee]["ringing"].append(rang - started)
            timings[callee]["ended"].append(done - rang)
    finally:
        for line in lines:
            await line.close()
    return timings


def _verdicts(timings: dict[str, dict[str, list[float]]]) -> dict[str, Comparison]:
    return {
        what: compare(timings["bob"][what], timings["carol"][what]) for what in ("ringing", "ended")
    }


async def test_one_node_with_idle_devices_rings_offline_and_blocked_alike(
    make_server: MakeServer,
) -> None:
    server = await make_server(routing="local")
    service = server.app[CALLS]
    for _ in range(IDLE_DEVICES):
        device = sm.DeviceRef(secrets.token_hex(16), secrets.token_hex(16))
        await service.connect(device, _Idle(), None)
    callers = await _callers(server)
    verdicts = _verdicts(await _measure(callers, server))
    assert not any(v.differ for v in verdicts.values()), verdicts


async def test_two_nodes_ring_and_cancel_offline_and_blocked_alike(
    make_server: MakeServer,
) -> None:
    node_a = await make_server(routing="redis", node_id=unique("node-a"))
    node_b = await make_server(routing="redis", node_id=unique("node-b"))
    callers = await _callers(node_b)
    verdicts = _verdicts(await _measure(callers, node_a))
    assert not any(v.differ for v in verdicts.values()), verdicts
