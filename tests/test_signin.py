"""Challenge-response sign-in and access tokens: every way a token can be wrong gets a 401."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from directory import keyring
from directory.store import Store
from signaling.protocol.bodies import DeviceEnrollment
from signaling.protocol.records import Device
from signaling.protocol.signing import signin_message
from signaling.sdk.client import Client, ClientError, Profile, _b64, new_device_key
from signaling.tokens import ISSUER, USER_AUDIENCE, Principal, TokenService
from tests.conftest import Server


async def _get(server: Server, path: str, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + path, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def _post(server: Server, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(server.url + path, json=body) as response:
        return response.status, await response.json(content_type=None)


async def _signed_request(client: Client, key: Ed25519PrivateKey, nonce: str) -> dict[str, Any]:
    profile = client.profile
    assert profile is not None
    message = signin_message(profile.account_id, profile.device_id, nonce)
    return {
        "account_id": profile.account_id,
        "device_id": profile.device_id,
        "nonce": nonce,
        "signature": _b64(key.sign(message)),
    }


async def _nonce(server: Server) -> str:
    status, body = await _post(server, "/v1/auth/challenge", {})
    assert status == 200 and body["expires_in"] == 60
    nonce: str = body["nonce"]
    return nonce


def _claims(client: Client, **changes: Any) -> dict[str, Any]:
    assert client.profile is not None
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": USER_AUDIENCE,
        "sub": client.profile.account_id,
        "did": client.profile.device_id,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return claims


async def _server_key(store: Store) -> tuple[str, Ed25519PrivateKey]:
    [current, *_] = await keyring.load(store)
    raw = base64.urlsafe_b64decode(current.private_key)
    return current.kid, Ed25519PrivateKey.from_private_bytes(raw)


async def test_signed_challenge_yields_a_working_token(server: Server) -> None:
    alice = await server.signup("alice")
    assert alice.profile is not None
    nonce = await _nonce(server)
    status, body = await _post(
        server, "/v1/auth/token", await _signed_request(alice, alice.profile.key(), nonce)
    )
    assert status == 200, body
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 900
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "EdDSA" and header["kid"]
    assert (await _get(server, "/v1/me", body["access_token"]))[0] == 200


async def test_replayed_nonce_is_refused(server: Server) -> None:
    alice = await server.signup("alice")
    assert alice.profile is not None
    request = await _signed_request(alice, alice.profile.key(), await _nonce(server))
    assert (await _post(server, "/v1/auth/token", request))[0] == 200
    status, body = await _post(server, "/v1/auth/token", request)
    assert (status, body["code"]) == (401, "bad_challenge")


async def test_unknown_nonce_is_refused(server: Server) -> None:
    alice = await server.signup("alice")
    assert alice.profile is not None
    request = await _signed_request(alice, alice.profile.key(), "n" * 43)
    status, body = await _post(server, "/v1/auth/token", request)
    assert (status, body["code"]) == (401, "bad_challenge")


async def test_signature_by_another_key_is_refused(server: Server) -> None:
    alice = await server.signup("alice")
    request = await _signed_request(alice, Ed25519PrivateKey.generate(), await _nonce(server))
    status, body = await _post(server, "/v1/auth/token", request)
    assert (status, body["code"]) == (401, "bad_signature")


async def test_signature_over_another_accounts_message_is_refused(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    assert alice.profile is not None and bob.profile is not None
    nonce = await _nonce(server)
    # Alice signs a perfectly valid message, then presents it as Bob's device.
    request = await _signed_request(alice, alice.profile.key(), nonce)
    request["account_id"], request["device_id"] = bob.profile.account_id, bob.profile.device_id
    status, body = await _post(server, "/v1/auth/token", request)
    assert (status, body["code"]) == (401, "bad_signature")


async def test_expired_token_is_refused(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    await alice.token()
    kid, key = await _server_key(store)
    past = int(time.time()) - 3600
    token = jwt.encode(
        _claims(alice, iat=past, exp=past + 600), key, algorithm="EdDSA", headers={"kid": kid}
    )
    status, body = await _get(server, "/v1/me", token)
    assert (status, body["code"]) == (401, "token_expired")


async def test_token_signed_by_a_foreign_key_is_refused(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    await alice.token()
    kid, _ = await _server_key(store)
    forged = jwt.encode(
        _claims(alice), Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid}
    )
    status, body = await _get(server, "/v1/me", forged)
    assert (status, body["code"]) == (401, "token_invalid")


@pytest.mark.parametrize("alg", ["none", "HS256"])
async def test_alg_none_and_alg_confusion_are_refused(
    server: Server, store: Store, alg: str
) -> None:
    alice = await server.signup("alice")
    await alice.token()
    kid, _ = await _server_key(store)
    header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(_claims(alice)).encode())
    token = f"{header}.{payload}." if alg == "none" else f"{header}.{payload}.{_b64(b'x' * 32)}"
    status, body = await _get(server, "/v1/me", token)
    assert (status, body["code"]) == (401, "token_invalid")


async def test_user_token_for_another_audience_is_refused(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    await alice.token()
    kid, key = await _server_key(store)
    token = jwt.encode(
        _claims(alice, aud="callbook:operator"), key, algorithm="EdDSA", headers={"kid": kid}
    )
    status, body = await _get(server, "/v1/me", token)
    assert (status, body["code"]) == (401, "token_invalid")


async def test_missing_and_garbage_tokens(server: Server) -> None:
    assert (await _get(server, "/v1/me", None))[1]["code"] == "token_missing"
    assert (await _get(server, "/v1/me", "not.a.jwt"))[1]["code"] == "token_invalid"
    assert (await _get(server, "/v1/me", "x" * 5000))[1]["code"] == "token_invalid"


async def test_revoked_device_is_refused_on_its_next_request(server: Server) -> None:
    alice = await server.signup("alice")
    laptop = server.client()
    key, public = new_device_key()
    device = await _add_device(alice, public)
    assert alice.profile is not None
    laptop.profile = Profile(
        server=server.url,
        account_id=alice.profile.account_id,
        device_id=device,
        handle="alice",
        private_key=_b64(key.private_bytes_raw()),
    )
    laptop_token = await laptop.token()
    assert (await _get(server, "/v1/me", laptop_token))[0] == 200

    await alice.request("DELETE", f"/v1/devices/{device}")
    # The token has not expired, yet the very next request is refused.
    status, body = await _get(server, "/v1/me", laptop_token)
    assert (status, body["code"]) == (401, "device_revoked")
    with pytest.raises(ClientError) as again:
        await laptop.sign_in()
    assert again.value.code == "unknown_device"


async def _add_device(client: Client, public_key: str) -> str:
    device: Device = await client.request(
        "POST", "/v1/devices", Device, DeviceEnrollment(name="laptop", public_key=public_key)
    )
    return device.id


async def test_rotated_key_keeps_verifying_until_its_tokens_expire(store: Store) -> None:
    now = [time.time()]
    clocked = Store(store.redis, store.config, clock=lambda: now[0], secret=store.secret)
    tokens = TokenService(clocked, ttl_s=600, rotate_after_s=100)
    await tokens.refresh()
    principal = Principal(account_id="a" * 32, device_id="d" * 32)
    old_token = await tokens.issue(principal)
    old_kid = jwt.get_unverified_header(old_token)["kid"]

    now[0] += 150
    await tokens.refresh()
    new_token = await tokens.issue(principal)
    assert jwt.get_unverified_header(new_token)["kid"] != old_kid
    assert await tokens.verify(old_token) == principal

    # Another node that only ever saw the new key still verifies the old token via the store.
    other = TokenService(clocked, ttl_s=600, rotate_after_s=100)
    await other.refresh()
    assert await other.verify(old_token) == principal

    now[0] += 100 + 600 + 61
    await tokens.refresh()
    assert old_kid not in {k.kid for k in await keyring.load(store)}
