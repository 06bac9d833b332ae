"""A ``callbook serve`` process configured for APNs and FCM by its environment alone wakes
offline phones through the local providers; a refused key is logged without tokens and counted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from directory.records import PushProvider
from signaling.protocol import messages as m
from signaling.protocol.bodies import PushRegister
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.push_fixtures import KEY_ID, PROJECT, Apns, Fcm, apns_server, fcm_server
from tests.push_servers import Answer, self_signed
from tests.test_log_privacy_process import LoggingNode

pytestmark = pytest.mark.slow

APNS_TOKEN = "7a" * 32
FCM_TOKEN = "fcm:APA91b-process-test-token"


@pytest.fixture
async def providers(tmp_path: Path) -> AsyncIterator[tuple[Apns, Fcm]]:
    tls = self_signed(tmp_path)
    async with apns_server(tmp_path, tls) as apns, fcm_server(tmp_path, tls) as fcm:
        yield apns, fcm


@pytest.fixture
def node(
    redis_url: str,
    tmp_path: Path,
    providers: tuple[Apns, Fcm],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LoggingNode]:
    apns, fcm = providers
    for name, value in {**apns.env, **fcm.env}.items():
        monkeypatch.setenv(name, value)
    running = LoggingNode(redis_url, tmp_path / "serve.log")
    try:
        yield running
    finally:
        running.stop()


async def _callee(url: str, handle: str, provider: PushProvider, token: str) -> Client:
    client = Client(url)
    await client.signup(handle)
    assert client.profile is not None
    await client.request(
        "PUT",
        f"/v1/devices/{client.profile.device_id}/push",
        None,
        PushRegister(provider=provider, token=token, delivery="direct"),
    )
    return client


async def test_a_served_node_wakes_phones_through_apns_and_fcm(
    node: LoggingNode, providers: tuple[Apns, Fcm], store: object
) -> None:
    apns, fcm = providers
    # Apple refuses the provider token: the node logs it, counts it, and keeps the registration.
    apns.server.script["/3/device/"] = [Answer(403, b'{"reason":"InvalidProviderToken"}')]
    await node.ready()
    bob = await _callee(node.url, "bob_push", "apns", APNS_TOKEN)
    carol = await _callee(node.url, "carol_push", "fcm", FCM_TOKEN)
    alice = Client(node.url)
    await alice.signup("alice_push")
    call_ids = []
    async with Line(alice) as line:
        await line.open()
        for callee in ("bob_push", "carol_push"):
            await line.send(m.Invite(handle=callee))
            call_ids.append((await line.expect(m.Ringing)).call_id)
            await line.send(m.Hangup(call_id=call_ids[-1]))
            await line.expect(m.Ended)
    to_apple = await apns.server.next()
    assert to_apple.path == f"/3/device/{APNS_TOKEN}"
    assert json.loads(to_apple.body)["call_id"] == call_ids[0]
    grant, to_google = await fcm.server.next(), await fcm.server.next()
    assert grant.path == "/token"
    assert to_google.path == f"/v1/projects/{PROJECT}/messages:send"
    assert json.loads(to_google.body)["message"]["data"]["call_id"] == call_ids[1]

    # The providers have the requests; the node counts each outcome once their answers are in.
    counted = [
        'callbook_push_wakeups_total{outcome="auth_failed",provider="apns"} 1.0',
        'callbook_push_wakeups_total{outcome="delivered",provider="fcm"} 1.0',
    ]
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(node.url + "/metrics") as response:
                metrics = await response.text()
            if all(line in metrics for line in counted) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    for line in counted:
        assert line in metrics
    assert [r.token for r in (await bob.export()).push_registrations] == [APNS_TOKEN]
    for client in (alice, bob, carol):
        await client.close()

    text = node.stop()
    entries = [json.loads(raw) for raw in text.splitlines()]
    refused = [e for e in entries if "refused our credentials" in str(e.get("msg", ""))]
    assert refused and "InvalidProviderToken" in str(refused[0])
    for secret in (APNS_TOKEN, FCM_TOKEN, KEY_ID, "PRIVATE KEY", "ya29."):
        assert secret not in text, secret
