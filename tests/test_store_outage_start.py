"""A node starts while its store is down (a machine boots, the store comes up later): it listens,
answers ``/readyz`` 503 ``unavailable``, and is ready by itself once the store answers; then
accounts are made and a call is placed through it (cluster routing: the pub/sub listener and the
heartbeat start with the store away)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from media.embedded import EmbeddedMedia
from signaling.protocol import messages as m
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.conftest import befriend
from tests.test_store_outage import LoggedNode
from tests.valkey_process import ValkeyProcess

pytestmark = pytest.mark.slow

#: From the store answering to the node answering ready (its checks retry every second).
READY_WITHIN_S = 15.0


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.close()


async def _readyz(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    async with http.get(f"{url}/readyz") as response:
        return response.status, await response.json()


async def _listening(
    http: aiohttp.ClientSession, node: LoggedNode
) -> tuple[int, dict[str, object]]:
    """The node's first answer to ``/readyz`` (it must start, not exit)."""
    async with asyncio.timeout(READY_WITHIN_S):
        while True:
            assert node.process.poll() is None, node.log_path.read_text()
            try:
                return await _readyz(http, node.url)
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)


async def test_a_node_starts_while_the_store_is_down_and_is_ready_when_it_is_back(
    tmp_path: Path, sfu: EmbeddedMedia, clients: list[Client]
) -> None:
    store = ValkeyProcess(tmp_path / "valkey")  # not started yet
    node = LoggedNode("start-down", store.url, sfu, tmp_path / "node.log")
    try:
        async with aiohttp.ClientSession() as http:
            assert await _listening(http, node) == (503, {"status": "unavailable"})
            async with http.get(f"{node.url}/healthz") as response:
                assert response.status == 200
            store.start()
            async with asyncio.timeout(READY_WITHIN_S):
                while True:
                    if (await _readyz(http, node.url))[0] == 200:
                        break
                    await asyncio.sleep(0.1)

        alice, bob = Client(node.url), Client(node.url)
        clients.extend((alice, bob))
        await alice.signup("alice")
        await bob.signup("bob")
        await befriend(alice, bob)
        async with Line(alice) as a, Line(bob) as b:
            await a.open()
            await b.open()
            await a.send(m.Invite(handle="bob"))
            call_id = (await a.expect(m.Ringing)).call_id
            assert (await b.expect(m.Incoming)).call_id == call_id
            await b.send(m.Accept(call_id=call_id))
            await a.expect(m.Accepted)
            await b.expect(m.Accepted)
            await a.send(m.Hangup(call_id=call_id))
            assert (await b.expect(m.Ended)).call_id == call_id
    finally:
        node.stop()
        store.stop()
    warnings = [line["msg"] for line in node.log_lines() if line.get("level") == "WARNING"]
    assert len(warnings) == 1 and "store is unreachable" in str(warnings[0]), warnings
