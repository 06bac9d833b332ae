"""Several media nodes behind one ``MediaRooms``: each room lives on one node, placed on the
least-loaded healthy one (``placement.py``); rooms are reported lost when their node dies.

Two ways to find nodes, chosen once at start-up (docs/scaling.md, "Media nodes"):

- **fixed**: one node at ``CALLBOOK_MEDIA_URL`` (and the one ``callbook serve`` embeds);
- **registry**: the nodes in the store's media-node registry (``directory/storage/media_nodes.py``),
  all sharing ``CALLBOOK_MEDIA_SECRET``.

A node is dead when its control API refuses connections, or when its heartbeat is stale and it
does not answer a probe either (a store outage makes every heartbeat stale without any media
node being gone, so staleness alone is not enough).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import msgspec
from redis.exceptions import RedisError

from directory.storage import keys, media_nodes
from directory.storage.media_nodes import MediaNodeInfo
from directory.storage.tasks import cancel_until_done
from directory.store import Store
from media.bundle import Offer
from media.control import MediaControl, MediaControlError
from signaling.calls.placement import place
from signaling.cluster.outage import StoreOutage

log = logging.getLogger("callbook.media_pool")

FIXED_NODE = "media"
PROBE_TIMEOUT_S = 2.0
T = TypeVar("T")

#: A media node's answers that send a new room to the next node.
_FULL_OR_LEAVING = frozenset({"draining", "too_many_rooms"})
#: Told the dead node's id and the rooms that were on it.
LostRooms = Callable[[str, list[str]], None]


class NoMediaNode(Exception):
    """No media node can take a new room (none registered, healthy or with room to spare)."""


class MediaPool:
    def __init__(
        self,
        secret: str,
        *,
        fixed_url: str | None = None,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        outage: StoreOutage | None = None,
    ) -> None:
        if (fixed_url is None) == (store is None):
            raise ValueError("a media pool has either one fixed node or a registry")
        self._secret = secret
        self._store = store
        self._clock = clock
        self._outage = outage or StoreOutage()  # one warning per store outage
        self._nodes: dict[str, MediaNodeInfo] = {}
        self._urls: dict[str, str] = {} if fixed_url is None else {FIXED_NODE: fixed_url}
        self._clients: dict[str, MediaControl] = {}
        self._rooms: dict[str, str] = {}  # room -> the node it lives on
        self._dead_at: dict[str, float] = {}
        self._on_lost: LostRooms | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def fixed(self) -> bool:
        return self._store is None

    def on_lost(self, callback: LostRooms) -> None:
        self._on_lost = callback

    def start(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def nodes(self) -> list[MediaNodeInfo]:
        """The media nodes known here with their load and last heartbeat (operator view)."""
        return sorted(self._nodes.values(), key=lambda n: n.id)

    def node_of(self, room: str) -> str | None:
        return self._rooms.get(room)

    def adopt(self, room: str, node_id: str) -> None:
        """A room placed by another signaling node (a call taken over): keep using its node."""
        self._rooms[room] = node_id

    def release(self, room: str) -> None:
        """The room is driven by another signaling node now: forget it without deleting it."""
        self._rooms.pop(room, None)

    # --- MediaRooms ------------------------------------------------------------------------

    async def create_room(self, room: str, max_participants: int = 16) -> None:
        placed = self._rooms.get(room)
        if placed is not None:  # an SFU 1:1 call opens its room on every publish
            await self._on(room, lambda c: c.create_room(room, max_participants))
            return
        tried: set[str] = set()
        while (node := await self._choose(frozenset(tried))) is not None:
            tried.add(node)
            self._bump(node, rooms=1)  # counted before the request: rooms opened meanwhile see it
            try:
                await self._client(node).create_room(room, max_participants)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self._bump(node, rooms=-1)
                log.warning("media node %s refused a room: %s", node, type(exc).__name__)
                continue
            except MediaControlError as exc:
                if exc.code not in _FULL_OR_LEAVING:
                    raise
                # Its registry entry did not say so yet: the next node may take the room.
                self._bump(node, rooms=-1)
                log.info("media node %s refused a room: %s", node, exc.code)
                continue
            self._rooms[room] = node
            return
        raise NoMediaNode("no media node can take a room now")

    async def join(self, room: str, participant: str, offer_sdp: str, bundle: bool = False) -> str:
        answer = await self._on(room, lambda c: c.join(room, participant, offer_sdp, bundle))
        self._bump(self._rooms.get(room), participants=1)
        return answer

    async def subscribe(
        self, room: str, participant: str, publisher: str, source: str = "camera"
    ) -> tuple[str, str | None]:
        return await self._on(room, lambda c: c.subscribe(room, participant, publisher, source))

    async def offer(self, room: str, participant: str) -> Offer | None:
        return await self._on(room, lambda c: c.offer(room, participant))

    async def answer_offer(
        self, room: str, participant: str, revision: int, answer_sdp: str
    ) -> Offer | None:
        return await self._on(
            room, lambda c: c.answer_offer(room, participant, revision, answer_sdp)
        )

    async def publish_screen(self, room: str, participant: str, offer_sdp: str) -> str:
        return await self._on(room, lambda c: c.publish_screen(room, participant, offer_sdp))

    async def unpublish_screen(self, room: str, participant: str) -> None:
        await self._on(room, lambda c: c.unpublish_screen(room, participant))

    async def answer(self, room: str, participant: str, subscription: str, answer_sdp: str) -> None:
        await self._on(room, lambda c: c.answer(room, participant, subscription, answer_sdp))

    async def set_view(
        self,
        room: str,
        participant: str,
        publisher: str,
        source: str = "camera",
        max_height: int | None = None,
    ) -> None:
        await self._on(room, lambda c: c.set_view(room, participant, publisher, source, max_height))

    async def leave(self, room: str, participant: str) -> None:
        if room in self._rooms:
            await self._on(room, lambda c: c.leave(room, participant))

    async def delete_room(self, room: str) -> None:
        if room in self._rooms:
            try:
                await self._on(room, lambda c: c.delete_room(room))
            finally:
                self._rooms.pop(room, None)

    async def room_stats(self, room: str) -> dict[str, Any]:
        stats = await self._on(room, lambda c: c.room_stats(room))
        if stats.get("lost"):
            # The node's worker process of this room died (media/workers.py): the room is
            # gone as with a dead node, and its call ends for everyone alike.
            self._drop(self._rooms.get(room), [room])
            raise NoMediaNode("this room was lost with its media worker")
        return stats

    # --- nodes -----------------------------------------------------------------------------

    async def _on(self, room: str, request: Callable[[MediaControl], Awaitable[T]]) -> T:
        node = self._rooms.get(room)
        if node is None:
            raise NoMediaNode("this room has no media node (it was lost, or never opened)")
        if node not in self._urls and not self.fixed:
            await self._refresh()  # an adopted room on a node not read yet
        if node not in self._urls:
            raise NoMediaNode(f"media node {node} is not in the registry")
        try:
            return await request(self._client(node))
        except aiohttp.ClientConnectorError:
            self._lose(node)  # nothing listens there any more: the node is gone
            raise
        except MediaControlError as exc:
            if exc.code == "room_lost":  # its worker process died; the node lives on
                self._drop(node, [room])
            raise

    async def _choose(self, tried: frozenset[str]) -> str | None:
        if self.fixed:
            return None if FIXED_NODE in tried else FIXED_NODE
        if not self._nodes:
            await self._refresh()
        node = place(self._nodes.values(), self._clock(), self._dead_at, tried)
        return None if node is None else node.id

    def _bump(self, node_id: str | None, rooms: int = 0, participants: int = 0) -> None:
        """Count a placement here at once: the node's own count comes with its next beat."""
        info = None if node_id is None else self._nodes.get(node_id)
        if info is not None:
            self._nodes[info.id] = msgspec.structs.replace(
                info, rooms=info.rooms + rooms, participants=info.participants + participants
            )

    def _client(self, node_id: str) -> MediaControl:
        client = self._clients.get(node_id)
        url = self._urls[node_id]
        if client is None or client.base_url != url.rstrip("/"):
            client = self._clients[node_id] = MediaControl(url, self._secret)
        return client

    def _lose(self, node_id: str) -> None:
        """The node is gone: its rooms are lost, and it gets no new room until it beats again."""
        self._dead_at[node_id] = self._clock()
        rooms = sorted(r for r, n in self._rooms.items() if n == node_id)
        log.warning("media node %s is gone with %d rooms", node_id, len(rooms))
        self._drop(node_id, rooms)

    def _drop(self, node_id: str | None, rooms: list[str]) -> None:
        """These rooms are lost (with their node, or their worker process on it)."""
        rooms = [room for room in rooms if self._rooms.pop(room, None) is not None]
        if node_id is not None and rooms and self._on_lost is not None:
            # Not from inside the request that noticed: the caller is mid-way through a call.
            asyncio.get_running_loop().call_soon(self._on_lost, node_id, rooms)

    async def _watch(self) -> None:
        while True:
            try:
                await self._check()
            except Exception:
                log.exception("media node check failed")
            await asyncio.sleep(keys.MEDIA_HEARTBEAT_S)

    async def _check(self) -> None:
        if self.fixed:
            await self._probe_fixed()
            return
        if not await self._refresh():
            return  # the store is unreachable: no verdict on anyone
        now = self._clock()
        for node in sorted(set(self._rooms.values())):
            info = self._nodes.get(node)
            if info is not None and info.healthy(now):
                continue
            if node not in self._urls or not await self._answers(node):
                self._lose(node)

    async def _refresh(self) -> bool:
        assert self._store is not None
        try:
            listing = await media_nodes.listing(self._store.redis, self._store.clock())
        except (RedisError, OSError):
            self._outage.failed("the media-node registry")
            return False
        self._nodes = {n.id: n for n in listing}
        self._urls.update({n.id: n.url for n in listing})
        return True

    async def _answers(self, node_id: str) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await self._client(node_id).stats()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False
        return True

    async def _probe_fixed(self) -> None:
        now = self._clock()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                stats = await self._client(FIXED_NODE).stats()
        except aiohttp.ClientConnectorError:
            self._lose(FIXED_NODE)
            return
        except (aiohttp.ClientError, OSError, TimeoutError):
            return  # slow or confused, not gone: it keeps its rooms
        known = self._nodes.get(FIXED_NODE)
        self._nodes[FIXED_NODE] = MediaNodeInfo(
            id=FIXED_NODE, url=self._urls[FIXED_NODE],
            rooms=int(stats.get("rooms", 0)), participants=int(stats.get("participants", 0)),
            started_at=now if known is None else known.started_at, seen_at=now,
        )  # fmt: skip

    async def close(self) -> None:
        if self._watcher is not None:
            await cancel_until_done(self._watcher)
        for client in self._clients.values():
            await client.close()
