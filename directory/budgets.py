"""The lookup budget: what finding a person by handle, and claiming a handle, cost an account.

Every account has its own bucket. An account created today or yesterday (UTC; the day is the
only creation time kept) also draws on a smaller bucket of its own and on one store-wide bucket
shared by all young accounts, so signing up many accounts does not multiply anyone's lookups.
Young viewers pay one more round trip whatever they look up: it depends on the viewer only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from directory import ratelimit
from directory.storage import keys
from directory.store import Store

_DAY_S = 86400


def is_young(created_day: str | None, now: float) -> bool:
    """Created today or yesterday (UTC): younger than a day, at the granularity kept."""
    if not created_day:
        return False
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(now - _DAY_S))
    return created_day >= yesterday


async def charge(
    store: Store, account_id: str, queue: Callable[[Any], None] | None = None
) -> list[Any]:
    """Spend one lookup of ``account_id`` and run what ``queue`` adds to the same round trip;
    returns the queued results. Raises RateLimited when any budget is spent."""
    cfg = store.config

    def queue_all(pipe: Any) -> None:
        pipe.hget(keys.account(account_id), "created_day")
        if queue is not None:
            queue(pipe)

    bucket = ratelimit.Bucket(
        keys.lookup_bucket(account_id), cfg.lookup_burst, cfg.lookup_refill_per_s
    )
    wait_ms, created_day, *rest = await ratelimit.run_with_bucket(store, bucket, queue_all)
    ratelimit.check(wait_ms, "lookups")
    if is_young(created_day, store.clock()):
        own = ratelimit.Bucket(
            keys.young_lookup_bucket(account_id),
            cfg.young_lookup_burst,
            cfg.young_lookup_refill_per_s,
        )
        ratelimit.check(await ratelimit.spend(store, own), "lookups from a new account")
        shared = ratelimit.Bucket(
            keys.young_lookups_bucket(),
            cfg.young_store_lookup_burst,
            cfg.young_store_lookup_refill_per_s,
        )
        ratelimit.check(await ratelimit.spend(store, shared), "lookups from new accounts")
    return rest
