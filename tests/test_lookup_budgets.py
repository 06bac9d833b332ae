"""Sign-ups must not multiply the scraping budget, and claiming a handle is a lookup
(issue 12, findings 11 and 12)."""

from __future__ import annotations

import pytest

from directory.storage import keys
from directory.store import Store
from signaling.protocol.bodies import AccountUpdate
from signaling.sdk.client import ClientError
from tests.conftest import MakeServer


async def _lookups(client, handle: str, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    codes = []
    for _ in range(count):
        try:
            await client.whois(handle)
            codes.append("ok")
        except ClientError as error:
            codes.append(error.code)
    return codes


async def _age(store: Store, client) -> None:  # type: ignore[no-untyped-def]
    await store.redis.hset(keys.account(client.profile.account_id), "created_day", "2020-01-01")


async def test_a_young_account_looks_up_from_a_smaller_budget(
    make_server: MakeServer, store: Store
) -> None:
    server = await make_server(young_lookup_burst=2, young_lookup_refill_per_s=0.001)
    await server.signup("bob")
    fresh = await server.signup("fresh")
    assert await _lookups(fresh, "bob", 3) == ["ok", "ok", "rate_limited"]
    await _age(store, fresh)  # a day later, the account's own budget is the only one
    assert await _lookups(fresh, "bob", 3) == ["ok"] * 3


async def test_young_accounts_share_one_store_wide_budget(
    make_server: MakeServer, store: Store
) -> None:
    server = await make_server(young_store_lookup_burst=4, young_store_lookup_refill_per_s=0.001)
    await server.signup("bob")
    young = [await server.signup(f"sybil{i}") for i in range(3)]
    assert await _lookups(young[0], "bob", 2) == ["ok", "ok"]
    assert await _lookups(young[1], "bob", 2) == ["ok", "ok"]
    assert await _lookups(young[2], "bob", 1) == ["rate_limited"]
    established = await server.signup("established")
    await _age(store, established)
    assert await _lookups(established, "bob", 2) == ["ok", "ok"]


async def test_claiming_taken_handles_spends_the_lookup_budget(
    make_server: MakeServer, store: Store
) -> None:
    server = await make_server(lookup_burst=3, lookup_refill_per_s=0.001)
    for name in ("hidden1", "hidden2", "hidden3", "hidden4"):
        owner = await server.signup(name)
        await owner.update(AccountUpdate(discoverable="nobody"))
    prober = await server.signup("prober")
    codes = []
    for name in ("hidden1", "hidden2", "hidden3", "hidden4"):
        try:
            await prober.update(AccountUpdate(handle=name))
            codes.append("ok")
        except ClientError as error:
            codes.append(error.code)
    assert codes == ["handle_taken"] * 3 + ["rate_limited"]


async def test_successful_renames_are_limited_per_day(make_server: MakeServer) -> None:
    server = await make_server(renames_per_day=2)
    alice = await server.signup("alice")
    await alice.update(AccountUpdate(handle="alice2"))
    await alice.update(AccountUpdate(handle="alice3"))
    with pytest.raises(ClientError) as refused:
        await alice.update(AccountUpdate(handle="alice4"))
    assert refused.value.code == "rate_limited"
    assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 86400
    assert (await alice.me()).handle == "alice3"
    assert (await alice.update(AccountUpdate(display_name="Alice"))).handle == "alice3"
