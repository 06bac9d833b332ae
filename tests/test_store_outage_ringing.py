"""A call placed just after a store outage, before the callee's node has written its presence
again (it expired during the outage), rings the callee once that presence is back; it used to
ring nowhere and end ``missed`` after the ring timeout.

Two in-process nodes with the cluster router on a Valkey the test owns. The window is held open,
not raced: the callee's node writes presence through one ordered worker, and a job the test
puts in it waits on an event until the call has been placed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from directory.storage import keys
from directory.storage.connection import connect
from signaling.appkeys import CALLS
from signaling.cluster.routing_redis import RedisRouter
from signaling.protocol import messages as m
from signaling.sdk.line import Line
from tests.conftest import MakeServer, Server, befriend
from tests.valkey_process import ValkeyProcess

pytestmark = pytest.mark.slow

BACK_WITHIN_S = 15.0


@pytest.fixture
def owned_valkey(tmp_path: Path) -> Iterator[ValkeyProcess]:
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


async def _readyz(http: aiohttp.ClientSession, server: Server) -> int:
    async with http.get(f"{server.url}/readyz") as response:
        return response.status


async def _until_ready(http: aiohttp.ClientSession, *servers: Server) -> None:
    async with asyncio.timeout(BACK_WITHIN_S):
        for server in servers:
            while True:
                if await _readyz(http, server) == 200:
                    break
                await asyncio.sleep(0.1)


async def _invite(line: Line, handle: str) -> str:
    """Place a call; the first attempts may meet a connection from before the outage."""
    async with asyncio.timeout(BACK_WITHIN_S):
        while True:
            await line.send(m.Invite(handle=handle))
            reply = await line.receive(within=5)
            if isinstance(reply, m.Ringing):
                return reply.call_id
            assert isinstance(reply, m.Error) and reply.code == "unavailable", reply
            await asyncio.sleep(0.1)


async def test_a_call_placed_before_the_callee_is_present_again_rings_when_it_is(
    owned_valkey: ValkeyProcess, make_server: MakeServer
) -> None:
    shared = {"redis_url": owned_valkey.url, "redis_cluster": False, "routing": "redis"}
    node_a = await make_server(node_id="ring-a", **shared)
    node_b = await make_server(node_id="ring-b", **shared)
    alice = await node_a.signup("alice")
    bob = await node_b.signup("bob")
    await befriend(alice, bob)
    assert bob.profile is not None
    presence = keys.presence(bob.profile.account_id)
    router_b = node_b.app[CALLS].router
    assert isinstance(router_b, RedisRouter)
    async with Line(alice) as a, Line(bob) as b, aiohttp.ClientSession() as http:
        for line in (a, b):
            await line.open()
            # Answered once the node has done with the sign-in (it reads the store after
            # welcome): the outage must not fall into it.
            await line.send(m.Ping())
            await line.expect(m.Pong)
        window = asyncio.Event()
        router_b._worker.submit(window.wait)  # node b writes no presence until it is set

        owned_valkey.kill()
        assert await _readyz(http, node_a) == 503  # node a has seen the outage
        owned_valkey.start()
        # Bob's presence expired during the outage (TTL 10 s): taken away here, not waited for.
        redis = connect(owned_valkey.url)
        try:
            await redis.delete(presence)
            call_id = await _invite(a, "bob")  # finds bob offline: rings nowhere yet
            await _until_ready(http, node_a, node_b)
            assert not await redis.exists(presence)
        finally:
            await redis.aclose()
        window.set()

        incoming = await b.expect(m.Incoming, within=BACK_WITHIN_S)
        assert incoming.call_id == call_id
        await b.send(m.Accept(call_id=call_id))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        await a.send(m.Hangup(call_id=call_id))
        assert (await b.expect(m.Ended)).call_id == call_id
