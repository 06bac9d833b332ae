"""Export holds everything about a person; erase leaves nothing that names them."""

from __future__ import annotations

import asyncio

from directory import keys
from directory.records import Device
from directory.store import Store
from signaling.client import Client, new_device_key
from signaling.phone.line import Line
from signaling.schemas import AccountUpdate, DeviceEnrollment, MissedCalls, PushRegister
from signaling.ws import messages as m
from tests.conftest import Server

ERASED = "erasable_person_42"


async def _add_device(client: Client) -> Device:
    _key, public = new_device_key()
    device: Device = await client.request(
        "POST", "/v1/devices", Device, DeviceEnrollment(name="tablet", public_key=public)
    )
    return device


async def _scenario(server: Server) -> tuple[Client, Client, Client, Client]:
    """Contacts and blocks in both directions around one person."""
    person = await server.signup(ERASED, "Erin")
    alice = await server.signup("alice")
    carol = await server.signup("carol")
    dave = await server.signup("dave")
    await _add_device(person)
    await dave.add_contact(ERASED)
    await person.update(AccountUpdate(who_can_call="contacts"))
    await person.add_contact("alice", nickname="Al")
    await person.add_contact("carol")
    await person.block("dave")
    await alice.add_contact(ERASED, nickname="E")
    await carol.block(ERASED)
    await _missed_call(person, alice, "alice")
    await _missed_call(alice, person, ERASED)
    assert person.profile is not None
    await person.request(
        "PUT",
        f"/v1/devices/{person.profile.device_id}/push",
        None,
        PushRegister(provider="apns", token="apns-token-of-erin"),
    )
    return person, alice, carol, dave


async def _missed_call(caller: Client, callee: Client, handle: str) -> None:
    """A call cancelled while ringing: a missed-call entry for the callee."""
    async with Line(caller) as line:
        await line.open()
        await line.send(m.Invite(handle=handle))
        call_id = (await line.expect(m.Ringing)).call_id
        await line.send(m.Hangup(call_id=call_id))
        await line.expect(m.Ended)
    for _ in range(100):
        listed: MissedCalls = await callee.request("GET", "/v1/calls/missed", MissedCalls)
        if listed.missed_calls:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the missed call was not recorded")


async def test_export_holds_every_stored_datum(server: Server, store: Store) -> None:
    person, *_ = await _scenario(server)
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
        else:
            raise AssertionError(f"unexpected key type {kind} for {key}")
    return seen


async def test_erase_leaves_no_key_or_value_naming_the_person(server: Server, store: Store) -> None:
    person, alice, carol, dave = await _scenario(server)
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
