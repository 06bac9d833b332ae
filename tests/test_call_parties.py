"""What a call leaves in the store: its parties by id, never their handles or display names
(issue 12, "call parties on disk"); a survivor that takes the call over reads the names from the
address book. Real ``callbook serve`` processes on one store, the owner killed with SIGKILL."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest

from directory.storage import keys
from directory.store import Store
from media.embedded import EmbeddedMedia
from signaling.protocol import messages as m
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.redis_cluster import BOTH_STORES, StoreTarget
from tests.test_cluster_processes import DETECTION_S, _client, _nodes

pytestmark = [pytest.mark.slow, BOTH_STORES]

NAMES = ("alice", "Alice Liddell", "bob", "Bob Builder")


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.close()


async def _record(store: Store, call_id: str) -> dict[str, str]:
    async with asyncio.timeout(10):
        while True:
            record: dict[str, str] = await store.redis.hgetall(keys.call_record(call_id))
            if record:
                return record
            await asyncio.sleep(0.05)


async def test_a_call_record_holds_ids_and_a_survivor_finds_the_names(
    store: Store, store_target: StoreTarget, sfu: EmbeddedMedia, clients: list[Client]
) -> None:
    with _nodes(store_target, sfu, resume_s=30) as (node_a, node_b):
        await asyncio.gather(node_a.ready(), node_b.ready())
        alice = _client(clients, node_a.url)
        await alice.signup("alice", "Alice Liddell")
        bob_on_a = _client(clients, node_a.url)
        await bob_on_a.signup("bob", "Bob Builder")
        a = Line(alice)
        async with Line(_client(clients, node_b.url, bob_on_a)) as b:
            await a.open()
            await b.open()
            await a.send(m.Invite(handle="bob"))
            call_id = (await a.expect(m.Ringing)).call_id
            assert (await b.expect(m.Incoming)).caller.display_name == "Alice Liddell"
            record = await _record(store, call_id)
            raw = " ".join(record.values()).encode() + base64.b64decode(record["state"])
            for name in NAMES:
                assert name.encode() not in raw
            assert (await alice.me()).id.encode() in raw  # what a survivor needs: ids
            assert 0 < await store.redis.ttl(keys.call_record(call_id)) <= keys.CALL_RECORD_TTL_S

            node_a.kill()
            await a.close()
            async with asyncio.timeout(3 * DETECTION_S):
                while True:
                    if await store.redis.hget(keys.call_record(call_id), "owner") == node_b.node_id:
                        break
                    await asyncio.sleep(0.1)
            # Taken over while ringing: bob answers on the survivor, which names alice.
            await b.send(m.Accept(call_id=call_id))
            accepted = await b.expect(m.Accepted)
            assert (accepted.peer.handle, accepted.peer.display_name) == ("alice", "Alice Liddell")
            record = await _record(store, call_id)
            raw = base64.b64decode(record["state"])
            assert not any(name.encode() in raw for name in NAMES)
            await b.send(m.Hangup(call_id=call_id))
            assert (await b.expect(m.Ended)).reason == "hangup"
