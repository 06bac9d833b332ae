"""Several media nodes: they register with their load, new rooms go to the least-loaded healthy
one, and a media node killed mid-call is noticed (its participants told, new calls elsewhere).
Real media node processes, real aiortc participants, the real store."""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Callable
from typing import Any

import pytest

from directory import operators
from directory.inventory import INVENTORY, glob
from directory.storage import keys, media_nodes
from directory.store import Store
from signaling.appkeys import CALLS
from signaling.calls.media_pool import MediaPool
from signaling.sdk.softphone import Softphone
from tests.conftest import MakeServer, Server
from tests.media_nodes import SECRET, media_processes, registered, until
from tests.test_operator import _http

pytestmark = pytest.mark.slow

#: A killed node is noticed at once (its port refuses), at the latest by its stale heartbeat.
DETECTION_S = keys.MEDIA_DEAD_AFTER_S + 2 * keys.MEDIA_HEARTBEAT_S + 2.0


async def _registry_server(make_server: MakeServer) -> Server:
    return await make_server(media_url=None, media_registry=True, media_secret=SECRET)


def _pool(server: Server) -> MediaPool:
    pool = server.app[CALLS].media
    assert pool is not None
    return pool


async def test_media_nodes_register_their_load_and_the_operator_sees_them(
    make_server: MakeServer, store: Store, redis_url: str
) -> None:
    with media_processes(redis_url, "m-one", "m-two") as nodes:
        await registered(store, {"m-one", "m-two"})
        server = await _registry_server(make_server)
        token = await operators.create(store, "olga")
        deadline = time.monotonic() + 10
        while True:  # the pool reads the registry every second
            _, body = await _http(server, "GET", "/v1/operator/nodes", token)
            media = {n["id"]: n for n in body["nodes"] if n["kind"] == "media"}
            if set(media) == {"m-one", "m-two"} or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert set(media) == {"m-one", "m-two"}, body
        for entry in media.values():
            assert entry["connections"] == 0 and entry["active_calls"] == 0
            assert entry["last_heartbeat"] >= entry["started_at"] > 0
        # Two new rooms at once, before either node's next heartbeat: one on each node.
        pool = _pool(server)
        await asyncio.gather(pool.create_room("room-1", 4), pool.create_room("room-2", 4))
        assert {pool.node_of("room-1"), pool.node_of("room-2")} == {"m-one", "m-two"}
        await until(
            lambda: {n.id: n.rooms for n in pool.nodes()} == {"m-one": 1, "m-two": 1},
            10, "each node reports its room",
        )  # fmt: skip
        for room in ("room-1", "room-2"):
            await pool.delete_room(room)
        # The registry holds a URL and counters, no secret; its key is in the inventory.
        for info in await media_nodes.listing(store.redis, store.clock()):
            assert SECRET not in info.url
        (key,) = [k async for k in store.redis.scan_iter(match="cb:{media}:*")]
        assert [d.name for d in INVENTORY if fnmatch.fnmatchcase(key, glob(d))] == ["media_nodes"]
        nodes[0].stop()  # SIGTERM: the node takes itself out of the registry
        assert {n.id for n in await media_nodes.listing(store.redis, store.clock())} == {"m-two"}


def _heard(phone: Softphone) -> bool:
    return phone.session is not None and phone.session.participants_received(False) == 1


def _recorder(events: list[dict[str, Any]], name: str) -> Callable[[dict[str, Any]], None]:
    return lambda event: events.append({**event, "who": name})


async def test_a_killed_media_node_ends_its_rooms_and_new_calls_go_to_the_survivor(
    make_server: MakeServer, store: Store, redis_url: str
) -> None:
    with media_processes(redis_url, "m-one", "m-two") as nodes:
        await registered(store, {"m-one", "m-two"})
        server = await _registry_server(make_server)
        pool = _pool(server)
        events: list[dict[str, Any]] = []
        alice = Softphone(await server.signup("alice"), emit=_recorder(events, "alice"))
        bob = Softphone(await server.signup("bob"), emit=_recorder(events, "bob"))
        try:
            await bob.line.open()
            calls = asyncio.gather(alice.group(["bob"], None), bob.answer(None))

            def speakers() -> set[str]:
                return {e["who"] for e in events if e["event"] == "active_speaker"}

            await until(lambda: speakers() == {"alice", "bob"}, 30, "media flows both ways")
            # The SFU hearing both is not both hearing each other: on a loaded machine a
            # downlink may connect later (and the test checks below that media had flowed).
            await until(lambda: _heard(alice) and _heard(bob), 30, "each hears the other")
            call_id = next(e["call_id"] for e in events if e["event"] == "joined")
            placed = pool.node_of(call_id)
            assert placed in {"m-one", "m-two"}
            victim = next(n for n in nodes if n.node_id == placed)
            victim.kill()
            results = await asyncio.wait_for(calls, DETECTION_S)
            assert [r.reason for r in results] == ["media_failed", "media_failed"]
            assert all(r.participants_received == 1 for r in results)  # it had flowed before

            survivor = ({"m-one", "m-two"} - {placed}).pop()
            await alice.close()  # a new line for the next call: group() opens its own
            placed_on: list[str | None] = []

            def on_alice(event: dict[str, Any]) -> None:
                if event["event"] == "joined":
                    placed_on.append(pool.node_of(event["call_id"]))

            alice = Softphone(alice.client, emit=on_alice)
            again = await asyncio.wait_for(
                asyncio.gather(alice.group(["bob"], 4.0), bob.answer(4.0)), 60
            )
        finally:
            await alice.close()
            await bob.close()
    assert placed_on == [survivor]
    for summary in again:
        assert summary.outcome == "connected" and summary.participants_received == 1, summary
