"""The data inventory is complete and truthful: a full scenario leaves no key it does not
describe, and every TTL agrees with the retention it states."""

from __future__ import annotations

import fnmatch

import aiohttp
import pytest

from directory import operators
from directory.inventory import INVENTORY, Datum, account_keys, glob
from directory.store import Store
from signaling.appkeys import CALLS
from signaling.client import Client, ClientError
from signaling.phone.line import Line
from signaling.schemas import AccountUpdate
from signaling.ws import messages as m
from tests.conftest import MakeServer, Server
from tests.redis_cluster import BOTH_STORES
from tests.test_portability import ERASED, _scenario


async def _moderation(server: Server, store: Store, reporter: Client) -> None:
    """Reports (matched and not), a decision with notices to both sides, an audited action."""
    token = await operators.create(store, "olga")
    headers = {"Authorization": f"Bearer {token}"}
    user = {"Authorization": f"Bearer {await reporter.token()}"}
    async with aiohttp.ClientSession() as http:
        report_ids = []
        for handle in (ERASED, "nobody_at_all"):
            body = {"handle": handle, "category": "spam", "text": "Adverts in every call."}
            async with http.post(f"{server.url}/v1/reports", json=body, headers=user) as r:
                assert r.status == 202
                report_ids.append((await r.json())["report"])
        decision = {"decision": "warn", "statement": "Unsolicited adverts are not allowed."}
        async with http.post(
            f"{server.url}/v1/operator/reports/{report_ids[0]}/decide",
            json=decision,
            headers=headers,
        ) as r:
            assert r.status == 200, await r.text()


def _entry_for(key: str) -> Datum | None:
    matches = [d for d in INVENTORY if fnmatch.fnmatchcase(key, glob(d))]
    assert len(matches) <= 1, f"{key} matches several entries: {[d.name for d in matches]}"
    return matches[0] if matches else None


@BOTH_STORES  # on a cluster, SCAN walks every primary
async def test_every_stored_key_is_described_with_a_truthful_ttl(
    make_server: MakeServer, store: Store
) -> None:
    server = await make_server(routing="redis")  # presence and node keys, as in a cluster
    _person, alice, _carol, dave = await _scenario(server)
    await _moderation(server, store, alice)
    await alice.whois("carol")
    with pytest.raises(ClientError):
        await alice.whois("nobody_at_all")
    async with Line(alice) as line:  # a group call through the SFU leaves only missed calls
        await line.open()
        await line.send(m.GroupInvite(handles=["carol", "dave"]))
        joined = await line.expect(m.Joined)
        await line.send(m.Hangup(call_id=joined.call_id))
        while not isinstance(await line.receive(within=5), m.Ended):
            pass
    await (await server.signup("leaver")).erase()  # a quarantined handle
    await (await server.signup("renamer")).update(AccountUpdate(handle="renamed"))
    with pytest.raises(ClientError):
        await server.client().recover("carol", "aaaa-bbbb-cccc-dddd-eeee-ffff-gggg-hhhh")

    # A call still ringing while the store is scanned: its record and its node's index, and
    # the ringing entry between its two accounts; a group call its host talks in (busy).
    ringing = Line(alice)
    await ringing.open()
    await ringing.send(m.Invite(handle="carol"))
    await ringing.expect(m.Ringing)
    talking = Line(dave)
    await talking.open()
    await talking.send(m.GroupInvite(handles=["carol"]))
    await talking.expect(m.Joined)
    await server.app[CALLS].flush_store_writes()

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
    # Webhook keys exist only with CALLBOOK_WEBHOOK_URLS: tests/test_webhooks.py checks them.
    webhooks = {"webhook_events", "webhook_dead_letters", "webhook_lease"}
    # Written only when a node is judged dead (tests/test_cluster_processes.py kills one).
    judged = {"nodes_judged_dead"}
    # The media-node registry exists only with registered media nodes: test_media_nodes.py.
    registry = {"media_nodes"}
    expected_missing = {"signin_challenge"} | webhooks | judged | registry
    assert {d.name for d in INVENTORY} - seen <= expected_missing
    await ringing.close()
    await talking.close()


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
