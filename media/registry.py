"""A media node in the registry: its control URL and load, written every second.

Signaling places new rooms on the least-loaded healthy node it finds there; a node that stops
writing is taken for dead after ``keys.MEDIA_DEAD_AFTER_S`` (docs/scaling.md, "Media nodes").
A node without a store (one fixed SFU, or the one ``callbook serve`` embeds) skips all this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from directory.storage import keys, media_nodes
from directory.storage.connection import connect
from directory.storage.media_nodes import MediaNodeInfo, WorkerLoad
from directory.storage.tasks import cancel_until_done
from media.config import MediaConfig

log = logging.getLogger("callbook.media.registry")


def load(config: MediaConfig, stats: dict[str, object], started_at: float) -> MediaNodeInfo:
    return MediaNodeInfo(
        id=config.node_id,
        url=config.advertise_url,
        rooms=_int(stats.get("rooms")),
        participants=_int(stats.get("participants")),
        max_rooms=config.max_rooms,
        started_at=started_at,
        seen_at=time.time(),
        draining=stats.get("draining") is True,
        workers=msgspec.convert(stats.get("workers") or [], list[WorkerLoad], strict=False),
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


async def _beat(
    redis: Any,
    config: MediaConfig,
    stats: Callable[[], dict[str, object]],
    wake: asyncio.Event,
) -> None:
    started_at = time.time()
    while True:
        try:
            await media_nodes.heartbeat(redis, load(config, stats(), started_at))
        except (RedisError, OSError):
            log.warning("could not write the heartbeat: the store is unreachable")
        # asyncio.timeout, not wait_for: on 3.11 a cancellation that meets wait_for's own
        # timeout comes out as TimeoutError, and the stopping node's heartbeat beat on.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(keys.MEDIA_HEARTBEAT_S):
                await wake.wait()
        wake.clear()


def registration(
    config: MediaConfig, stats: Callable[[], dict[str, object]], wake: asyncio.Event
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context: heartbeats while the app runs (at once when ``wake`` is set: a drain
    must leave placement now, not a second later), and the entry removed at shutdown."""

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        if config.redis_url is None:
            yield
            return
        redis = connect(config.redis_url, max_connections=4, cluster=config.redis_cluster)
        task = asyncio.create_task(_beat(redis, config, stats, wake))
        log.info("registered as media node %s", config.node_id)
        yield
        await cancel_until_done(task)  # a store timeout can swallow one cancellation
        with contextlib.suppress(RedisError, OSError):
            await media_nodes.remove(redis, config.node_id)
        await redis.aclose()

    return ctx
