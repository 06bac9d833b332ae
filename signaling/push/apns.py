"""VoIP pushes to Apple's APNs for CallKit, with token-based (JWT) authentication.

Direct HTTP/2 (httpx over h2) rather than ``aioapns``: aioapns fixes the host and port 443 in
class attributes and builds its own TLS context, so pointing it at another endpoint (a test
server, a proxy) means patching its internals; here the endpoint is a URL and the checks the
provider documents are ours to test.

Apple's rules followed: ``POST /3/device/<token>`` over HTTP/2; ``authorization: bearer`` a
provider token (ES256 JWT, header ``kid``, claims ``iss`` team id and ``iat``) made anew no
more than once in 20 minutes and no less than once an hour; ``apns-push-type: voip``,
``apns-topic: <bundle id>.voip``, ``apns-priority: 10`` and ``apns-expiration``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import jwt
import msgspec

from signaling.push import http
from signaling.push.dispatch import Result, Verdict, Wake
from signaling.push.settings import ApnsSettings

#: A provider token is renewed after this long: inside Apple's 20-60 minute window.
TOKEN_LIFETIME_S = 40 * 60


class _Error(msgspec.Struct):
    reason: str = ""


class VoipPayload(msgspec.Struct, kw_only=True):
    """What the app's PushKit delegate receives: which call to look for, nothing more."""

    call_id: str
    sent_at: int


def provider_token(settings: ApnsSettings, now: int) -> str:
    return jwt.encode(
        {"iss": settings.team_id, "iat": now},
        settings.key,
        algorithm="ES256",
        headers={"kid": settings.key_id},
    )


class ProviderTokens:
    """The current provider token: one per lifetime, shared by every request."""

    def __init__(self, settings: ApnsSettings) -> None:
        self._settings = settings
        self._token = ""
        self._made_at = 0

    def get(self, now: int) -> str:
        if not self._token or now - self._made_at >= TOKEN_LIFETIME_S:
            self._token, self._made_at = provider_token(self._settings, now), now
        return self._token

    def refused(self, now: int) -> None:
        """APNs refused the token: make a new one next time, unless that would be sooner
        than Apple allows (``TooManyProviderTokenUpdates``)."""
        if now - self._made_at >= 20 * 60:
            self._token = ""


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


def request(settings: ApnsSettings, bearer: str, wake: Wake) -> Request:
    return Request(
        path="/3/device/" + quote(wake.registration.token, safe=""),
        headers={
            "authorization": f"bearer {bearer}",
            "apns-push-type": "voip",
            "apns-topic": f"{settings.bundle_id}.voip",
            "apns-priority": "10",
            "apns-expiration": str(wake.expires_at),
            "content-type": "application/json",
        },
        body=msgspec.json.encode(VoipPayload(call_id=wake.call_id, sent_at=wake.sent_at)),
    )


def classify(status: int, body: bytes) -> tuple[Verdict, str]:
    if status == 200:
        return Verdict.DELIVERED, ""
    try:
        reason = msgspec.json.decode(body, type=_Error).reason
    except (msgspec.DecodeError, msgspec.ValidationError):
        reason = ""
    # 410: the token is no longer active (``Unregistered``, ``ExpiredToken``).
    if status == 410 or (status, reason) == (400, "BadDeviceToken"):
        return Verdict.GONE, reason
    if status == 403:
        return Verdict.AUTH, reason
    if http.is_retryable(status):
        return Verdict.RETRY, reason
    return Verdict.FAILED, reason


class ApnsSender:
    name = "apns"

    def __init__(self, settings: ApnsSettings) -> None:
        self._settings = settings
        self._tokens = ProviderTokens(settings)
        self._client = http.client(settings.ca_file)

    async def send(self, wake: Wake) -> Result:
        now = int(time.time())
        made = request(self._settings, self._tokens.get(now), wake)
        try:
            response = await self._client.post(
                self._settings.url + made.path, headers=made.headers, content=made.body
            )
        except httpx.HTTPError:
            return Result(Verdict.RETRY)
        verdict, reason = classify(response.status_code, response.content)
        if verdict is Verdict.AUTH:
            self._tokens.refused(now)
        return Result(verdict, response.status_code, reason, http.retry_after(response.headers))

    async def close(self) -> None:
        await self._client.aclose()
