"""The handle every address-book operation takes: a Redis client, limits and a clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster

from directory.recovery import DEFAULT_POOL, HashPool
from directory.secret import DeploymentSecret
from directory.storage import keys


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
    #: Accounts created today or yesterday (UTC) look up from a smaller budget of their own,
    #: and all of them together from one store-wide budget: sign-ups do not multiply lookups.
    young_lookup_burst: int = 5
    young_lookup_refill_per_s: float = 5 / 60
    young_store_lookup_burst: int = 300
    young_store_lookup_refill_per_s: float = 300 / 60
    #: Successful handle changes per account per day (each quarantines the old handle).
    renames_per_day: int = 3


@dataclass(frozen=True, slots=True)
class Store:
    redis: Any  # Redis or RedisCluster: the commands used here behave alike on both
    config: DirectoryConfig = field(default_factory=DirectoryConfig)
    clock: Callable[[], float] = time.time
    #: Keys the handle digests and seals the signing keys; a store opened only for the media
    #: registry or the operator commands has none, and never touches those keys.
    secret: DeploymentSecret | None = field(default=None, repr=False)
    #: Where argon2 runs (recovery codes): bounded, off the event loop.
    hashing: HashPool = field(default=DEFAULT_POOL, repr=False, compare=False)
    _scripts: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def cluster(self) -> bool:
        """A Redis Cluster: node inboxes use sharded pub/sub (docs/scaling.md)."""
        return isinstance(self.redis, RedisCluster)

    def today(self) -> str:
        """Dates are kept at day granularity: enough to be useful, little to profile."""
        return time.strftime("%Y-%m-%d", time.gmtime(self.clock()))

    def deployment_secret(self) -> DeploymentSecret:
        if self.secret is None:
            raise RuntimeError("this store was opened without the deployment secret")
        return self.secret

    def handle_digest(self, normalized_handle: str) -> str:
        """The keyed digest naming a handle's keys (``keys.handle_key``)."""
        return self.deployment_secret().digest(keys.handle_preimage(normalized_handle))

    def script(self, source: str) -> Any:
        """The registered script (EVALSHA, loading it when the server lacks it)."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.redis.register_script(source)
        return script

    async def run_script(self, source: str, keys: list[str], args: list[Any]) -> Any:
        return await self.script(source)(keys=keys, args=args)
