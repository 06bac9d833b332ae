"""Two nodes on one store with the defaults call each other (issue 18, finding 1); a node told
to route locally there says so loudly. Real ``callbook serve`` processes on the test Valkey."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from directory.store import Store
from media.embedded import EmbeddedMedia
from signaling.protocol import messages as m
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.redis_cluster import StoreTarget
from tests.test_cluster_processes import Node, _client, clients

pytestmark = pytest.mark.slow
__all__ = ["clients"]  # the fixture, shared with test_cluster_processes


async def test_two_nodes_on_one_store_with_the_defaults_call_each_other(
    store: Store, store_target: StoreTarget, sfu: EmbeddedMedia, clients: list[Client]
) -> None:
    """Nothing but REDIS_URL (no CALLBOOK_ROUTING): alice on node 1 rings bob on node 2."""
    defaults = {"CALLBOOK_ROUTING": ""}
    node_1 = Node("default-1", store_target, sfu, 30, defaults)
    node_2 = Node("default-2", store_target, sfu, 30, defaults)
    try:
        await asyncio.gather(node_1.ready(), node_2.ready())
        alice = _client(clients, node_1.url)
        await alice.signup("alice")
        bob = _client(clients, node_2.url)
        await bob.signup("bob")
        async with Line(alice) as a, Line(bob) as b:
            await a.open()
            await b.open()
            await a.send(m.Invite(handle="bob"))
            call_id = (await a.expect(m.Ringing)).call_id
            assert (await b.expect(m.Incoming, within=10)).call_id == call_id
            await b.send(m.Accept(call_id=call_id))
            assert (await a.expect(m.Accepted)).call_id == call_id
    finally:
        node_1.stop()
        node_2.stop()


async def _warned(log_path: Path, other: str, within_s: float = 20.0) -> dict[str, object]:
    """The ERROR line naming ``other``, once the node has written it."""
    async with asyncio.timeout(within_s):
        while True:
            for line in (await asyncio.to_thread(log_path.read_text)).splitlines():
                record = json.loads(line)
                if record["level"] == "ERROR" and other in record["msg"]:
                    return record
            await asyncio.sleep(0.1)


async def test_nodes_routing_locally_on_one_store_each_warn_of_the_other(
    store: Store, store_target: StoreTarget, sfu: EmbeddedMedia, tmp_path: Path
) -> None:
    """CALLBOOK_ROUTING=local on both: their calls cannot cross, and each log says so, naming
    the setting to change."""
    local = {"CALLBOOK_ROUTING": "local"}
    node_1 = Node("solo-1", store_target, sfu, 30, local, log_path=tmp_path / "1.log")
    node_2 = Node("solo-2", store_target, sfu, 30, local, log_path=tmp_path / "2.log")
    try:
        await asyncio.gather(node_1.ready(), node_2.ready())
        for log_path, other in ((tmp_path / "1.log", node_2), (tmp_path / "2.log", node_1)):
            record = await _warned(log_path, other.node_id)
            assert "CALLBOOK_ROUTING" in str(record["msg"])
    finally:
        node_1.stop()
        node_2.stop()


async def test_a_node_routing_locally_warns_of_a_node_routing_between_nodes(
    store: Store, store_target: StoreTarget, sfu: EmbeddedMedia, tmp_path: Path
) -> None:
    """One node upgraded to the default, the other still told to route locally: the local one
    warns (its devices cannot be reached from the other)."""
    routed = Node("routed", store_target, sfu, 30, {"CALLBOOK_ROUTING": ""})
    solo = Node("solo", store_target, sfu, 30, {"CALLBOOK_ROUTING": "local"},
                log_path=tmp_path / "solo.log")  # fmt: skip
    try:
        await asyncio.gather(routed.ready(), solo.ready())
        await _warned(tmp_path / "solo.log", routed.node_id)
    finally:
        routed.stop()
        solo.stop()
