"""The media-node registry: each SFU writes its control URL and load every second; signaling
reads it to place each new room on the least-loaded healthy node (docs/scaling.md).

One hash (``keys.media_nodes``), one field per node: a heartbeat is one ``HSET``, a read one
``HGETALL``. The control secret is shared by configuration and never stored here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from directory.storage import keys


class WorkerLoad(msgspec.Struct, frozen=True, kw_only=True):
    """One worker process of a media node (media/workers.py): its share of the node's load."""

    index: int
    up: bool = True
    rooms: int = 0
    participants: int = 0
    packets_per_s: float = 0.0
    #: CPU used over the last second, in cores (1.0: one core busy).
    cpu: float = 0.0
    restarts: int = 0


class MediaNodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    url: str
    rooms: int = 0
    participants: int = 0
    max_rooms: int = 0
    started_at: float = 0.0
    seen_at: float = 0.0
    #: Set by a node that is shutting down: alive for its rooms, but no new ones.
    draining: bool = False
    #: Its worker processes (none: the rooms run in the node process itself).
    workers: list[WorkerLoad] = msgspec.field(default_factory=list)

    def healthy(self, now: float) -> bool:
        return now - self.seen_at <= keys.MEDIA_DEAD_AFTER_S


_decoder = msgspec.json.Decoder(MediaNodeInfo)


# ``redis``: a client from ``connection.connect``; the media node has no address-book ``Store``.


async def heartbeat(redis: Any, info: MediaNodeInfo) -> None:
    await redis.hset(keys.media_nodes(), info.id, msgspec.json.encode(info).decode())


async def remove(redis: Any, node_id: str) -> None:
    await redis.hdel(keys.media_nodes(), node_id)


async def listing(redis: Any, now: float) -> list[MediaNodeInfo]:
    """Every registered media node, healthy or not, at ``now`` (wall clock, as ``seen_at``);
    long-dead entries are removed here."""
    raw: dict[str, str] = await redis.hgetall(keys.media_nodes())
    found: list[MediaNodeInfo] = []
    forgotten: list[str] = []
    for node_id, text in raw.items():
        try:
            info = _decoder.decode(text)
        except msgspec.DecodeError:
            forgotten.append(node_id)  # not ours to read: a writer of another version
            continue
        if now - info.seen_at > keys.NODE_FORGET_AFTER_S:
            forgotten.append(node_id)
        else:
            found.append(info)
    if forgotten:
        await redis.hdel(keys.media_nodes(), *forgotten)
    return sorted(found, key=lambda n: n.id)
