"""The devices connected to this node: their sessions, resume windows and replacements, and how
a message reaches a device (on its link, queued while it is away, or through the router to the
node that has it).

A mixin of ``CallService`` (``service.py``), which owns the state declared here; the calls these
devices take part in are changed through ``_apply`` (``effects.py``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from signaling.calls import kinds
from signaling.calls import machine as sm
from signaling.calls.kinds import AnyCall, AnyEvent
from signaling.cluster.routing import (
    Deliver,
    DeviceEvent,
    DeviceEventKind,
    Handover,
    Location,
    Router,
    resume_digest,
)
from signaling.protocol import messages as m


class DeviceLink(Protocol):
    """A connected device: ``send`` queues a message without waiting."""

    def send(self, message: m.ServerMessage) -> None: ...

    def replaced(self) -> None:
        """Another connection of the same device took over; close this one."""

    def revoked(self) -> None:
        """The device was revoked or its account erased; close this connection."""

    def disconnected(self) -> None:
        """An operator disconnected the device; it may connect again."""

    def drained(self) -> None:
        """This node is draining and the device did not move in time; close this connection."""


@dataclass(slots=True)
class Presence:
    link: DeviceLink | None
    resume_token: str
    #: Messages kept while the device is away (its resume window); made when the first one is:
    #: an empty deque is 760 bytes, and most devices are connected.
    queue: deque[m.ServerMessage] | None = None
    expiry: asyncio.TimerHandle | None = None


class DeviceSessions:
    _router: Router
    _calls: dict[str, AnyCall]
    _by_device: dict[sm.DeviceRef, set[str]]
    _presence: dict[sm.DeviceRef, Presence]
    _online: dict[str, set[sm.DeviceRef]]
    _remote: dict[sm.DeviceRef, dict[str, str]]
    _held: dict[sm.DeviceRef, list[m.ServerMessage]]
    _ringing_for: dict[str, set[str]]
    _resume_window_s: float
    _resume_queue_max: int

    if TYPE_CHECKING:

        def _resend_offers(self, device: sm.DeviceRef, call_id: str) -> None: ...

        @property
        def node_id(self) -> str: ...
        def _apply(
            self,
            call_id: str,
            event: AnyEvent,
            sender: sm.DeviceRef | None = None,
            at: float | None = None,
        ) -> None: ...
        def _apply_quietly(
            self, call_id: str, event: AnyEvent, at: float | None = None
        ) -> None: ...
        def _attach(self, call_id: str, device: sm.DeviceRef) -> None: ...
        def _in_connected_call(self, device: sm.DeviceRef) -> bool: ...
        async def _busy_elsewhere(
            self, account_id: str, devices: frozenset[sm.DeviceRef]
        ) -> frozenset[sm.DeviceRef]: ...
        def _announce(
            self, device: sm.DeviceRef, event: DeviceEventKind, busy: bool = False
        ) -> None: ...
        def _envelope(self, device: sm.DeviceRef, message: m.ServerMessage) -> Deliver: ...

    async def connect(
        self, device: sm.DeviceRef, link: DeviceLink, resume: str | None
    ) -> m.Welcome:
        """Register a connection; with the right resume token it takes over a lost session,
        on this node or on another one."""
        elsewhere = None
        if device not in self._presence:
            # Also on a dead node: a device whose node died resumes here with its token.
            elsewhere = await self._router.lookup(device, live_only=False)
            if elsewhere is not None and elsewhere.node == self.node_id:
                elsewhere = None
        previous = self._presence.get(device)
        resumed = previous is not None and resume is not None and resume == previous.resume_token
        if previous is None and elsewhere is not None and resume is not None:
            resumed = resume_digest(resume) == elsewhere.resume
        if previous is not None and previous.link is not None:
            previous.link.replaced()
        if previous is not None and previous.expiry is not None:
            previous.expiry.cancel()
        token = secrets.token_urlsafe(24)
        presence = Presence(link=link, resume_token=token)
        self._presence[device] = presence
        self._online.setdefault(device.account_id, set()).add(device)
        welcome = m.Welcome(
            account_id=device.account_id,
            device_id=device.device_id,
            resume_token=token,
            resume_window_s=self._resume_window_s,
            resumed=resumed,
        )
        # Reachable from every node before it hears welcome: an invite for it right after
        # welcome (from anywhere) must find it.
        await self._router.register(
            device, Location(node=self.node_id, connected=True, resume=resume_digest(token))
        )
        link.send(welcome)
        if elsewhere is not None:
            self._router.send(
                elsewhere.node,
                Handover(origin=self.node_id, account_id=device.account_id,
                         device_id=device.device_id),
            )  # fmt: skip
        if previous is not None or elsewhere is not None:
            self._announce(device, "resumed" if resumed else "gone")
        if resumed:
            if previous is not None:
                for message in previous.queue or ():
                    link.send(message)
            for call_id in list(self._by_device.get(device, ())):
                call = self._calls.get(call_id)
                if call is not None and kinds.is_lost(call, device):
                    self._apply(call_id, sm.DeviceResumed(device))
                self._resend_offers(device, call_id)
        elif previous is not None or elsewhere is not None:
            # A fresh session: whatever media state the old one had is gone with it.
            for call_id in list(self._by_device.get(device, ())):
                self._apply_quietly(call_id, sm.DeviceGone(device))
        busy = self._in_connected_call(device) or bool(
            await self._busy_elsewhere(device.account_id, frozenset({device}))
        )
        self._ring_late_device(device, busy)
        self._announce(device, "online", busy)
        return welcome

    def _ring_late_device(self, device: sm.DeviceRef, busy: bool) -> None:
        """A device that comes online while its account is being called rings too."""
        for call_id in list(self._ringing_for.get(device.account_id, ())):
            call = self._calls.get(call_id)
            if call is not None and device not in call.ringing:
                self._attach(call_id, device)
                self._apply_quietly(call_id, sm.DeviceOnline(device, busy))

    def close_device(self, device: sm.DeviceRef) -> None:
        """A revoked device: its connection closes now (on whichever node) and its calls end."""
        self._close_device_here(device)
        self._announce(device, "revoked")

    def _close_device_here(self, device: sm.DeviceRef) -> None:
        presence = self._presence.pop(device, None)
        if presence is not None:
            self._router.unregister(device)
        self._remote.pop(device, None)
        self._online.get(device.account_id, set()).discard(device)
        for call_id in list(self._by_device.get(device, ())):
            self._apply_quietly(call_id, sm.DeviceGone(device))
        if presence is not None:
            if presence.expiry is not None:
                presence.expiry.cancel()
            if presence.link is not None:
                presence.link.revoked()

    def close_account(self, account_id: str, keep: sm.DeviceRef | None = None) -> None:
        self._close_account_here(account_id, keep)
        self._router.broadcast(
            DeviceEvent(
                origin=self.node_id, account_id=account_id,
                device_id=keep.device_id if keep is not None else "", event="revoke_account",
            )
        )  # fmt: skip

    def _close_account_here(self, account_id: str, keep: sm.DeviceRef | None) -> None:
        for device in [d for d in self._presence if d.account_id == account_id and d != keep]:
            self._close_device_here(device)
        for device in [d for d in self._by_device if d.account_id == account_id and d != keep]:
            for call_id in list(self._by_device.get(device, ())):
                self._apply_quietly(call_id, sm.DeviceGone(device))

    def disconnect(self, device: sm.DeviceRef, link: DeviceLink) -> None:
        presence = self._presence.get(device)
        if presence is None or presence.link is not link:
            return  # replaced by a newer connection
        presence.link = None
        self._online.get(device.account_id, set()).discard(device)
        loop = asyncio.get_running_loop()
        presence.expiry = loop.call_later(self._resume_window_s, self._expire, device, presence)
        self._router.register(
            device,
            Location(node=self.node_id, connected=False,
                     resume=resume_digest(presence.resume_token)),
        )  # fmt: skip
        for call_id in list(self._by_device.get(device, ())):
            self._apply_quietly(call_id, sm.DeviceLost(device))
        self._announce(device, "lost")

    def _expire(self, device: sm.DeviceRef, presence: Presence) -> None:
        if self._presence.get(device) is presence:
            del self._presence[device]
            self._remote.pop(device, None)
            self._router.unregister(device)

    def online_devices(self, account_id: str) -> frozenset[sm.DeviceRef]:
        return frozenset(self._online.get(account_id, ()))

    def _deliver(self, device: sm.DeviceRef, message: m.ServerMessage) -> None:
        held = self._held.get(device)
        if held is not None:
            held.append(message)
            return
        presence = self._presence.get(device)
        if presence is None:
            self._router.deliver(device, self._envelope(device, message))
            return
        self._deliver_here(device, presence, message)

    def _deliver_here(
        self, device: sm.DeviceRef, presence: Presence, message: m.ServerMessage
    ) -> None:
        if presence.link is not None:
            presence.link.send(message)
        elif presence.queue is None:
            presence.queue = deque((message,))
        elif len(presence.queue) < self._resume_queue_max:
            presence.queue.append(message)
        else:
            # Too much to replay in order: end the device's calls cleanly instead.
            for call_id in list(self._by_device.get(device, ())):
                self._apply_quietly(call_id, sm.ResumeTimeout(device))
