"""The data inventory is complete and truthful: a full scenario leaves no key it does not
describe, and every TTL agrees with the retention it states."""

from __future__ import annotations

import fnmatch

import aiohttp
import pytest

from directory.inventory import INVENTORY, Datum, account_keys, glob
from directory.store import Store
from signaling.client import ClientError
from tests.conftest import Server
from tests.test_portability import _scenario


def _entry_for(key: str) -> Datum | None:
    matches = [d for d in INVENTORY if fnmatch.fnmatchcase(key, glob(d))]
    assert len(matches) <= 1, f"{key} matches several entries: {[d.name for d in matches]}"
    return matches[0] if matches else None


async def test_every_stored_key_is_described_with_a_truthful_ttl(
    server: Server, store: Store
) -> None:
    _person, alice, _carol, _dave = await _scenario(server)
    await alice.whois("carol")
    with pytest.raises(ClientError):
        await alice.whois("nobody_at_all")
    await (await server.signup("leaver")).erase()  # a quarantined handle
    with pytest.raises(ClientError):
        await server.client().recover("carol", "aaaa-bbbb-cccc-dddd-eeee-ffff-gggg-hhhh")

    seen: set[str] = set()
    async for key in store.redis.scan_iter(count=500):
        datum = _entry_for(key)
        assert datum is not None, f"{key} is not in the inventory"
        seen.add(datum.name)
        ttl = await store.redis.ttl(key)
        if ttl == -1:
            assert datum.max_ttl_s is None or datum.may_persist, f"{key} never expires"
        else:
            assert datum.max_ttl_s is not None, f"{key} expires, the inventory says it stays"
            assert 0 < ttl <= datum.max_ttl_s, f"{key}: TTL {ttl} > {datum.max_ttl_s}"
    # The scenario exercised nearly every kind; the rest are named here on purpose.
    assert {d.name for d in INVENTORY} - seen <= {"signin_challenge"}


def test_erase_deletes_every_per_account_entry() -> None:
    names = {d.name for d in INVENTORY if d.scope == "account"}
    assert len(account_keys("x" * 32)) == len(names)
    for key in account_keys("x" * 32):
        datum = _entry_for(key)
        assert datum is not None and datum.scope == "account"


async def test_inventory_is_public_and_matches_the_code(server: Server) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/v1/privacy/inventory") as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert [d["name"] for d in body["data"]] == [d.name for d in INVENTORY]
    for entry in body["data"]:
        assert entry["purpose"] and entry["retention"] and entry["visible_to"]
