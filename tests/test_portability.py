"""Export holds everything about a person; erase leaves nothing that names them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from directory.inventory import INVENTORY, account_keys
from directory.storage import keys
from directory.store import Store
from signaling.protocol.records import Export, Moderation
from tests import workload
from tests.conftest import MakeServer, Server
from tests.store_walk import Values, datum_for, stored_values, text
from tests.workload import ERASED, REASON, scenario


async def test_export_holds_every_stored_datum(server: Server, store: Store) -> None:
    person, *_ = await scenario(server)
    exported = await person.export()
    account_id = exported.account.id

    stored = await store.redis.hgetall(keys.account(account_id))
    assert exported.account.handle == stored["handle"] == ERASED
    assert exported.account.display_name == stored["display_name"] == "Erin"
    assert exported.account.created_day == stored["created_day"]
    assert exported.account.discoverable == stored["discoverable"]
    assert exported.account.who_can_call == stored["who_can_call"] == "contacts"
    assert "argon2id" in exported.recovery_code  # says how it is kept, never the hash

    stored_devices = await store.redis.hgetall(keys.devices(account_id))
    assert {d.id for d in exported.devices} == set(stored_devices)
    assert len(exported.devices) == 2
    for device in exported.devices:
        assert device.public_key in stored_devices[device.id]

    contacts = {c.handle: c for c in exported.contacts}
    # Carol blocks the person: the entry stays, her handle is not shown to them.
    assert set(contacts) == {"alice", None}
    assert contacts["alice"].nickname == "Al"
    assert {c.account_id for c in exported.contacts} == set(
        await store.redis.hkeys(keys.contacts(account_id))
    )
    assert [b.handle for b in exported.blocks] == ["dave"]
    assert [c.caller_handle for c in exported.missed_calls] == ["alice"]
    assert [r.token for r in exported.push_registrations] == ["apns-token-of-erin"]


async def _everything_in_store(store: Store) -> list[str]:
    """Every key name and every value, member and field, as text."""
    seen: list[str] = []
    async for key in store.redis.scan_iter(count=500):
        seen.append(key)
        kind = await store.redis.type(key)
        if kind == "string":
            seen.append(await store.redis.get(key))
        elif kind == "hash":
            for field, value in (await store.redis.hgetall(key)).items():
                seen += [field, value]
        elif kind == "set":
            seen += list(await store.redis.smembers(key))
        elif kind == "zset":
            seen += list(await store.redis.zrange(key, 0, -1))
        elif kind == "list":
            seen += list(await store.redis.lrange(key, 0, -1))
        elif kind == "stream":
            for _id, fields in await store.redis.xrange(key):
                for field, value in fields.items():
                    seen += [field, value]
        else:
            raise AssertionError(f"unexpected key type {kind} for {key}")
    return seen


async def test_erase_leaves_no_key_or_value_naming_the_person(server: Server, store: Store) -> None:
    person, alice, carol, dave = await scenario(server)
    exported = await person.export()
    secrets = {exported.account.id, ERASED, "apns-token-of-erin"}
    for device in exported.devices:
        secrets |= {device.id, device.public_key}
    before = await _everything_in_store(store)
    assert all(any(s in text for text in before) for s in secrets - {ERASED}), "scenario too thin"

    await person.erase()

    after = await _everything_in_store(store)
    leaks = [(s, text) for text in after for s in secrets if s in text]
    assert leaks == []
    # The others' lists no longer hold the erased person.
    assert await alice.contacts() == []
    assert await carol.blocks() == []
    assert await dave.contacts() == []


# --- every stored datum of a person, field by field --------------------------------------------

#: Stored but deliberately not exported; the inventory's ``export`` says why, naming the field.
NOT_EXPORTED = {("account", "recovery_hash"), ("abuse_report", "reported"),
                ("audit_log", "operator")}  # fmt: skip


_REPORTED = ("category", "text", "call_id", "at", "status", "decision", "statement", "decided_at")


def _listed(values: Iterable[object]) -> set[str]:
    return {text(v) for v in values}


def _in_export(e: Export) -> dict[str, dict[str, set[str]]]:
    """Where the export holds each stored field of a person: datum -> field -> values."""
    account, moderation = e.account, e.moderation
    return {
        "account": {
            "handle": {account.handle},
            "display_name": {account.display_name or ""},
            "created_day": {account.created_day},
            "discoverable": {account.discoverable},
            "who_can_call": {account.who_can_call},
            "relay_calls": {account.relay_calls},
            "hide_ip": _listed([account.hide_ip]),
            "suspended": {moderation.suspended_since or ""},
            "handle_banned": {"1" if moderation.handle_banned else ""},
        },
        "devices": {
            "device_id": _listed(d.id for d in e.devices),
            "name": _listed(d.name for d in e.devices),
            "public_key": _listed(d.public_key for d in e.devices),
            "created_day": _listed(d.created_day for d in e.devices),
            "last_seen_day": _listed(d.last_seen_day for d in e.devices),
            "media_key": _listed(d.media_key for d in e.devices),
            "media_key_signature": _listed(d.media_key_signature for d in e.devices),
        },
        "contacts": {
            "contact_account_id": _listed(c.account_id for c in e.contacts),
            "nickname": _listed(c.nickname for c in e.contacts),
            "added_day": _listed(c.added_day for c in e.contacts),
        },
        "blocks": {
            "blocked_account_id": _listed(b.account_id for b in e.blocks),
            "blocked_day": _listed(b.blocked_day for b in e.blocks),
        },
        "missed_calls": {
            "caller_account_id": _listed(c.caller_account_id for c in e.missed_calls),
            "caller_handle": _listed(c.caller_handle for c in e.missed_calls),
            "at": _listed(c.at for c in e.missed_calls),
        },
        "push_registrations": {
            "device_id": _listed(r.device_id for r in e.push_registrations),
            "provider": _listed(r.provider for r in e.push_registrations),
            "token": _listed(r.token for r in e.push_registrations),
            "delivery": _listed(r.delivery for r in e.push_registrations),
        },
        "reports_filed": {"report_id": _listed(r.id for r in e.reports_filed)},
        "notices": {
            name: _listed(getattr(n, name) for n in e.notices)
            for name in ("id", "at", "kind", "statement", "decision", "report", "role")
        },
        "abuse_report": {
            **{name: _listed(getattr(r, name) for r in e.reports_filed) for name in _REPORTED},
            "reporter": {account.id},
        },
        "audit_log": {
            name: _listed(getattr(a, name) for a in e.operator_actions)
            for name in ("at", "action", "target", "reason")
        },
    }


async def _stored_about(store: Store, account_id: str) -> dict[str, Values]:
    """What the store holds about one person, in exported kinds: their own keys, the reports
    they filed, and the audit entries that target them or those reports."""
    found: dict[str, Values] = {}

    def merge(name: str, values: Values) -> None:
        for field, seen in values.items():
            found.setdefault(name, {}).setdefault(field, set()).update(seen)

    for key in account_keys(account_id):
        datum = datum_for(key)
        if datum is not None and datum.in_export and await store.redis.exists(key):
            merge(datum.name, await stored_values(store, key, datum))
    filed = await store.redis.smembers(keys.reports_filed(account_id))
    report = next(d for d in INVENTORY if d.name == "abuse_report")
    for report_id in filed:
        merge("abuse_report", await stored_values(store, keys.report(report_id), report))
    for _id, fields in await store.redis.xrange(keys.audit_log()):
        target = fields["target"]
        if target.split("/")[0] == account_id or target in filed:
            merge("audit_log", {name: {value} for name, value in fields.items()})
    return found


async def test_every_stored_datum_is_exported_or_named_as_excluded(
    make_server: MakeServer, store: Store
) -> None:
    server = await make_server(routing="redis")
    w = await workload.run(server, store)
    assert w.person.profile is not None
    account_id = w.person.profile.account_id
    path = f"/v1/operator/accounts/{account_id}/suspend"
    assert (await workload.operator_http(server, "POST", path, w.operator, {"reason": REASON}))[0]
    exported = _in_export(await w.person.export())

    stored = await _stored_about(store, account_id)
    for name, fields in stored.items():
        for field, values in fields.items():
            if (name, field) in NOT_EXPORTED:
                continue
            assert field in exported[name], f"{name}.{field} is stored but not exported"
            missing = values - exported[name][field]
            assert not missing, f"{name}.{field}: {sorted(missing)} stored, not in the export"
    # The workload stored every exported field of the person (or the test proves nothing),
    # but `hide_ip`, which only accounts of earlier versions hold ...
    assert {(n, f) for n, fs in stored.items() for f in fs} >= {
        (n, f) for n, fs in exported.items() for f in fs
    } - {("account", "hide_ip")}
    # ... and every field the inventory calls exported is mapped, or excluded with its reason.
    for datum in INVENTORY:
        if not datum.in_export:
            assert datum.export.startswith("Not exported"), datum.name
            continue
        for field in datum.fields:
            if (datum.name, field) in NOT_EXPORTED:
                assert f"`{field}`" in datum.export, f"{datum.name}: say why {field} is not"
            else:
                assert field in exported[datum.name], f"{datum.name}.{field} has no place"


async def test_the_export_names_the_suspension_day_the_ban_and_actions_on_you(
    make_server: MakeServer, store: Store
) -> None:
    server = await make_server()
    w = await workload.run(server, store)
    exported = await w.person.export()
    assert exported.moderation == Moderation(suspended_since=None, handle_banned=True)
    banned = await w.mallory.export()
    assert banned.account.suspended
    assert banned.moderation == Moderation(suspended_since=store.today(), handle_banned=True)
    assert [r.decided_at is not None for r in exported.reports_filed] == [True]
    actions = [(a.action, a.target.split("/")[0]) for a in exported.operator_actions]
    report = exported.reports_filed[0].id
    assert sorted(actions) == sorted([
        ("suspend", exported.account.id),  # by the decision on a report about the person
        ("decide_report", report),  # on the person's own report
        ("suspend", exported.account.id), ("unsuspend", exported.account.id),
        ("disconnect_device", exported.account.id),
    ])  # fmt: skip
    assert "olga" not in msgspec.json.encode(exported.operator_actions).decode()


async def test_erase_leaves_the_audit_log_with_a_pseudonym_per_entry_instead_of_the_person(
    make_server: MakeServer, store: Store
) -> None:
    server = await make_server()
    w = await workload.run(server, store)
    before = (await _audit_log(server, w.operator))["entries"]
    secrets = w.person_ids | {ERASED}
    naming = [e for e in before if any(s in e["target"] + e["reason"] for s in secrets)]
    assert {e["action"] for e in naming} == {"suspend", "unsuspend", "disconnect_device"}

    await w.person.erase()

    log = await _audit_log(server, w.operator)
    after = log["entries"]
    assert not [s for s in secrets if s in msgspec.json.encode(log).decode()]
    assert not [
        s for s in secrets - {ERASED} if any(s in t for t in await _everything_in_store(store))
    ]
    # Accountability stays: every entry, with its operator, action, time and reason.
    assert [(e["id"], e["operator"], e["action"], e["at"]) for e in after] == [
        (e["id"], e["operator"], e["action"], e["at"]) for e in before
    ]
    renamed = {e["id"] for e in naming}
    pseudonyms = []
    for old, new in zip(before, after, strict=True):
        if old["id"] not in renamed:
            assert new == old
            continue
        pseudonym = new["target"]
        assert pseudonym.startswith("erased:")
        pseudonyms.append(pseudonym)
        reason = old["reason"]
        for secret in secrets:
            reason = reason.replace(secret, pseudonym)
        assert new["reason"] == reason
    assert len(set(pseudonyms)) == len(pseudonyms) == len(naming)  # nothing links the entries


async def _audit_log(server: Server, token: str) -> dict[str, Any]:
    status, log = await workload.operator_http(server, "GET", "/v1/operator/audit?count=500", token)
    assert status == 200
    result: dict[str, Any] = log
    return result
