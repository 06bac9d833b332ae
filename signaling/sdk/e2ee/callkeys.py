"""One device's end-to-end keys in one SFU call: the thin adapter between the WebSocket key
messages (``participants``, ``media_key``, ``media_key_request``) and the pure key schedule.

It checks every participant's media key signature (a participant whose signature fails is
ignored, and counted), opens key blobs, seals ours to each recipient, and sends what the
schedule asks for. ``crypto`` is the frame encryption the SFU session installs into aiortc.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from signaling.protocol import messages as m
from signaling.sdk.e2ee.framecrypto import FrameCrypto
from signaling.sdk.e2ee.keyblob import (
    BlobError,
    b64url,
    b64url_decode,
    media_key_signed,
    open_blob,
    seal,
)
from signaling.sdk.e2ee.keyschedule import Effect, KeySchedule, RequestKey, SendKeys
from signaling.sdk.e2ee.safety import safety_number

#: Recipients per ``media_keys`` message (the protocol's limit).
KEYS_PER_MESSAGE = 15
#: Key messages held for senders not yet in our roster (their ``participants`` may trail).
MAX_PENDING = 16

Send = Callable[[m.ClientMessage], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Device:
    device_key: bytes
    media_key: bytes


def _device(entry: m.Participant) -> Device | None:
    if not (entry.device_key and entry.media_key and entry.media_key_signature):
        return None
    try:
        device = Device(b64url_decode(entry.device_key), b64url_decode(entry.media_key))
        signature = b64url_decode(entry.media_key_signature)
    except ValueError:
        return None
    if not media_key_signed(device.device_key, device.media_key, signature):
        return None
    return device


class CallKeys:
    def __init__(
        self,
        call_id: str,
        me: str,
        signin_key: Ed25519PrivateKey,
        media_key: X25519PrivateKey,
        send: Send,
    ) -> None:
        self.call_id = call_id
        self.me = me
        self._signin_key = signin_key
        self._media_key = media_key
        self._send = send
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self.schedule = KeySchedule(me)
        self.crypto = FrameCrypto(self.schedule, self._clock, self._later)
        self.roster: dict[str, Device] = {}
        self._pending: dict[str, m.MediaKey] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Shown on the call screen; changes with membership (design §7).
        self.safety_number: str | None = None

    @property
    def counters(self) -> dict[str, int]:
        return dict(self.schedule.counters)

    async def participants(self, entries: list[m.Participant]) -> None:
        roster: dict[str, Device] = {}
        for entry in entries:
            device = _device(entry)
            if device is None:
                self.schedule.counters["bad_media_key"] += 1
                continue
            roster[entry.participant] = device
        for gone in set(self.roster) - set(roster):
            self.crypto.forget(gone)
        self.roster = roster
        self.safety_number = safety_number((d.device_key, d.media_key) for d in roster.values())
        await self._perform(self.schedule.membership([*roster, self.me], self._clock()))
        for sender in [s for s in self._pending if s in roster]:
            await self.media_key(self._pending.pop(sender))

    async def media_key(self, message: m.MediaKey) -> None:
        sender = message.participant
        device = self.roster.get(sender)
        now = self._clock()
        if device is None:
            self.schedule.counters["key_from_unknown_sender"] += 1
            if sender in self._pending or len(self._pending) < MAX_PENDING:
                self._pending[sender] = message
            return
        try:
            base_key = open_blob(
                b64url_decode(message.blob),
                call_id=self.call_id, sender=sender, recipient=self.me, kid=message.kid,
                media_key=self._media_key, sender_device_key=device.device_key,
            )  # fmt: skip
        except (BlobError, ValueError):
            await self._perform(self.schedule.blob_failed(sender, now))
            return
        effects = self.schedule.key_received(sender, message.kid, base_key, now)
        await self._perform(self.crypto.apply(effects))

    async def key_requested(self, message: m.PeerMediaKeyRequest) -> None:
        await self._perform(self.schedule.key_requested(message.participant))

    def _later(self, effects: list[Effect]) -> None:
        """Effects of the frame path (on the event loop, inside aiortc's packet handler)."""
        task = asyncio.ensure_future(self._perform(effects))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _perform(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, SendKeys):
                for start in range(0, len(effect.recipients), KEYS_PER_MESSAGE):
                    chunk = effect.recipients[start : start + KEYS_PER_MESSAGE]
                    keys = [self._sealed(effect, r) for r in chunk if r in self.roster]
                    if keys:
                        await self._send(m.MediaKeys(call_id=self.call_id, kid=effect.kid,
                                                     keys=keys))  # fmt: skip
            elif isinstance(effect, RequestKey):
                await self._send(m.MediaKeyRequest(call_id=self.call_id,
                                                   participant=effect.participant))  # fmt: skip

    def _sealed(self, effect: SendKeys, recipient: str) -> m.MediaKeyFor:
        blob = seal(
            effect.base_key,
            call_id=self.call_id, sender=self.me, recipient=recipient, kid=effect.kid,
            recipient_media_key=self.roster[recipient].media_key, signin_key=self._signin_key,
        )  # fmt: skip
        return m.MediaKeyFor(participant=recipient, blob=b64url(blob))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
