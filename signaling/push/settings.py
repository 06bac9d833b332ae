"""Credentials and endpoints of the push providers, read once at start-up.

A missing or unreadable key file is a configuration error: the server does not start, rather
than ring nobody. Keys never appear in a ``repr`` (and so in no log line).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

APNS_PRODUCTION = "https://api.push.apple.com"
APNS_SANDBOX = "https://api.sandbox.push.apple.com"
FCM_URL = "https://fcm.googleapis.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"


class PushSettingsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ApnsSettings:
    """Token-based authentication: a .p8 signing key of the team, not a certificate."""

    key: ec.EllipticCurvePrivateKey = field(repr=False)
    key_id: str
    team_id: str
    #: The app's bundle id; VoIP pushes go to the topic ``<bundle id>.voip``.
    bundle_id: str
    url: str = APNS_PRODUCTION
    #: CA certificates to trust instead of the default ones (a test server, an egress proxy).
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class FcmSettings:
    """FCM HTTP v1 with a service account's OAuth2 tokens (JWT-bearer grant)."""

    project_id: str
    client_email: str
    private_key_id: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    url: str = FCM_URL
    token_url: str = GOOGLE_TOKEN_URL
    ca_file: Path | None = None


class _ServiceAccount(msgspec.Struct):
    """The fields we use of the JSON key file Google Cloud issues for a service account."""

    client_email: str
    private_key: str
    private_key_id: str = ""
    project_id: str = ""
    token_uri: str = GOOGLE_TOKEN_URL


def _read(path: str, name: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PushSettingsError(f"{name}: cannot read {path} ({exc.strerror}).") from exc


def _required(env: Mapping[str, str], names: tuple[str, ...], needed_by: str) -> list[str]:
    missing = [name for name in names if not env.get(name)]
    if missing:
        raise PushSettingsError(f"{needed_by} needs {', '.join(missing)}.")
    return [env[name] for name in names]


def _ca_file(env: Mapping[str, str]) -> Path | None:
    raw = env.get("CALLBOOK_PUSH_CA_FILE") or None
    if raw is not None and not Path(raw).is_file():
        raise PushSettingsError(f"CALLBOOK_PUSH_CA_FILE: no file at {raw}.")
    return Path(raw) if raw else None


def apns_from_env(env: Mapping[str, str]) -> ApnsSettings | None:
    path = env.get("CALLBOOK_APNS_KEY_FILE") or None
    if path is None:
        return None
    key_id, team_id, bundle_id = _required(
        env,
        ("CALLBOOK_APNS_KEY_ID", "CALLBOOK_APNS_TEAM_ID", "CALLBOOK_APNS_BUNDLE_ID"),
        "CALLBOOK_APNS_KEY_FILE",
    )
    pem = _read(path, "CALLBOOK_APNS_KEY_FILE")
    try:
        key = serialization.load_pem_private_key(pem, None)
    except (ValueError, TypeError) as exc:
        raise PushSettingsError("CALLBOOK_APNS_KEY_FILE is not a PEM (.p8) private key.") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise PushSettingsError("CALLBOOK_APNS_KEY_FILE must hold a P-256 key (ES256).")
    environment = env.get("CALLBOOK_APNS_ENVIRONMENT") or "production"
    if environment not in ("production", "sandbox"):
        raise PushSettingsError(
            f"CALLBOOK_APNS_ENVIRONMENT is production or sandbox, not {environment!r}."
        )
    default = APNS_PRODUCTION if environment == "production" else APNS_SANDBOX
    return ApnsSettings(
        key=key,
        key_id=key_id,
        team_id=team_id,
        bundle_id=bundle_id,
        url=(env.get("CALLBOOK_APNS_URL") or default).rstrip("/"),
        ca_file=_ca_file(env),
    )


def fcm_from_env(env: Mapping[str, str]) -> FcmSettings | None:
    path = env.get("CALLBOOK_FCM_SERVICE_ACCOUNT_FILE") or None
    if path is None:
        return None
    raw = _read(path, "CALLBOOK_FCM_SERVICE_ACCOUNT_FILE")
    try:
        account = msgspec.json.decode(raw, type=_ServiceAccount)
        key = serialization.load_pem_private_key(account.private_key.encode(), None)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, TypeError) as exc:
        raise PushSettingsError(
            "CALLBOOK_FCM_SERVICE_ACCOUNT_FILE is not a service account's JSON key."
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PushSettingsError("CALLBOOK_FCM_SERVICE_ACCOUNT_FILE must hold an RSA key.")
    project = env.get("CALLBOOK_FCM_PROJECT_ID") or account.project_id
    if not project:
        raise PushSettingsError(
            "CALLBOOK_FCM_SERVICE_ACCOUNT_FILE names no project_id: set CALLBOOK_FCM_PROJECT_ID."
        )
    return FcmSettings(
        project_id=project,
        client_email=account.client_email,
        private_key_id=account.private_key_id,
        private_key=key,
        url=(env.get("CALLBOOK_FCM_URL") or FCM_URL).rstrip("/"),
        token_url=env.get("CALLBOOK_FCM_TOKEN_URL") or account.token_uri,
        ca_file=_ca_file(env),
    )
