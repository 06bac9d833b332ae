"""Draining a media node (issue 18, finding 4): SIGTERM stops new rooms there (the registry says
it is draining, placement skips it, a room sent to it anyway is refused) and lets its live rooms
finish, within a grace period. Real media node processes, real aiortc participants in a group
call placed through the registry, the real store."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from directory.storage import media_nodes
from directory.store import Store
from media.control import MediaControl, MediaControlError
from signaling.calls.placement import usable
from signaling.protocol import messages as m
from signaling.sdk.softphone import Softphone
from tests.conftest import MakeServer
from tests.media_nodes import SECRET, MediaProcess, media_processes, registered, until, until_stored
from tests.test_media_nodes import _pool, _registry_server

pytestmark = pytest.mark.slow

#: A bound for a process to exit once it has nothing left to wait for (not a timing claim).
EXIT_S = 60.0


async def _exit_code(node: MediaProcess) -> int:
    return await asyncio.to_thread(node.process.wait, EXIT_S)


async def _forwarded(control: MediaControl, room: str) -> int:
    stats = await control.room_stats(room)
    return sum(p["packets_in"] for p in stats["participants"])


async def _draining_in_registry(store: Store, node_id: str) -> None:
    async def draining() -> bool:
        return any(
            n.id == node_id and n.draining
            for n in await media_nodes.listing(store.redis, store.clock())
        )

    await until_stored(draining, 10, f"{node_id} draining in the registry")


async def test_sigterm_lets_the_live_room_finish_and_sends_new_rooms_elsewhere(
    make_server: MakeServer, store: Store, redis_url: str
) -> None:
    with media_processes(redis_url, "md-one", "md-two") as nodes:
        await registered(store, {"md-one", "md-two"})
        server = await _registry_server(make_server)
        pool = _pool(server)
        events: list[dict[str, Any]] = []
        alice = Softphone(await server.signup("alice"), emit=events.append)
        bob = Softphone(await server.signup("bob"))
        try:
            await bob.line.open()
            calls = asyncio.gather(alice.group(["bob"], None), bob.answer(None))
            await until(lambda: any(e["event"] == "joined" for e in events), 30, "joined")
            call_id = next(e["call_id"] for e in events if e["event"] == "joined")
            placed = pool.node_of(call_id)
            victim = next(n for n in nodes if n.node_id == placed)
            survivor = next(n for n in nodes if n.node_id != placed)
            async with MediaControl(victim.url, SECRET) as control:
                await until_stored(
                    lambda: _flowing(control, call_id, 50), 30, "media through the room"
                )
                victim.process.send_signal(signal.SIGTERM)
                await _draining_in_registry(store, victim.node_id)
                listed = await media_nodes.listing(store.redis, store.clock())
                info = next(n for n in listed if n.id == victim.node_id)
                assert not usable(info, store.clock(), {})
                # A room sent to it anyway (placed before its entry changed) is refused...
                with pytest.raises(MediaControlError) as refused:
                    await control.create_room("late-room", 4)
                assert (refused.value.status, refused.value.code) == (503, "draining")
                # ...and the pool places it on the other node.
                await pool.create_room("next-room", 4)
                assert pool.node_of("next-room") == survivor.node_id
                await pool.delete_room("next-room")
                # The live room goes on forwarding.
                before = await _forwarded(control, call_id)
                await until_stored(
                    lambda: _flowing(control, call_id, before + 50), 30, "media after SIGTERM"
                )
                assert victim.process.poll() is None
            await alice.line.send(m.Hangup(call_id=call_id))
            results = await asyncio.wait_for(calls, 30)
            assert all(r.reason != "media_failed" for r in results), results
            assert all(r.participants_received == 1 for r in results), results
            # Its last room gone, the node stops by itself, and leaves the registry.
            assert await _exit_code(victim) == 0
            left = await media_nodes.listing(store.redis, store.clock())
            assert {n.id for n in left} == {survivor.node_id}
        finally:
            await alice.close()
            await bob.close()


async def _flowing(control: MediaControl, room: str, packets: int) -> bool:
    return await _forwarded(control, room) > packets


async def test_a_room_that_outlives_the_grace_period_ends_with_it(
    store: Store, redis_url: str
) -> None:
    node = MediaProcess("md-grace", redis_url, "--drain-grace-s", "2")
    try:
        await registered(store, {"md-grace"})
        async with MediaControl(node.url, SECRET) as control:
            await control.create_room("held", 4)
            node.process.send_signal(signal.SIGTERM)
            await _draining_in_registry(store, "md-grace")
            assert (await control.room_stats("held"))["room"] == "held"
        assert await _exit_code(node) == 0
    finally:
        node.stop()
