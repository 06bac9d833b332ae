"""The operator's own push relay: each wake-up POSTed with an HMAC-SHA256 signature."""

from __future__ import annotations

import hashlib
import hmac

import aiohttp
import msgspec

from signaling.push.dispatch import Result, Verdict, Wake

SIGNATURE_HEADER = "X-Callbook-Signature"


class WakeUp(msgspec.Struct, kw_only=True):
    """What a push relay receives: enough to deliver, nothing about the caller."""

    call_id: str
    device_id: str
    provider: str
    token: str
    sent_at: int


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookPush:
    """One POST per wake-up, not retried (the relay owns delivery from there)."""

    name = "webhook"

    def __init__(self, url: str, secret: bytes, timeout_s: float = 5.0) -> None:
        self._url = url
        self._secret = secret
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def send(self, wake: Wake) -> Result:
        registration = wake.registration
        body = msgspec.json.encode(
            WakeUp(
                call_id=wake.call_id,
                device_id=registration.device_id,
                provider=registration.provider,
                token=registration.token,
                sent_at=wake.sent_at,
            )
        )
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self._secret, body)}
        try:
            async with self._session.post(self._url, data=body, headers=headers) as response:
                if response.status >= 300:
                    return Result(Verdict.FAILED, response.status)
                return Result(Verdict.DELIVERED, response.status)
        except (aiohttp.ClientError, TimeoutError):
            return Result(Verdict.FAILED)

    async def close(self) -> None:
        await self._session.close()
