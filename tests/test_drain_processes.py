"""SIGTERM drains a real ``callbook serve`` node: it refuses newcomers, hands its calls to the
other node, its devices resume there, the calls go on, and it exits 0 within the grace period."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from directory.store import Store
from media.embedded import EmbeddedMedia
from signaling.calls.records import CallRecords
from signaling.protocol import messages as m
from signaling.protocol.closes import CLOSE_DRAINING
from signaling.sdk.client import Client
from signaling.sdk.line import Line, LineClosed
from signaling.server import SHUTDOWN_GRACE_S
from tests.conftest import befriend
from tests.redis_cluster import BOTH_STORES, StoreTarget
from tests.test_cluster_processes import (
    Node,
    _client,
    _connected_call,
    _stored_connected,
    clients,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.slow

GRACE_S = 20


@contextmanager
def _nodes(target: StoreTarget, sfu: EmbeddedMedia, logs: Path) -> Iterator[tuple[Node, Node]]:
    env = {"CALLBOOK_DRAIN_GRACE_S": str(GRACE_S)}
    a = Node("drain-a", target, sfu, 30, env, log_path=logs / "a.log")
    b = Node("drain-b", target, sfu, 30, env, log_path=logs / "b.log")
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


async def _refuses_newcomers(node: Node) -> None:
    """Once draining: readiness 503, and a new call WebSocket gets a 503 ``draining``."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(10):
        while True:
            async with http.get(f"{node.url}/readyz") as response:
                if response.status == 503:
                    assert (await response.json())["status"] == "draining"
                    break
            await asyncio.sleep(0.05)
        async with http.get(f"{node.url}/v1/ws") as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert response.content_type == "application/problem+json"
            assert (await response.json())["code"] == "draining"


async def _exits_cleanly(node: Node) -> int:
    """The exit code; the drain (at most GRACE_S) and the shutdown after it are bounded."""
    try:
        return await asyncio.to_thread(node.process.wait, GRACE_S + SHUTDOWN_GRACE_S + 5)
    except subprocess.TimeoutExpired:
        tail = node.log_tail()
        raise AssertionError(f"{node.node_id} still runs; its log ends:\n{tail}") from None


async def _call_goes_on(a: Line, b: Line, call_id: str) -> None:
    """Both sides still signal (an ICE restart) and hang up; nobody got anything else first
    (no ``ended``, ``peer_lost`` or ``peer_reconnecting``): ``expect`` takes the next message."""
    await a.send(m.Description(call_id=call_id, kind="offer", sdp="v=0 restart"))
    assert (await b.expect(m.PeerDescription)).sdp == "v=0 restart"
    await b.send(m.Description(call_id=call_id, kind="answer", sdp="v=0 answer"))
    assert (await a.expect(m.PeerDescription)).sdp == "v=0 answer"
    await b.send(m.Hangup(call_id=call_id))
    assert (await a.expect(m.Ended)).reason == "hangup"
    assert (await b.expect(m.Ended)).reason == "hangup"


async def _two_people(made: list[Client], node: Node) -> tuple[Client, Client]:
    alice = _client(made, node.url)
    await alice.signup("alice")
    bob = _client(made, node.url)
    await bob.signup("bob")
    await befriend(alice, bob)  # peer to peer: no relay between contacts
    return alice, bob


@BOTH_STORES
async def test_sigterm_moves_the_caller_and_the_call_to_the_other_node(
    store: Store,
    store_target: StoreTarget,
    sfu: EmbeddedMedia,
    clients: list[Client],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Alice on A runs the call with bob on B; A drains: the call and alice move to B."""
    with _nodes(store_target, sfu, tmp_path) as (node_a, node_b):
        await asyncio.gather(node_a.ready(), node_b.ready())
        alice, bob = await _two_people(clients, node_a)
        servers = [node_a.url, node_b.url]  # A first: a client tries it and is refused
        a = Line(alice, servers=servers)
        b = Line(_client(clients, node_b.url, bob), servers=servers)
        async with a, b:
            first = await a.open()
            await b.open()
            call_id = await _connected_call(a, b)
            await _stored_connected(store, call_id)
            node_a.process.send_signal(signal.SIGTERM)
            await _refuses_newcomers(node_a)
            welcome = await a.moved(within=15)
            reconnect, _ = a.moves[0]
            assert reconnect.resume_token == first.resume_token
            assert welcome.resumed
            assert b.moves == []  # B is not draining
            # A is gone before anyone speaks again: the call runs on B now.
            assert await _exits_cleanly(node_a) == 0
            assert await CallRecords(store, "probe").owner(call_id) == node_b.node_id
            await _call_goes_on(a, b, call_id)


@BOTH_STORES
async def test_sigterm_moves_both_devices_of_a_call_on_the_draining_node(
    store: Store,
    store_target: StoreTarget,
    sfu: EmbeddedMedia,
    clients: list[Client],  # noqa: F811
    tmp_path: Path,
) -> None:
    with _nodes(store_target, sfu, tmp_path) as (node_a, node_b):
        await asyncio.gather(node_a.ready(), node_b.ready())
        alice, bob = await _two_people(clients, node_a)
        servers = [node_a.url, node_b.url]
        async with Line(alice, servers=servers) as a, Line(bob, servers=servers) as b:
            await a.open()
            await b.open()
            call_id = await _connected_call(a, b)
            await _stored_connected(store, call_id)
            node_a.process.send_signal(signal.SIGTERM)
            moved = await asyncio.gather(a.moved(within=15), b.moved(within=15))
            assert all(welcome.resumed for welcome in moved)
            assert await _exits_cleanly(node_a) == 0
            assert await CallRecords(store, "probe").owner(call_id) == node_b.node_id
            await _call_goes_on(a, b, call_id)


async def test_sigterm_alone_sends_idle_devices_away_and_exits(
    store: Store,  # a clean store
    store_target: StoreTarget,
    sfu: EmbeddedMedia,
    clients: list[Client],  # noqa: F811
    tmp_path: Path,
) -> None:
    """CALLBOOK_ROUTING=local: no other node to go to. The idle device is told to reconnect,
    finds only the draining node (refused), is closed with 4003; the node exits 0."""
    env = {"CALLBOOK_DRAIN_GRACE_S": str(GRACE_S), "CALLBOOK_ROUTING": "local"}
    # the line gives up after 3 s
    node = Node("alone", store_target, sfu, 3, env, log_path=tmp_path / "alone.log")
    try:
        await node.ready()
        async with Line(_client(clients, node.url)) as line:
            await line.client.signup("alice")
            welcome = await line.open()
            node.process.send_signal(signal.SIGTERM)
            await _refuses_newcomers(node)
            with pytest.raises(LineClosed) as closed:
                await line.receive(within=GRACE_S)
            assert closed.value.code == CLOSE_DRAINING
            assert [r.resume_token for r in line.reconnects] == [welcome.resume_token]
            assert await _exits_cleanly(node) == 0
    finally:
        node.stop()
