"""An answered call outlives the death of its node as an answered call (issue 11, finding 7).

Real ``callbook serve`` processes on one store: the callers' node runs the calls and is killed
with SIGKILL the moment the first callee hears ``accepted``. Several calls are answered at once,
so the node's store writer is behind its messages, as on a busy node. Every callee that was told
``accepted`` must end with ``peer_lost`` (protocol.md 11.6) once the resume window is over, and
must not find the call among its missed calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from directory.store import Store
from media.embedded import EmbeddedMedia
from signaling.protocol import messages as m
from signaling.protocol.bodies import MissedCalls
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.redis_cluster import BOTH_STORES, StoreTarget
from tests.test_cluster_processes import _client, _nodes

pytestmark = [pytest.mark.slow, BOTH_STORES]

PAIRS = 20
RESUME_S = 2


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.close()


async def _until_ended(line: Line, told: asyncio.Event, within: float) -> list[m.ServerMessage]:
    """Everything the line hears up to and including its ``ended``; ``told`` is set when it
    hears ``accepted``."""
    heard: list[m.ServerMessage] = []
    async with asyncio.timeout(within):
        while not heard or not isinstance(heard[-1], m.Ended):
            heard.append(await line.receive(within=within))
            if isinstance(heard[-1], m.Accepted):
                told.set()
    return heard


async def test_a_call_answered_as_its_node_dies_ends_as_answered(
    store: Store, store_target: StoreTarget, sfu: EmbeddedMedia, clients: list[Client]
) -> None:
    with _nodes(store_target, sfu, resume_s=RESUME_S) as (node_a, node_b):
        await asyncio.gather(node_a.ready(), node_b.ready())
        callers, callees = [], []
        for i in range(PAIRS):
            caller = _client(clients, node_a.url)
            await caller.signup(f"caller{i}")
            callee_on_a = _client(clients, node_a.url)
            await callee_on_a.signup(f"callee{i}")
            callers.append(Line(caller))
            callees.append(Line(_client(clients, node_b.url, callee_on_a)))
        try:
            for line in (*callers, *callees):
                await line.open()
            calls = []
            for i, (caller_line, callee_line) in enumerate(zip(callers, callees, strict=True)):
                await caller_line.send(m.Invite(handle=f"callee{i}"))
                call_id = (await caller_line.expect(m.Ringing)).call_id
                assert (await callee_line.expect(m.Incoming)).call_id == call_id
                calls.append(call_id)
            await asyncio.gather(
                *(line.send(m.Accept(call_id=c)) for line, c in zip(callees, calls, strict=True))
            )
            told = asyncio.Event()
            heard = [asyncio.ensure_future(_until_ended(line, told, 60)) for line in callees]
            await told.wait()
            node_a.kill()
            results = await asyncio.gather(*heard)
        finally:
            for line in (*callers, *callees):
                await line.close()
        answered, wrong = 0, []
        for call_id, messages, callee in zip(calls, results, callees, strict=True):
            if not any(isinstance(x, m.Accepted) for x in messages):
                continue  # never told: its node died before it answered, for all it knows
            answered += 1
            ended = messages[-1]
            assert isinstance(ended, m.Ended) and ended.call_id == call_id
            missed = await callee.client.request("GET", "/v1/calls/missed", MissedCalls)
            if ended.reason != "peer_lost" or missed.missed_calls:
                wrong.append((ended.reason, len(missed.missed_calls)))
        assert answered >= 1
        assert wrong == [], f"{len(wrong)} of {answered} answered calls"
