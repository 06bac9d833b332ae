"""A Redis Cluster goes away (every cluster node ``kill -9``, or one) and comes back on the same
ports and data: the nodes recover by themselves, without a restart. Every request after the
cluster answers again succeeds (none fails once on a connection pooled before the outage), calls
across two nodes are placed again on the sockets that stayed open, and meanwhile a command only
ever fails as a store outage (503), never as a bug of the client (500)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from directory.storage.connection import STORE_UNAVAILABLE, connect
from signaling.protocol import messages as m
from signaling.sdk.line import Line
from tests.conftest import MakeServer, befriend
from tests.redis_cluster import EmbeddedCluster

pytestmark = pytest.mark.slow

#: Requests after the outage: more than the connections the node pooled per cluster node.
REQUESTS_AFTER = 40
BACK_WITHIN_S = 15.0


@pytest.fixture
def owned_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """A cluster of this test's own (the session's must stay up), keeping its data on disk."""
    cluster = EmbeddedCluster(tmp_path / "cluster", appendonly=True)
    cluster.start()
    yield cluster
    cluster.stop()


async def _status(http: aiohttp.ClientSession, url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(url, headers=headers) as response:
        await response.read()
        return response.status


async def _ready(http: aiohttp.ClientSession, url: str) -> None:
    async with asyncio.timeout(BACK_WITHIN_S):
        while True:
            if await _status(http, f"{url}/readyz") == 200:
                return
            await asyncio.sleep(0.1)


async def _call(a: Line, b: Line) -> None:
    await a.send(m.Invite(handle="bob"))
    call_id = (await a.expect(m.Ringing)).call_id
    assert (await b.expect(m.Incoming)).call_id == call_id
    await b.send(m.Accept(call_id=call_id))
    await a.expect(m.Accepted)
    await b.expect(m.Accepted)
    await a.send(m.Hangup(call_id=call_id))
    assert (await b.expect(m.Ended)).call_id == call_id
    await a.expect(m.Ended)


async def test_a_node_works_again_when_its_cluster_comes_back(
    owned_cluster: EmbeddedCluster, make_server: MakeServer
) -> None:
    on_cluster = {"redis_url": owned_cluster.url, "redis_cluster": True, "routing": "redis"}
    server = await make_server(node_id="cl-out-a", **on_cluster)
    other = await make_server(node_id="cl-out-b", **on_cluster)
    alice = await server.signup("alice")
    bob = await other.signup("bob")
    await befriend(alice, bob)
    token = await alice.token()
    me = f"{server.url}/v1/me"
    async with Line(alice) as a, Line(bob) as b, aiohttp.ClientSession() as http:
        await a.open()
        await b.open()
        # Fill the node's pools: many requests in flight at once, each on a connection.
        statuses = await asyncio.gather(*(_status(http, me, token) for _ in range(REQUESTS_AFTER)))
        assert set(statuses) == {200}
        await _call(a, b)

        owned_cluster.kill()
        assert await _status(http, me, token) == 503
        owned_cluster.restart()
        await _ready(http, server.url)
        await _ready(http, other.url)

        statuses = await asyncio.gather(*(_status(http, me, token) for _ in range(REQUESTS_AFTER)))
        assert statuses.count(200) == REQUESTS_AFTER, statuses
        for _ in range(3):
            await _call(a, b)


async def test_commands_fail_only_as_an_outage_while_a_cluster_node_comes_back(
    owned_cluster: EmbeddedCluster,
) -> None:
    """Commands in flight on every shard, one cluster node killed and started again: each fails
    with a store error or succeeds; it used to fail with ``AttributeError`` (redis-py closed a
    pooled connection under a command that had just taken it)."""
    redis = connect(owned_cluster.url, cluster=True)
    keys = [f"cb:{{t:{n}}}:probe" for n in range(150)]  # spread over the three shards

    async def round_of_commands() -> list[object]:
        return await asyncio.gather(*(redis.set(k, "1") for k in keys), return_exceptions=True)

    try:
        assert set(await round_of_commands()) == {True}
        owned_cluster.kill(1)
        async with asyncio.timeout(BACK_WITHIN_S):
            while True:  # until a round fails: the client has seen the node go
                if any(isinstance(r, Exception) for r in await round_of_commands()):
                    break
        owned_cluster.respawn()  # commands go on while it starts and joins again
        async with asyncio.timeout(BACK_WITHIN_S):
            while True:
                results = await round_of_commands()
                failures = [r for r in results if isinstance(r, Exception)]
                assert all(isinstance(f, STORE_UNAVAILABLE) for f in failures), failures
                if not failures:
                    break
                await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
