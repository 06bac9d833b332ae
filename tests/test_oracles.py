"""Existence oracles: whatever a handle names, the store sees the same commands in the same order.

Each check records what the real Valkey executes (MONITOR, Lua scripts' own commands included)
while the server's code acts on an unknown handle and on handles held by people the actor may
not see, and compares the sequences with ids, handle digests and numbers blanked.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from directory import accounts, contacts, lookup, reports
from directory.errors import NotFound
from directory.store import Store
from signaling.sdk.client import new_device_key
from tests.conftest import StoreTarget

# Ids, handle digests, hash tags (the "-" that stands in for nobody too), times and scores.
_VARYING = re.compile(r"\{[^}]*\}|\b[0-9a-f]{32}\b|\b[0-9]+(?:\.[0-9]+)?\b")
_SENTINEL = "callbook-trace-end"


async def _trace(
    target: StoreTarget, store: Store, action: Callable[[], Awaitable[object]]
) -> list[str]:
    """The commands the store executed during ``action``, ids and numbers blanked."""
    watcher = Redis.from_url(target.url, decode_responses=True)
    try:
        async with watcher.monitor() as monitor:
            await action()
            await store.redis.echo(_SENTINEL)
            commands: list[str] = []
            while _SENTINEL not in (command := (await monitor.next_command())["command"]):
                commands.append(_VARYING.sub("#", command))
    finally:
        await watcher.aclose()
    return commands


async def _signup(store: Store, handle: str) -> str:
    signed_up = await accounts.signup(store, handle, None, "phone", new_device_key()[1])
    return signed_up.account.id


async def test_a_report_costs_the_store_the_same_whoever_it_names(
    store_target: StoreTarget, store: Store
) -> None:
    if store_target.cluster:
        pytest.skip("MONITOR watches one server")
    store = replace(store, config=replace(store.config, report_burst=100))
    alice = await _signup(store, "alice")
    hidden = await _signup(store, "hidden")
    await accounts.update(store, hidden, discoverable="nobody")
    blocker = await _signup(store, "blocker")
    await contacts.block(store, blocker, "alice")
    suspended = await _signup(store, "suspended")
    await accounts.suspend(store, suspended)
    await accounts.update(store, await _signup(store, "renamed"), handle="renamed_again")

    async def report(handle: str) -> str:
        return await reports.file(store, alice, handle, "harassment", "Calls at night.", None)

    unknown = await _trace(store_target, store, lambda: report("nobody_here"))
    assert unknown, "MONITOR saw nothing"
    for handle in ("hidden", "blocker", "suspended", "renamed", "not a handle!"):
        assert await _trace(store_target, store, lambda h=handle: report(h)) == unknown, handle


async def test_a_lookup_costs_the_store_the_same_whoever_it_names(
    store_target: StoreTarget, store: Store
) -> None:
    if store_target.cluster:
        pytest.skip("MONITOR watches one server")
    alice = await _signup(store, "alice")
    await accounts.update(store, await _signup(store, "hidden"), discoverable="nobody")
    await contacts.block(store, await _signup(store, "blocker"), "alice")

    async def find(handle: str) -> None:
        with pytest.raises(NotFound):
            await lookup.find(store, alice, handle)

    unknown = await _trace(store_target, store, lambda: find("nobody_here"))
    for handle in ("hidden", "blocker", "not a handle!"):
        assert await _trace(store_target, store, lambda h=handle: find(h)) == unknown, handle
