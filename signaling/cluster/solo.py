"""A node routing locally (``CALLBOOK_ROUTING=local``) that sees others on its store says so.

Local routing reaches only the devices connected to this process: two such nodes on one store
each ring their own devices, and a call from one to a device on the other rings nowhere and ends
``no_answer``. Nothing failed, so nothing said so (issue 18). A shared store (``REDIS_URL``) now
routes between nodes by default; a node told to route locally there writes its heartbeat into
``keys.solo_nodes`` and logs an ERROR as soon as another live node, routing either way, is in
the registry, then again every ``REMIND_S`` while one is.

The judgement (``Watch``) is pure; ``SoloWatch`` is the store adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis.exceptions import RedisError

from directory.storage import keys
from directory.storage.tasks import cancel_until_done
from directory.store import Store

log = logging.getLogger("callbook.routing")

#: While other nodes stay, the warning is repeated this often.
REMIND_S = 60.0


def others(
    beats: Iterable[tuple[str, float]], *, me: str, now: float, dead_after_s: float
) -> frozenset[str]:
    """The other nodes whose heartbeat is recent enough to count them alive."""
    return frozenset(n for n, beat in beats if n != me and now - beat <= dead_after_s)


class Watch:
    """When to warn: at the first sight of a node not seen before, and every ``remind_s``."""

    def __init__(self, remind_s: float = REMIND_S) -> None:
        self._remind_s = remind_s
        self._seen: frozenset[str] = frozenset()
        self._warned_at = float("-inf")

    def step(self, alive: frozenset[str], now: float) -> str | None:
        """The warning to log now, if any."""
        new = alive - self._seen
        self._seen = alive
        if not alive or (not new and now - self._warned_at < self._remind_s):
            return None
        self._warned_at = now
        return (
            f"CALLBOOK_ROUTING=local, but {len(alive)} other signaling node(s) use this store "
            f"({', '.join(sorted(alive))}): calls between devices on different nodes ring "
            "nowhere. Unset CALLBOOK_ROUTING (or set it to redis) on every node (docs/scaling.md)."
        )


class SoloWatch:
    def __init__(
        self,
        store: Store,
        node_id: str,
        *,
        clock: Callable[[], float] | None = None,
        heartbeat_s: float = keys.NODE_HEARTBEAT_S,
        dead_after_s: float = keys.NODE_DEAD_AFTER_S,
    ) -> None:
        self._store = store
        self._redis: Any = store.redis
        self._node_id = node_id
        self._clock = clock or store.clock
        self._heartbeat_s = heartbeat_s
        self._dead_after_s = dead_after_s
        self._watch = Watch()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            await cancel_until_done(self._task)
            self._task = None
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self._redis.zrem(keys.solo_nodes(), self._node_id), 2.0)

    async def _run(self) -> None:
        while True:
            # A store that is away is reported by everything else on the node.
            with contextlib.suppress(RedisError, OSError):
                await self.check()
            await asyncio.sleep(self._heartbeat_s)

    async def check(self) -> None:
        """One beat: write ours, read everyone's, warn if another node is there."""
        now = self._clock()
        solo = keys.solo_nodes()
        await self._redis.zadd(solo, {self._node_id: now})
        await self._redis.zremrangebyscore(solo, "-inf", now - keys.NODE_FORGET_AFTER_S)
        beats = [
            *await self._redis.zrange(keys.nodes(), 0, -1, withscores=True),
            *await self._redis.zrange(solo, 0, -1, withscores=True),
        ]
        alive = others(
            ((n, float(s)) for n, s in beats),
            me=self._node_id, now=now, dead_after_s=self._dead_after_s,
        )  # fmt: skip
        warning = self._watch.step(alive, now)
        if warning is not None:
            log.error(warning)
