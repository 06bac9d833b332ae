"""APNs and FCM wake offline devices directly: checked against local HTTP/2 servers for what
Apple and Google document (paths, headers, the JWTs and their signatures, payloads, errors)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from directory import push_tokens
from directory.records import PushDelivery, PushProvider, PushRegistration
from directory.store import Store
from signaling.metrics import Metrics
from signaling.protocol import messages as m
from signaling.protocol.bodies import PushRegister
from signaling.push import PushAdapter, Retry, build
from signaling.sdk.client import Client, ClientError
from signaling.sdk.line import Line
from tests.conftest import MakeServer, Server
from tests.push_fixtures import (
    ACCESS_TOKEN,
    BUNDLE_ID,
    CLIENT_EMAIL,
    KEY_ID,
    PROJECT,
    TEAM_ID,
    Apns,
    Fcm,
    apns_server,
    fcm_server,
)
from tests.push_servers import Answer, self_signed

APNS_TOKEN = "5e" * 32  # a device token: 64 hex digits
FCM_TOKEN = "fcm:APA91bH-registration-token-of-bobs-phone"


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@pytest.fixture
async def apns(tmp_path: Path, tls: tuple[Path, Path]) -> AsyncIterator[Apns]:
    async with apns_server(tmp_path, tls) as running:
        yield running


@pytest.fixture
async def fcm(tmp_path: Path, tls: tuple[Path, Path]) -> AsyncIterator[Fcm]:
    async with fcm_server(tmp_path, tls) as running:
        yield running


async def _register(
    client: Client, provider: PushProvider, token: str, delivery: PushDelivery | None = "direct"
) -> PushRegistration:
    assert client.profile is not None
    body = (
        PushRegister(provider=provider, token=token)
        if delivery is None
        else PushRegister(provider=provider, token=token, delivery=delivery)
    )
    registration: PushRegistration = await client.request(
        "PUT", f"/v1/devices/{client.profile.device_id}/push", PushRegistration, body
    )
    return registration


async def _ring(server: Server, callee: str) -> str:
    """alice calls ``callee`` (offline) and hangs up once it rang; the call's id."""
    alice = await server.signup("alice")
    async with Line(alice) as line:
        await line.open()
        await line.send(m.Invite(handle=callee))
        call_id = (await line.expect(m.Ringing)).call_id
        await line.send(m.Hangup(call_id=call_id))
    return call_id


