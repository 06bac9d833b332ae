"""Offline devices are woken through the push adapter; missed calls are kept, exported, erased."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from directory.records import PushRegistration
from signaling.protocol import messages as m
from signaling.protocol.bodies import MissedCalls, PushRegister
from signaling.push import SIGNATURE_HEADER, sign
from signaling.sdk.client import Client, ClientError
from signaling.sdk.line import Line
from tests.conftest import MakeServer

SECRET = "push-relay-secret"


class Relay:
    """A push relay as an operator would run it: records what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), request.headers.get(SIGNATURE_HEADER, "")))
        self.arrived.set()
        return web.Response(status=204)


@pytest.fixture
async def relay() -> AsyncIterator[tuple[Relay, str]]:
    relay = Relay()
    app = web.Application()
    app.router.add_post("/wake", relay.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield relay, str(server.make_url("/wake"))
    await server.close()


async def _register(client: Client, token: str) -> PushRegistration:
    assert client.profile is not None
    registration: PushRegistration = await client.request(
        "PUT",
        f"/v1/devices/{client.profile.device_id}/push",
        PushRegistration,
        PushRegister(provider="fcm", token=token),
    )
    return registration


async def test_an_offline_callee_is_woken_by_a_signed_webhook(
    make_server: MakeServer, relay: tuple[Relay, str]
) -> None:
    recorder, url = relay
    server = await make_server(push_webhook_url=url, push_webhook_secret=SECRET)
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await _register(bob, "fcm-token-of-bobs-phone")
    async with Line(alice) as a:
        await a.open()
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        await asyncio.wait_for(recorder.arrived.wait(), 5)
        await a.send(m.Hangup(call_id=call_id))
    [(body, signature)] = recorder.received
    assert signature == sign(SECRET.encode(), body)
    wake = json.loads(body)
    assert (wake["call_id"], wake["token"], wake["provider"]) == (
        call_id, "fcm-token-of-bobs-phone", "fcm",
    )  # fmt: skip
    assert "alice" not in body.decode()  # the relay learns nothing about the caller


async def test_no_wake_up_for_a_caller_who_may_not_ring(
    make_server: MakeServer, relay: tuple[Relay, str]
) -> None:
    recorder, url = relay
    server = await make_server(push_webhook_url=url, push_webhook_secret=SECRET, ring_timeout_s=0.3)
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await _register(bob, "token")
    await bob.block("alice")
    async with Line(alice) as a:
        await a.open()
        await a.send(m.Invite(handle="bob"))
        await a.expect(m.Ringing)
        assert (await a.expect(m.Ended)).reason == "no_answer"
    assert recorder.received == []
    missed: MissedCalls = await bob.request("GET", "/v1/calls/missed", MissedCalls)
    assert missed.missed_calls == []  # a blocked caller leaves no trace either


async def test_push_registrations_and_missed_calls_are_exported_and_erased(
    make_server: MakeServer,
) -> None:
    server = await make_server(ring_timeout_s=0.3)
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await _register(bob, "bobs-token")
    async with Line(alice) as a:
        await a.open()
        await a.send(m.Invite(handle="bob"))
        await a.expect(m.Ringing)
        await a.expect(m.Ended)
    for _ in range(50):
        exported = await bob.export()
        if exported.missed_calls:
            break
        await asyncio.sleep(0.02)
    assert [c.caller_handle for c in exported.missed_calls] == ["alice"]
    assert [r.token for r in exported.push_registrations] == ["bobs-token"]

    # The caller erases their account: the entry naming them goes from bob's list.
    await alice.erase()
    missed: MissedCalls = await bob.request("GET", "/v1/calls/missed", MissedCalls)
    assert missed.missed_calls == []

    await bob.request("DELETE", "/v1/calls/missed")
    assert bob.profile is not None
    await bob.request("DELETE", f"/v1/devices/{bob.profile.device_id}/push")
    assert (await bob.export()).push_registrations == []
    with pytest.raises(ClientError) as gone:
        await bob.request("DELETE", f"/v1/devices/{bob.profile.device_id}/push")
    assert gone.value.code == "not_found"
