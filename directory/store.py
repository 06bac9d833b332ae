"""The handle every address-book operation takes: a Redis client, limits and a clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from directory import keys


@dataclass(frozen=True, slots=True)
class DirectoryConfig:
    handle_quarantine_s: int = keys.DEFAULT_HANDLE_QUARANTINE_S
    max_devices: int = 10
    lookup_burst: int = 30
    lookup_refill_per_s: float = 0.5
    recovery_burst: int = 5
    recovery_refill_per_s: float = 1 / 60
    report_retention_s: int = keys.DEFAULT_REPORT_RETENTION_S
    audit_retention_s: int = keys.DEFAULT_AUDIT_RETENTION_S
    report_burst: int = 5
    report_refill_per_s: float = 10 / 3600


@dataclass(frozen=True, slots=True)
class Store:
    redis: Any  # Redis or RedisCluster: the commands used here behave alike on both
    config: DirectoryConfig = field(default_factory=DirectoryConfig)
    clock: Callable[[], float] = time.time
    _scripts: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def today(self) -> str:
        """Dates are kept at day granularity: enough to be useful, little to profile."""
        return time.strftime("%Y-%m-%d", time.gmtime(self.clock()))

    def script(self, source: str) -> Any:
        """The registered script (EVALSHA, loading it when the server lacks it)."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.redis.register_script(source)
        return script

    async def run_script(self, source: str, keys: list[str], args: list[Any]) -> Any:
        return await self.script(source)(keys=keys, args=args)


#: A store that does not accept a connection within this long counts as away (503 at once).
CONNECT_TIMEOUT_S = 1.0
#: A store that accepted but does not answer (frozen, partitioned) fails a command after this
#: long; above the longest blocking read we issue (webhook delivery's ``XREADGROUP BLOCK``).
COMMAND_TIMEOUT_S = 5.0


def connect(url: str, max_connections: int = 64, wait_s: float = 5.0) -> Redis:
    """A client for one Redis/Valkey server (``redis://``, ``rediss://`` or ``unix://``).

    A burst beyond the pool waits up to ``wait_s`` for a free connection instead of failing.
    Every command is bounded in time, so a store that goes away makes requests fail (503), not
    hang; nothing is retried here: the callers answer ``unavailable`` and the client retries.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        protocol=3,
        max_connections=max_connections,
        timeout=wait_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
    )
    client: Redis = Redis.from_pool(pool)  # the client owns the pool and closes it
    return client
