"""Waking offline devices for an incoming call: one interface, several deliveries.

A mobile push provider (APNs, FCM) cannot run here; this adapter is the boundary. ``LogPush``
records that a wake-up happened (without tokens), ``WebhookPush`` POSTs each registration to a
configured URL with an HMAC-SHA256 signature, for a relay that speaks to APNs/FCM.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Protocol

import aiohttp
import msgspec

from directory.records import PushRegistration

log = logging.getLogger("callbook.push")

SIGNATURE_HEADER = "X-Callbook-Signature"


class WakeUp(msgspec.Struct, kw_only=True):
    """What a push relay receives: enough to deliver, nothing about the caller."""

    call_id: str
    device_id: str
    provider: str
    token: str
    sent_at: int


class PushAdapter(Protocol):
    async def wake(self, call_id: str, registrations: list[PushRegistration]) -> None: ...

    async def close(self) -> None: ...


class LogPush:
    """For development: says a wake-up would be sent, never who or which token."""

    def __init__(self) -> None:
        self.sent = 0

    async def wake(self, call_id: str, registrations: list[PushRegistration]) -> None:
        self.sent += len(registrations)
        log.info("push: would wake %d device(s)", len(registrations))

    async def close(self) -> None:
        return None


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookPush:
    def __init__(self, url: str, secret: bytes, timeout_s: float = 5.0) -> None:
        self._url = url
        self._secret = secret
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def wake(self, call_id: str, registrations: list[PushRegistration]) -> None:
        for registration in registrations:
            body = msgspec.json.encode(
                WakeUp(
                    call_id=call_id,
                    device_id=registration.device_id,
                    provider=registration.provider,
                    token=registration.token,
                    sent_at=int(time.time()),
                )
            )
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self._secret, body),
            }
            try:
                async with self._session.post(self._url, data=body, headers=headers) as response:
                    if response.status >= 300:
                        log.warning("push webhook answered HTTP %d", response.status)
            except (aiohttp.ClientError, TimeoutError):
                log.warning("push webhook unreachable")

    async def close(self) -> None:
        await self._session.close()
