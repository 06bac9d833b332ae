"""The data inventory is complete and truthful: a realistic workload leaves no key and no field
it does not name, every field it names is written by someone, and every TTL agrees with the
retention it states."""

from __future__ import annotations

import aiohttp

from directory.inventory import INVENTORY, account_keys
from directory.store import Store
from signaling.protocol.bodies import AccountUpdate
from tests import workload
from tests.conftest import MakeServer, Server
from tests.redis_cluster import BOTH_STORES
from tests.store_walk import datum_for, stored_fields


@BOTH_STORES  # on a cluster, SCAN walks every primary
async def test_every_stored_key_and_field_is_described_with_a_truthful_ttl(
    make_server: MakeServer, store: Store
) -> None:
    async with workload.webhook_receiver() as hooks:
        server = await make_server(routing="redis", **workload.webhook_settings(hooks))
        w = await workload.run(server, store)
        await (await server.signup("renamer")).update(AccountUpdate(handle="renamed"))
        await workload.until_stored(lambda: workload.dead_lettered(store))
        async with workload.live_calls(server, w.alice, w.dave):
            described = await _walk(store)
    # The workload wrote every kind but these, named here on purpose: one is written only when a
    # node is judged dead (tests/test_cluster_processes.py kills one), two by the rewrite of the
    # store's files after erasures (tests/test_erase_disk.py), one by a draining node
    # (tests/test_drain_successors.py) and one by a node routing locally (tests/test_solo.py).
    unwritten = {
        "nodes_judged_dead", "erasures_rewritten", "rewrite_lease", "nodes_draining",
        "solo_nodes",
    }  # fmt: skip
    assert {d.name for d in INVENTORY} - set(described) == unwritten
    # And the other way round: every field the inventory names was written by someone, but
    # `hide_ip`, which only accounts of earlier versions hold (`relay_calls` replaced it).
    legacy = {"account": {"hide_ip"}}
    for datum in INVENTORY:
        if datum.name in described:
            unseen = set(datum.fields) - described[datum.name] - legacy.get(datum.name, set())
            assert not unseen, f"{datum.name}: {sorted(unseen)} listed but never stored"


async def _walk(store: Store) -> dict[str, set[str]]:
    """Every key of the store against the inventory: its entry, TTL and every field."""
    described: dict[str, set[str]] = {}
    async for key in store.redis.scan_iter(count=500):
        datum = datum_for(key)
        assert datum is not None, f"{key} is not in the inventory"
        ttl = await store.redis.ttl(key)
        if ttl == -1:
            assert datum.max_ttl_s is None or datum.may_persist, f"{key} never expires"
        else:
            assert datum.max_ttl_s is not None, f"{key} expires, the inventory says it stays"
            assert 0 < ttl <= datum.max_ttl_s, f"{key}: TTL {ttl} > {datum.max_ttl_s}"
        fields = await stored_fields(store, key, datum)
        unlisted = fields - set(datum.fields)
        assert not unlisted, f"{key} holds {sorted(unlisted)}, not in the inventory"
        described.setdefault(datum.name, set()).update(fields)
    return described


def test_erase_deletes_every_per_account_entry() -> None:
    names = {d.name for d in INVENTORY if d.scope == "account"}
    assert len(account_keys("x" * 32)) == len(names)
    for key in account_keys("x" * 32):
        datum = datum_for(key)
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
