"""A realistic workload against a real server and store, for the tests that walk every key.

Sign-ups, devices, contacts and blocks both ways, missed calls both ways, a push registration,
reports (matched and not) with decisions (a warning, a handle ban), every operator action
(reveal, end, disconnect, suspend, unsuspend), a group call through the SFU, an erased account
(a quarantined handle), a recovery attempt, a pending sign-in challenge, lifecycle webhooks with
a dead letter, a media node in the registry; and, left running while the store is read, a
ringing 1:1 call and a group call its host talks in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from directory import operators
from directory.storage import keys, media_nodes
from directory.storage.media_nodes import MediaNodeInfo
from directory.store import Store
from signaling.appkeys import CALLS
from signaling.protocol import messages as m
from signaling.protocol.bodies import AccountUpdate, DeviceEnrollment, MissedCalls, PushRegister
from signaling.protocol.records import Device
from signaling.sdk.client import Client, ClientError, new_device_key
from signaling.sdk.line import Line, LineClosed
from tests.conftest import Server

ERASED = "erasable_person_42"


async def add_device(client: Client) -> Device:
    _key, public = new_device_key()
    device: Device = await client.request(
        "POST", "/v1/devices", Device, DeviceEnrollment(name="tablet", public_key=public)
    )
    return device


async def scenario(server: Server) -> tuple[Client, Client, Client, Client]:
    """Contacts and blocks in both directions around one person."""
    person = await server.signup(ERASED, "Erin")
    alice = await server.signup("alice")
    carol = await server.signup("carol")
    dave = await server.signup("dave")
    await add_device(person)
    await dave.add_contact(ERASED)
    await person.update(AccountUpdate(who_can_call="contacts"))
    await person.add_contact("alice", nickname="Al")
    await person.add_contact("carol")
    await person.block("dave")
    await alice.add_contact(ERASED, nickname="E")
    await carol.block(ERASED)
    await missed_call(person, alice, "alice")
    await missed_call(alice, person, ERASED)
    assert person.profile is not None
    await person.request(
        "PUT",
        f"/v1/devices/{person.profile.device_id}/push",
        None,
        PushRegister(provider="apns", token="apns-token-of-erin"),
    )
    return person, alice, carol, dave


async def missed_call(caller: Client, callee: Client, handle: str) -> None:
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


REASON = "Investigating a reported harassment case."
WEBHOOK_SECRET = "workload-webhook-secret"
#: Between them, these events carry every field an event has.
REFUSED = frozenset({"call_started", "participant_joined", "ended"})


@dataclass
class Hooks:
    """A webhook receiver that refuses some kinds of event, so they are dead-lettered with every
    field an event may have."""

    url: str = ""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        if event["type"] in REFUSED:
            self.refused.append(event)
            return web.Response(status=410)
        self.accepted.append(event)
        return web.Response(status=200)


@dataclass
class Workload:
    server: Server
    operator: str
    person: Client
    alice: Client
    carol: Client
    dave: Client
    mallory: Client
    #: Ids of the person (``ERASED``) as the store holds them: account and devices.
    person_ids: set[str]


async def operator_http(
    server: Server, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, json=body, headers=headers) as response,
    ):
        raw = await response.read()
        return response.status, json.loads(raw) if raw else None


async def _report(server: Server, reporter: Client, handle: str) -> str:
    body = {"handle": handle, "category": "spam", "text": "Adverts in every call."}
    headers = {"Authorization": f"Bearer {await reporter.token()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/v1/reports", json=body, headers=headers) as r,
    ):
        assert r.status == 202
        report: str = (await r.json())["report"]
        return report


async def _decide(server: Server, op: str, report: str, decision: str) -> None:
    body = {"decision": decision, "statement": "Unsolicited adverts are not allowed."}
    path = f"/v1/operator/reports/{report}/decide"
    status, _ = await operator_http(server, "POST", path, op, body)
    assert status == 200


async def _moderation(w: Workload) -> None:
    """Reports matched and unmatched, handle bans, suspend and unsuspend (the person's handle
    stays banned, the account not suspended)."""
    server, op = w.server, w.operator
    about_person = await _report(server, w.alice, ERASED)
    await _report(server, w.alice, "nobody_at_all")
    by_person = await _report(server, w.person, "mallory")
    await _decide(server, op, about_person, "ban_handle")
    await _decide(server, op, by_person, "ban_handle")
    assert w.person.profile is not None
    account = w.person.profile.account_id
    for action in ("suspend", "unsuspend"):
        path = f"/v1/operator/accounts/{account}/{action}"
        reason = f"{REASON} Account {account}, handle {ERASED}."
        status, _ = await operator_http(server, "POST", path, op, {"reason": reason})
        assert status == 204


async def _operated_calls(w: Workload) -> None:
    """A call revealed and ended by the operator; the person's device disconnected."""
    server, op = w.server, w.operator
    async with Line(w.person) as a, Line(w.alice) as b:
        await a.open()
        await b.open()
        await a.send(m.Invite(handle="alice"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        await a.expect(m.Accepted)
        for action in ("reveal", "end"):
            path = f"/v1/operator/calls/{call_id}/{action}"
            status, _ = await operator_http(server, "POST", path, op, {"reason": REASON})
            assert status in (200, 204)
        await a.expect(m.Ended)
        assert w.person.profile is not None
        profile = w.person.profile
        path = f"/v1/operator/devices/{profile.account_id}/{profile.device_id}/disconnect"
        status, _ = await operator_http(server, "POST", path, op, {"reason": REASON})
        assert status == 204
        with pytest.raises(LineClosed):
            while True:
                await a.receive(5)


async def _group_call(alice: Client) -> None:
    """A group call through the SFU: it leaves only missed calls."""
    async with Line(alice) as line:
        await line.open()
        await line.send(m.GroupInvite(handles=["carol", "dave"]))
        joined = await line.expect(m.Joined)
        await line.send(m.Hangup(call_id=joined.call_id))
        while not isinstance(await line.receive(within=5), m.Ended):
            pass


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Hooks]:
    hooks = Hooks()
    app = web.Application()
    app.router.add_post("/hook", hooks.handle)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    hooks.url = str(receiver.make_url("/hook"))
    try:
        yield hooks
    finally:
        await receiver.close()


def webhook_settings(hooks: Hooks) -> dict[str, Any]:
    return {
        "webhook_urls": (hooks.url,),
        "webhook_secret": WEBHOOK_SECRET,
        "webhook_max_attempts": 1,
        "webhook_poll_s": 0.05,
        "webhook_lease_s": 1.0,
    }


async def until(check: Callable[[], object], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def until_stored(check: Callable[[], Awaitable[object]], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def dead_lettered(store: Store) -> bool:
    """Whether an event of every refused type is in the dead letters."""
    dead = await store.redis.xrange(keys.webhook_dead_letters())
    return {json.loads(fields["payload"])["type"] for _id, fields in dead} >= REFUSED


async def run(server: Server, store: Store) -> Workload:
    person, alice, carol, dave = await scenario(server)
    w = Workload(
        server=server, operator=await operators.create(store, "olga"), person=person,
        alice=alice, carol=carol, dave=dave, mallory=await server.signup("mallory"),
        person_ids=set(),
    )  # fmt: skip
    await _moderation(w)
    await _operated_calls(w)
    await alice.whois("carol")
    with pytest.raises(ClientError):
        await alice.whois("nobody_at_all")
    await _group_call(alice)
    await (await server.signup("leaver")).erase()  # a quarantined handle
    with pytest.raises(ClientError):
        await server.client().recover("carol", "aaaa-bbbb-cccc-dddd-eeee-ffff-gggg-hhhh")
    async with (  # a sign-in challenge nobody answers
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/v1/auth/challenge") as response,
    ):
        assert response.status == 200
    now = store.clock()
    await media_nodes.heartbeat(
        store.redis, MediaNodeInfo(id="m-one", url="http://127.0.0.1:9", max_rooms=50,
                             started_at=now, seen_at=now),
    )  # fmt: skip
    exported = await person.export()
    w.person_ids = {exported.account.id} | {d.id for d in exported.devices}
    return w


@asynccontextmanager
async def live_calls(server: Server, caller: Client, host: Client) -> AsyncIterator[None]:
    """A call still ringing (its record, its node's index, the ringing entry between the two
    accounts) and a group call its host talks in (busy), while the store is read."""
    ringing = Line(caller)
    talking = Line(host)
    try:
        await ringing.open()
        await ringing.send(m.Invite(handle="carol"))
        await ringing.expect(m.Ringing)
        await talking.open()
        await talking.send(m.GroupInvite(handles=["carol"]))
        await talking.expect(m.Joined)
        await server.app[CALLS].flush_store_writes()
        yield
    finally:
        with contextlib.suppress(Exception):
            await ringing.close()
        with contextlib.suppress(Exception):
            await talking.close()