def _claims(token: str, key: object, algorithm: str, **options: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(
        token, key, algorithms=[algorithm], options={"verify_aud": False}, **options
    )
    return claims


# --- a call to an offline device: the local provider receives the right push ------------------


async def test_an_offline_iphone_gets_a_voip_push_from_apns(
    make_server: MakeServer, apns: Apns
) -> None:
    server = await make_server(apns=apns.settings, ring_timeout_s=45.0)
    bob = await server.signup("bob")
    registration = await _register(bob, "apns", APNS_TOKEN)
    assert registration.delivery == "direct"
    before = int(time.time())
    call_id = await _ring(server, "bob")
    push = await apns.server.next()
    after = int(time.time())

    assert push.method == "POST"
    assert push.path == f"/3/device/{APNS_TOKEN}"
    assert push.headers[":scheme"] == "https"  # over HTTP/2 (the server speaks nothing else)
    assert push.headers["apns-push-type"] == "voip"
    assert push.headers["apns-topic"] == f"{BUNDLE_ID}.voip"
    assert push.headers["apns-priority"] == "10"
    # Worthless once the call stops ringing: it expires with the ring timeout.
    assert before + 45 <= int(push.headers["apns-expiration"]) <= after + 45

    scheme, bearer = push.headers["authorization"].split(" ")
    assert scheme == "bearer"
    header = jwt.get_unverified_header(bearer)
    assert (header["alg"], header["kid"]) == ("ES256", KEY_ID)
    claims = _claims(bearer, apns.public_key, "ES256")  # verifies the ES256 signature
    assert claims["iss"] == TEAM_ID
    assert isinstance(claims["iat"], int) and before <= claims["iat"] <= after

    payload = json.loads(push.body)
    assert payload == {"call_id": call_id, "sent_at": payload["sent_at"]}
    assert before <= payload["sent_at"] <= after
    assert b"alice" not in push.body  # nothing about the caller


async def test_an_offline_android_phone_gets_a_high_priority_data_message_from_fcm(
    make_server: MakeServer, fcm: Fcm
) -> None:
    server = await make_server(fcm=fcm.settings, ring_timeout_s=30.0)
    bob = await server.signup("bob")
    await _register(bob, "fcm", FCM_TOKEN)
    before = int(time.time())
    call_id = await _ring(server, "bob")
    grant, send = await fcm.server.next(), await fcm.server.next()
    after = int(time.time())

    # The service account's JWT-bearer grant (RFC 7523) at the token endpoint.
    assert (grant.method, grant.path) == ("POST", "/token")
    assert grant.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(urllib.parse.parse_qsl(grant.body.decode()))
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header = jwt.get_unverified_header(form["assertion"])
    assert (header["alg"], header["kid"]) == ("RS256", fcm.settings.private_key_id)
    claims = jwt.decode(
        form["assertion"], fcm.public_key, algorithms=["RS256"], audience=f"{fcm.server.url}/token"
    )
    assert claims["iss"] == CLIENT_EMAIL
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    assert before <= claims["iat"] <= after and claims["exp"] == claims["iat"] + 3600

    # The message, with the access token the endpoint gave.
    assert (send.method, send.path) == ("POST", f"/v1/projects/{PROJECT}/messages:send")
    assert send.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert send.headers["content-type"] == "application/json"
    message = json.loads(send.body)["message"]
    assert message["token"] == FCM_TOKEN
    assert message["android"] == {"priority": "HIGH", "ttl": "30s"}
    assert message["data"] == {"call_id": call_id, "sent_at": message["data"]["sent_at"]}
    assert before <= int(message["data"]["sent_at"]) <= after
    assert "notification" not in message  # a data message: the app decides how to ring
    assert b"alice" not in send.body


async def test_a_provider_that_does_not_answer_holds_up_no_call(
    make_server: MakeServer, apns: Apns
) -> None:
    apns.server.hold.clear()
    server = await make_server(apns=apns.settings)
    bob = await server.signup("bob")
    await _register(bob, "apns", APNS_TOKEN)
    alice = await server.signup("alice")
    async with Line(alice) as line:
        await line.open()
        await line.send(m.Invite(handle="bob"))
        call_id = (await line.expect(m.Ringing)).call_id
        await apns.server.next()  # the push is in flight, unanswered
        await line.send(m.Hangup(call_id=call_id))
        assert (await line.expect(m.Ended)).call_id == call_id
        await line.send(m.Invite(handle="bob"))  # and the next call rings too
        assert (await line.expect(m.Ringing)).call_id != call_id
    apns.server.hold.set()


@pytest.fixture
async def relay() -> AsyncIterator[tuple[asyncio.Queue[bytes], str]]:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(request: web.Request) -> web.Response:
        received.put_nowait(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/wake", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield received, str(server.make_url("/wake"))
    await server.close()


@pytest.mark.parametrize("delivery", [None, "relay"])
async def test_a_registration_without_direct_delivery_still_goes_to_the_relay(
    make_server: MakeServer,
    apns: Apns,
    relay: tuple[asyncio.Queue[bytes], str],
    delivery: PushDelivery | None,
) -> None:
    received, url = relay
    server = await make_server(apns=apns.settings, push_webhook_url=url, push_webhook_secret="s")
    bob = await server.signup("bob")
    registration = await _register(bob, "apns", APNS_TOKEN, delivery)
    assert registration.delivery == "relay"
    call_id = await _ring(server, "bob")
    wake = json.loads(await asyncio.wait_for(received.get(), 10))
    assert (wake["call_id"], wake["token"]) == (call_id, APNS_TOKEN)
    assert apns.server.received == []


async def test_direct_delivery_falls_back_to_the_relay_without_credentials(
    make_server: MakeServer, relay: tuple[asyncio.Queue[bytes], str]
) -> None:
    received, url = relay
    server = await make_server(push_webhook_url=url, push_webhook_secret="s")
    bob = await server.signup("bob")
    await _register(bob, "fcm", FCM_TOKEN, "direct")
    call_id = await _ring(server, "bob")
    wake = json.loads(await asyncio.wait_for(received.get(), 10))
    assert (wake["call_id"], wake["provider"], wake["token"]) == (call_id, "fcm", FCM_TOKEN)


async def test_direct_delivery_is_for_apns_and_fcm(server: Server) -> None:
    bob = await server.signup("bob")
    with pytest.raises(ClientError) as refused:
        await _register(bob, "webhook", "token", "direct")
    assert (refused.value.status, refused.value.code) == (422, "invalid_request")
    assert (await bob.export()).push_registrations == []


async def test_the_export_shows_the_delivery(server: Server) -> None:
    bob = await server.signup("bob")
    await _register(bob, "apns", APNS_TOKEN, "direct")
    [exported] = (await bob.export()).push_registrations
    assert (exported.provider, exported.token, exported.delivery) == ("apns", APNS_TOKEN, "direct")


# --- answers of the providers: what happens to the registration ------------------------------


async def _enrolled(server: Server, provider: PushProvider, token: str) -> tuple[str, str]:
    bob = await server.signup("bob")
    await _register(bob, provider, token)
    assert bob.profile is not None
    return bob.profile.account_id, bob.profile.device_id


def _adapter(store: Store, metrics: Metrics, apns: Apns | None, fcm: Fcm | None) -> PushAdapter:
    return build(
        store,
        apns=apns.settings if apns else None,
        fcm=fcm.settings if fcm else None,
        retry=Retry(attempts=3, base_s=0.01),
        metrics=metrics,
    )


def _count(metrics: Metrics, provider: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "callbook_push_wakeups_total", {"provider": provider, "outcome": outcome}
    )
    return value or 0.0


def _apns_error(status: int, reason: str) -> Answer:
    body = {"reason": reason}
    if status == 410:
        body["timestamp"] = "1700000000000"
    return Answer(status, json.dumps(body).encode(), (("content-type", "application/json"),))


def _fcm_error(status: int, rpc_status: str, code: str | None) -> Answer:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
    error = {"code": status, "message": "...", "status": rpc_status}
    if code is not None:
        error["details"] = details
    return Answer(status, json.dumps({"error": error}).encode())


#: (answers in order, requests expected, outcome, registration kept)
APNS_CASES = {
    "unregistered": ([_apns_error(410, "Unregistered")], 1, "unregistered", False),
    "bad device token": ([_apns_error(400, "BadDeviceToken")], 1, "unregistered", False),
    "provider token refused": ([_apns_error(403, "InvalidProviderToken")], 1, "auth_failed", True),
    "wrong topic": ([_apns_error(400, "DeviceTokenNotForTopic")], 1, "failed", True),
    "unavailable, then delivered": ([_apns_error(503, "ServiceUnavailable")], 2, "delivered", True),
    "too many requests, always": ([_apns_error(429, "TooManyRequests")] * 3, 3, "failed", True),
    "internal error, then delivered": ([_apns_error(500, "InternalServerError")], 2, "delivered",
                                       True),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(APNS_CASES))
async def test_apns_answers(
    server: Server, store: Store, apns: Apns, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    answers, requests, outcome, kept = APNS_CASES[case]
    apns.server.script["/3/device/"] = list(answers)
    account_id, _ = await _enrolled(server, "apns", APNS_TOKEN)
    registrations = await push_tokens.list_all(store, account_id)
    metrics = Metrics()
    adapter = _adapter(store, metrics, apns, None)
    with caplog.at_level(logging.DEBUG, logger="callbook.push"):
        await adapter.wake("c" * 32, account_id, registrations)
    await adapter.close()
    assert len(apns.server.received) == requests
    assert _count(metrics, "apns", outcome) == 1
    assert (await push_tokens.list_all(store, account_id) == registrations) is kept
    assert APNS_TOKEN not in caplog.text and account_id not in caplog.text


FCM_CASES = {
    "unregistered": ([_fcm_error(404, "NOT_FOUND", "UNREGISTERED")], 1, "unregistered", False),
    "invalid token": ([_fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")], 1,
                      "unregistered", False),
    "permission denied": ([_fcm_error(403, "PERMISSION_DENIED", None)], 1, "auth_failed", True),
    "sender id mismatch": ([_fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")], 1,
                           "auth_failed", True),
    "unavailable, then delivered": ([_fcm_error(503, "UNAVAILABLE", "UNAVAILABLE")], 2,
                                    "delivered", True),
    "quota, always": ([_fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")] * 3, 3, "failed",
                      True),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(FCM_CASES))
async def test_fcm_answers(
    server: Server, store: Store, fcm: Fcm, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    answers, requests, outcome, kept = FCM_CASES[case]
    fcm.server.script["/v1/"] = list(answers)
    account_id, _ = await _enrolled(server, "fcm", FCM_TOKEN)
    registrations = await push_tokens.list_all(store, account_id)
    metrics = Metrics()
    adapter = _adapter(store, metrics, None, fcm)
    with caplog.at_level(logging.DEBUG, logger="callbook.push"):
        await adapter.wake("c" * 32, account_id, registrations)
    await adapter.close()
    sends = [r for r in fcm.server.received if r.path.startswith("/v1/")]
    assert len(sends) == requests
    assert _count(metrics, "fcm", outcome) == 1
    assert (await push_tokens.list_all(store, account_id) == registrations) is kept
    assert FCM_TOKEN not in caplog.text and ACCESS_TOKEN not in caplog.text


async def test_a_refused_service_account_is_an_auth_failure(
    server: Server, store: Store, fcm: Fcm
) -> None:
    fcm.server.script["/token"] = [Answer(400, b'{"error":"invalid_grant"}')]
    account_id, _ = await _enrolled(server, "fcm", FCM_TOKEN)
    metrics = Metrics()
    adapter = _adapter(store, metrics, None, fcm)
    await adapter.wake("c" * 32, account_id, await push_tokens.list_all(store, account_id))
    await adapter.close()
    assert [r.path for r in fcm.server.received] == ["/token"]
    assert _count(metrics, "fcm", "auth_failed") == 1
    assert len(await push_tokens.list_all(store, account_id)) == 1


async def test_a_token_replaced_meanwhile_is_kept(server: Server, store: Store, apns: Apns) -> None:
    apns.server.script["/3/device/"] = [_apns_error(410, "Unregistered")]
    bob = await server.signup("bob")
    stale = await _register(bob, "apns", APNS_TOKEN)
    assert bob.profile is not None
    # APNs refuses the stale token after the phone registered a fresh one: that one stays.
    await _register(bob, "apns", "ab" * 32)
    adapter = _adapter(store, Metrics(), apns, None)
    await adapter.wake("c" * 32, bob.profile.account_id, [stale])
    await adapter.close()
    [kept] = await push_tokens.list_all(store, bob.profile.account_id)
    assert kept.token == "ab" * 32


async def test_each_registration_goes_to_its_own_provider(
    store: Store, apns: Apns, fcm: Fcm
) -> None:
    registrations = [
        PushRegistration(device_id="d" * 32, provider="apns", token=APNS_TOKEN, delivery="direct"),
        PushRegistration(device_id="e" * 32, provider="fcm", token=FCM_TOKEN, delivery="direct"),
    ]
    metrics = Metrics()
    adapter = _adapter(store, metrics, apns, fcm)
    await adapter.wake("c" * 32, "a" * 32, registrations)
    await adapter.close()
    assert [r.path for r in apns.server.received] == [f"/3/device/{APNS_TOKEN}"]
    assert [r.path for r in fcm.server.received][-1] == f"/v1/projects/{PROJECT}/messages:send"
    assert _count(metrics, "apns", "delivered") == _count(metrics, "fcm", "delivered") == 1
