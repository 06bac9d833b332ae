"""The push senders' pure parts: provider-token renewal, retry delays, what each answer means,
the configuration from the environment, and registrations stored before direct delivery."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from directory import push_tokens
from directory.records import PushRegistration
from directory.storage import keys
from directory.store import Store
from signaling.config import ConfigError, from_env
from signaling.push import apns, fcm
from signaling.push.dispatch import Retry, Verdict, Wake, printable_reason
from signaling.push.settings import APNS_PRODUCTION, APNS_SANDBOX, ApnsSettings

NOW = 1_700_000_000
ACCOUNT = "a" * 32
DEVICE = "d" * 32


def _apns_settings() -> ApnsSettings:
    return ApnsSettings(
        key=ec.generate_private_key(ec.SECP256R1()), key_id="K", team_id="T", bundle_id="b"
    )


def test_provider_tokens_are_renewed_inside_apples_window() -> None:
    tokens = apns.ProviderTokens(_apns_settings())
    first = tokens.get(NOW)
    assert tokens.get(NOW + 39 * 60) == first  # Apple refuses renewals sooner than 20 minutes
    second = tokens.get(NOW + 40 * 60)  # and tokens older than an hour
    assert second != first
    tokens.refused(NOW + 41 * 60)  # refused a minute after it was made: too soon for another
    assert tokens.get(NOW + 41 * 60) == second
    tokens.refused(NOW + 61 * 60)
    assert tokens.get(NOW + 61 * 60) != second


def test_the_provider_token_is_es256_with_key_id_team_and_time() -> None:
    settings = _apns_settings()
    token = apns.provider_token(settings, NOW)
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "K", "typ": "JWT"}
    claims = jwt.decode(token, settings.key.public_key(), algorithms=["ES256"])
    assert claims == {"iss": "T", "iat": NOW}


@pytest.mark.parametrize(
    ("attempt", "retry_after", "delay"),
    [(0, None, 0.5), (1, None, 1.0), (2, None, None), (0, 2.0, 2.0), (0, 60.0, 4.0),
     (1, -3.0, 0.0), (2, 1.0, None)],
)  # fmt: skip
def test_retry_delays_are_bounded(
    attempt: int, retry_after: float | None, delay: float | None
) -> None:
    assert Retry(attempts=3, base_s=0.5, cap_s=4.0).delay(attempt, retry_after) == delay


def _reason(reason: str) -> bytes:
    return json.dumps({"reason": reason}).encode()


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, b"", Verdict.DELIVERED),
        (410, _reason("Unregistered"), Verdict.GONE),
        (410, _reason("ExpiredToken"), Verdict.GONE),
        (400, _reason("BadDeviceToken"), Verdict.GONE),
        (400, _reason("DeviceTokenNotForTopic"), Verdict.FAILED),
        (400, _reason("BadExpirationDate"), Verdict.FAILED),
        (403, _reason("ExpiredProviderToken"), Verdict.AUTH),
        (403, _reason("InvalidProviderToken"), Verdict.AUTH),
        (413, _reason("PayloadTooLarge"), Verdict.FAILED),
        (429, _reason("TooManyRequests"), Verdict.RETRY),
        (500, _reason("InternalServerError"), Verdict.RETRY),
        (503, _reason("ServiceUnavailable"), Verdict.RETRY),
        (502, b"<html>bad gateway</html>", Verdict.RETRY),
    ],
)
def test_what_an_apns_answer_means(status: int, body: bytes, verdict: Verdict) -> None:
    assert apns.classify(status, body)[0] is verdict


def _fcm(status: str, code: str | None = None) -> bytes:
    error: dict[str, object] = {"code": 0, "message": "m", "status": status}
    if code is not None:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
        ]
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, b'{"name": "projects/p/messages/1"}', Verdict.DELIVERED),
        (404, _fcm("NOT_FOUND", "UNREGISTERED"), Verdict.GONE),
        (400, _fcm("INVALID_ARGUMENT", "INVALID_ARGUMENT"), Verdict.GONE),
        (400, _fcm("INVALID_ARGUMENT"), Verdict.GONE),
        (404, _fcm("NOT_FOUND"), Verdict.FAILED),  # e.g. a wrong project, not the token
        (401, _fcm("UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"), Verdict.AUTH),
        (403, _fcm("PERMISSION_DENIED", "SENDER_ID_MISMATCH"), Verdict.AUTH),
        (429, _fcm("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), Verdict.RETRY),
        (503, _fcm("UNAVAILABLE", "UNAVAILABLE"), Verdict.RETRY),
        (500, b"<html>", Verdict.RETRY),
    ],
)
def test_what_an_fcm_answer_means(status: int, body: bytes, verdict: Verdict) -> None:
    assert fcm.classify(status, body)[0] is verdict


def test_reasons_in_logs_are_only_provider_codes() -> None:
    assert printable_reason("BadDeviceToken") == "BadDeviceToken"
    assert printable_reason("token 5e5e5e is bad") == "-"


def test_an_fcm_message_is_high_priority_data_that_expires_with_the_ring() -> None:
    registration = PushRegistration(device_id=DEVICE, provider="fcm", token="t", delivery="direct")
    body = fcm.message(Wake("c" * 32, registration, NOW, NOW + 60))
    assert json.loads(body) == {
        "message": {
            "token": "t",
            "data": {"call_id": "c" * 32, "sent_at": str(NOW)},
            "android": {"priority": "HIGH", "ttl": "60s"},
        }
    }


# --- configuration ----------------------------------------------------------------------------


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def apns_env(tmp_path: Path) -> dict[str, str]:
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    return {
        "CALLBOOK_APNS_KEY_FILE": str(key_file),
        "CALLBOOK_APNS_KEY_ID": "ABC123DEFG",
        "CALLBOOK_APNS_TEAM_ID": "DEF123GHIJ",
        "CALLBOOK_APNS_BUNDLE_ID": "org.example.app",
    }


def test_apns_from_the_environment_keeps_the_key_out_of_reprs(apns_env: dict[str, str]) -> None:
    config = from_env(apns_env)
    assert config.apns is not None and config.apns.url == APNS_PRODUCTION
    pem = Path(apns_env["CALLBOOK_APNS_KEY_FILE"]).read_text().splitlines()[1]
    assert pem not in repr(config) and "EllipticCurvePrivateKey" not in repr(config)
    sandbox = from_env({**apns_env, "CALLBOOK_APNS_ENVIRONMENT": "sandbox"})
    assert sandbox.apns is not None and sandbox.apns.url == APNS_SANDBOX


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"CALLBOOK_APNS_TEAM_ID": ""}, "CALLBOOK_APNS_TEAM_ID"),
        ({"CALLBOOK_APNS_ENVIRONMENT": "staging"}, "production or sandbox"),
        ({"CALLBOOK_APNS_KEY_FILE": "/nonexistent/AuthKey.p8"}, "cannot read"),
        ({"CALLBOOK_PUSH_CA_FILE": "/nonexistent/ca.pem"}, "CALLBOOK_PUSH_CA_FILE"),
    ],
)
def test_apns_configuration_errors(
    apns_env: dict[str, str], change: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env({**apns_env, **change})


def test_an_apns_key_must_be_p256(apns_env: dict[str, str], tmp_path: Path) -> None:
    other = tmp_path / "rsa.p8"
    other.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(ConfigError, match="P-256"):
        from_env({**apns_env, "CALLBOOK_APNS_KEY_FILE": str(other)})
    other.write_text("not a key")
    with pytest.raises(ConfigError, match="PEM"):
        from_env({**apns_env, "CALLBOOK_APNS_KEY_FILE": str(other)})


def _service_account(tmp_path: Path, **fields: str) -> str:
    account = {
        "type": "service_account",
        "private_key_id": "k1",
        "private_key": _pem(
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ).decode(),
        "client_email": "push@p.iam.gserviceaccount.com",
        **fields,
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(account))
    return str(path)


def test_fcm_from_a_service_account_file(tmp_path: Path) -> None:
    path = _service_account(tmp_path, project_id="p", token_uri="https://oauth2.example/token")
    settings = from_env({"CALLBOOK_FCM_SERVICE_ACCOUNT_FILE": path}).fcm
    assert settings is not None
    assert (settings.project_id, settings.token_url) == ("p", "https://oauth2.example/token")
    assert settings.url == "https://fcm.googleapis.com"
    assert "PRIVATE" not in repr(settings) and "RSAPrivateKey" not in repr(settings)
    overridden = from_env(
        {"CALLBOOK_FCM_SERVICE_ACCOUNT_FILE": path, "CALLBOOK_FCM_PROJECT_ID": "q"}
    ).fcm
    assert overridden is not None and overridden.project_id == "q"


def test_fcm_configuration_errors(tmp_path: Path) -> None:
    path = _service_account(tmp_path)  # no project_id
    with pytest.raises(ConfigError, match="CALLBOOK_FCM_PROJECT_ID"):
        from_env({"CALLBOOK_FCM_SERVICE_ACCOUNT_FILE": path})
    Path(path).write_text('{"client_email": "x"}')
    with pytest.raises(ConfigError, match="service account"):
        from_env({"CALLBOOK_FCM_SERVICE_ACCOUNT_FILE": path})


# --- stored registrations ---------------------------------------------------------------------


async def test_a_registration_stored_before_direct_delivery_is_relayed(store: Store) -> None:
    await store.redis.hset(keys.push_tokens(ACCOUNT), DEVICE, '["apns","old-token"]')
    [registration] = await push_tokens.list_all(store, ACCOUNT)
    assert (registration.token, registration.delivery) == ("old-token", "relay")
    # and it is forgotten like any other when its provider says it is gone
    assert await push_tokens.forget(store, ACCOUNT, DEVICE, "old-token")
    assert await push_tokens.list_all(store, ACCOUNT) == []


async def test_forget_removes_only_the_token_refused(store: Store) -> None:
    await store.redis.hset(keys.push_tokens(ACCOUNT), DEVICE, '["fcm","new-token","direct"]')
    assert not await push_tokens.forget(store, ACCOUNT, DEVICE, "old-token")
    assert not await push_tokens.forget(store, ACCOUNT, "e" * 32, "new-token")
    assert [r.token for r in await push_tokens.list_all(store, ACCOUNT)] == ["new-token"]
