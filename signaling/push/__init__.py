"""Waking offline devices for an incoming call: one adapter, a sender per provider.

``dispatch`` routes each registration; ``webhook`` POSTs to the operator's push relay;
``apns`` and ``fcm`` speak to Apple and Google themselves; ``settings`` reads their credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from directory import push_tokens
from directory.store import Store
from signaling.push.apns import ApnsSender
from signaling.push.dispatch import Dispatcher, LogPush, PushAdapter, Retry, Sender
from signaling.push.fcm import FcmSender
from signaling.push.settings import ApnsSettings, FcmSettings
from signaling.push.webhook import SIGNATURE_HEADER, WakeUp, WebhookPush, sign

if TYPE_CHECKING:
    from signaling.metrics import Metrics

__all__ = [
    "SIGNATURE_HEADER",
    "ApnsSettings",
    "FcmSettings",
    "PushAdapter",
    "Retry",
    "WakeUp",
    "build",
    "sign",
]


def build(
    store: Store,
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    apns: ApnsSettings | None = None,
    fcm: FcmSettings | None = None,
    ttl_s: float = 60.0,
    retry: Retry | None = None,
    metrics: Metrics | None = None,
) -> PushAdapter:
    async def forget(account_id: str, device_id: str, token: str) -> bool:
        return await push_tokens.forget(store, account_id, device_id, token)

    relay: Sender = LogPush()
    if webhook_url:
        relay = WebhookPush(webhook_url, (webhook_secret or "").encode())
    return Dispatcher(
        relay,
        forget,
        apns=ApnsSender(apns) if apns is not None else None,
        fcm=FcmSender(fcm) if fcm is not None else None,
        ttl_s=ttl_s,
        retry=retry,
        metrics=metrics,
    )
