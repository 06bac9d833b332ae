"""The missed-call record and its stand-in for a callee who may not be rung: the stand-in must
cost the store what the record costs (a store that does less frees the CPU it shares with the
node sooner, which a caller timing ``ended`` saw: issue 12) and must leave nothing behind."""

from __future__ import annotations

import pytest

from directory import accounts, history
from directory.store import Store
from signaling.sdk.client import new_device_key

#: Commands that change the keyspace; a store writes each of them to its append-only file.
WRITES = ("sadd", "expire", "zadd", "zremrangebyscore", "zrem", "srem")


async def _writes(store: Store) -> dict[str, int]:
    stats = await store.redis.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in WRITES}


async def test_the_stand_in_leaves_the_store_as_it_was(store: Store) -> None:
    await history.record_nothing(store, store.clock())
    assert await store.redis.dbsize() == 0


@pytest.mark.parametrize("redis_backend", ["standalone"], indirect=True)
async def test_the_stand_in_writes_what_the_record_writes(store: Store) -> None:
    caller = await accounts.signup(store, "caller", None, "phone", new_device_key()[1])
    callee = await accounts.signup(store, "callee", None, "phone", new_device_key()[1])

    await store.redis.config_resetstat()
    await history.record_missed(
        store, callee.account.id, caller.account.id, "caller", store.clock()
    )
    recorded = await _writes(store)
    await store.redis.config_resetstat()
    await history.record_nothing(store, store.clock())
    stood_in = await _writes(store)

    assert [m.caller_handle for m in await history.list_missed(store, callee.account.id)] == [
        "caller"
    ]
    for name, calls in recorded.items():
        assert stood_in[name] >= calls, (name, recorded, stood_in)
