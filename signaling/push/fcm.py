"""High-priority data messages through FCM HTTP v1, for Android's ConnectionService.

``POST /v1/projects/<project>/messages:send`` with an OAuth2 access token of the service
account, got by the JWT-bearer grant (RFC 7523): an RS256 assertion with ``iss`` the service
account, ``scope`` firebase.messaging, ``aud`` the token endpoint, an hour of life. A data
message (no notification) with ``android.priority: HIGH`` wakes the app even in Doze; its
``ttl`` is the ring time, after which the push is worthless.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import msgspec

from signaling.push import http
from signaling.push.dispatch import Result, Verdict, Wake
from signaling.push.settings import FcmSettings

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: An access token is renewed this long before Google says it expires.
_EARLY_S = 300

#: Codes for which the registration token will never work again (Firebase's guidance on
#: managing registration tokens: remove them).
_GONE = {"UNREGISTERED", "INVALID_ARGUMENT"}


class _Detail(msgspec.Struct, rename="camel"):
    error_code: str = ""


class _Status(msgspec.Struct):
    status: str = ""
    details: list[_Detail] = msgspec.field(default_factory=list)


class _Error(msgspec.Struct):
    error: _Status = msgspec.field(default_factory=_Status)


class _Token(msgspec.Struct):
    access_token: str
    expires_in: int = 3600


class AndroidConfig(msgspec.Struct, kw_only=True):
    priority: str
    ttl: str


class Message(msgspec.Struct, kw_only=True):
    token: str
    #: Values of a data message are strings.
    data: dict[str, str]
    android: AndroidConfig


class Send(msgspec.Struct, kw_only=True):
    message: Message


def assertion(settings: FcmSettings, now: int) -> str:
    headers = {"kid": settings.private_key_id} if settings.private_key_id else None
    claims = {
        "iss": settings.client_email,
        "scope": SCOPE,
        "aud": settings.token_url,
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, settings.private_key, algorithm="RS256", headers=headers)


def message(wake: Wake) -> bytes:
    ttl = max(0, wake.expires_at - wake.sent_at)
    return msgspec.json.encode(
        Send(
            message=Message(
                token=wake.registration.token,
                data={"call_id": wake.call_id, "sent_at": str(wake.sent_at)},
                android=AndroidConfig(priority="HIGH", ttl=f"{ttl}s"),
            )
        )
    )


def error_code(body: bytes) -> str:
    """FCM's own code (``UNREGISTERED``) when it gives one, else the RPC status."""
    try:
        status = msgspec.json.decode(body, type=_Error).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""
    codes = [d.error_code for d in status.details if d.error_code]
    return codes[0] if codes else status.status


def classify(status: int, body: bytes) -> tuple[Verdict, str]:
    if status == 200:
        return Verdict.DELIVERED, ""
    code = error_code(body)
    if code in _GONE and status in (400, 404):
        return Verdict.GONE, code
    if status in (401, 403):
        return Verdict.AUTH, code
    if http.is_retryable(status):
        return Verdict.RETRY, code
    return Verdict.FAILED, code


class _Refused(Exception):
    def __init__(self, result: Result) -> None:
        self.result = result


class AccessTokens:
    """The service account's current access token; one fetch at a time."""

    def __init__(self, settings: FcmSettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        self._token = ""
        self._until = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        async with self._lock:
            now = time.time()
            if not self._token or now >= self._until:
                self._token, self._until = await self._fetch(int(now))
            return self._token

    def refused(self) -> None:
        self._token = ""

    async def _fetch(self, now: int) -> tuple[str, float]:
        form = {"grant_type": GRANT_TYPE, "assertion": assertion(self._settings, now)}
        try:
            response = await self._client.post(self._settings.token_url, data=form)
        except httpx.HTTPError as exc:
            raise _Refused(Result(Verdict.RETRY)) from exc
        status = response.status_code
        if status != 200:
            retry = http.is_retryable(status)
            verdict = Verdict.RETRY if retry else Verdict.AUTH
            raise _Refused(Result(verdict, status, "token_endpoint"))
        try:
            token = msgspec.json.decode(response.content, type=_Token)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _Refused(Result(Verdict.AUTH, status, "token_endpoint")) from exc
        return token.access_token, now + max(0, token.expires_in - _EARLY_S)


class FcmSender:
    name = "fcm"

    def __init__(self, settings: FcmSettings) -> None:
        self._settings = settings
        self._client = http.client(settings.ca_file)
        self._tokens = AccessTokens(settings, self._client)
        self._url = f"{settings.url}/v1/projects/{settings.project_id}/messages:send"

    async def send(self, wake: Wake) -> Result:
        try:
            bearer = await self._tokens.get()
        except _Refused as refused:
            return refused.result
        headers = {"authorization": f"Bearer {bearer}", "content-type": "application/json"}
        try:
            response = await self._client.post(self._url, headers=headers, content=message(wake))
        except httpx.HTTPError:
            return Result(Verdict.RETRY)
        verdict, code = classify(response.status_code, response.content)
        if response.status_code == 401:
            self._tokens.refused()
        return Result(verdict, response.status_code, code, http.retry_after(response.headers))

    async def close(self) -> None:
        await self._client.aclose()
