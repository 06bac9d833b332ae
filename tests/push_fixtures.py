"""Credentials made per test and local APNs/FCM servers configured as an operator would."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signaling.push.settings import ApnsSettings, FcmSettings, apns_from_env, fcm_from_env
from tests.push_servers import Answer, ProviderServer, Received

KEY_ID = "ABC123DEFG"
TEAM_ID = "DEF123GHIJ"
BUNDLE_ID = "org.example.callbook"
PROJECT = "callbook-test"
CLIENT_EMAIL = "push@callbook-test.iam.gserviceaccount.com"
ACCESS_TOKEN = "ya29.local-access-token"


@dataclass
class Apns:
    server: ProviderServer
    settings: ApnsSettings
    public_key: ec.EllipticCurvePublicKey
    env: dict[str, str]


@dataclass
class Fcm:
    server: ProviderServer
    settings: FcmSettings
    public_key: rsa.RSAPublicKey
    env: dict[str, str]


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _apns_answer(request: Received) -> Answer:
    return Answer(200, headers=(("apns-id", "EC1BF194-B3B2-424A-9A29-6CC5A1C6B1F5"),))


def _fcm_answer(request: Received) -> Answer:
    if request.path == "/token":
        body = {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}
        return Answer(200, json.dumps(body).encode(), (("content-type", "application/json"),))
    name = f"projects/{PROJECT}/messages/0:1700000000000000%31bd1c9631bd1c96"
    return Answer(200, json.dumps({"name": name}).encode(), (("content-type", "application/json"),))


@contextlib.asynccontextmanager
async def apns_server(directory: Path, tls: tuple[Path, Path]) -> AsyncIterator[Apns]:
    """A local APNs, and the settings of an operator pointing at it (from the environment)."""
    server = ProviderServer(_apns_answer)
    await server.start(*tls)
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = directory / f"AuthKey_{KEY_ID}.p8"
    key_file.write_bytes(_pem(key))
    env = {
        "CALLBOOK_APNS_KEY_FILE": str(key_file),
        "CALLBOOK_APNS_KEY_ID": KEY_ID,
        "CALLBOOK_APNS_TEAM_ID": TEAM_ID,
        "CALLBOOK_APNS_BUNDLE_ID": BUNDLE_ID,
        "CALLBOOK_APNS_URL": server.url,
        "CALLBOOK_PUSH_CA_FILE": str(tls[0]),
    }
    settings = apns_from_env(env)
    assert settings is not None
    try:
        yield Apns(server, settings, key.public_key(), env)
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def fcm_server(directory: Path, tls: tuple[Path, Path]) -> AsyncIterator[Fcm]:
    """A local FCM and OAuth token endpoint, and a service account's key file for them."""
    server = ProviderServer(_fcm_answer)
    await server.start(*tls)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": _pem(key).decode(),
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000000",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    account_file = directory / "service-account.json"
    account_file.write_text(json.dumps(account))
    env = {
        "CALLBOOK_FCM_SERVICE_ACCOUNT_FILE": str(account_file),
        "CALLBOOK_FCM_URL": server.url,
        "CALLBOOK_FCM_TOKEN_URL": f"{server.url}/token",
        "CALLBOOK_PUSH_CA_FILE": str(tls[0]),
    }
    settings = fcm_from_env(env)
    assert settings is not None
    try:
        yield Fcm(server, settings, key.public_key(), env)
    finally:
        await server.close()
