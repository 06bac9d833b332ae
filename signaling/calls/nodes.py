"""The part of ``CallService`` that spans nodes: envelopes from other nodes, call records in the
store, and taking over the calls of a node that died (docs/scaling.md).

A mixin of ``CallService`` (``service.py``), which owns the state declared here; the machinery
these methods use is in its other mixins (``_apply`` and timers in ``effects.py``, delivery in
``presence.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import msgspec
from redis.exceptions import RedisError

from directory.batch import Batch, Finish, Staged
from directory.errors import DirectoryError
from directory.storage import keys
from signaling.calls import group as g
from signaling.calls import kinds
from signaling.calls import machine as sm
from signaling.calls.errors import CallError
from signaling.calls.kinds import AnyCall, AnyEvent
from signaling.calls.media_pool import MediaPool
from signaling.calls.presence import Presence
from signaling.calls.quality import QualityBook
from signaling.calls.records import CallRecords, Stored, Timer
from signaling.cluster.routing import (
    Adopt,
    Deliver,
    DeviceEvent,
    DeviceEventKind,
    Envelopes,
    Forward,
    Handover,
    Moved,
    OperatorReply,
    OperatorRequest,
    PresenceBack,
    Router,
    Supersede,
)
from signaling.cluster.routing_local import Worker
from signaling.protocol import messages as m

log = logging.getLogger("callbook.calls")


class NodeCalls:
    _router: Router
    _records: CallRecords | None
    _media: MediaPool | None
    _remote: dict[sm.DeviceRef, dict[str, str]]
    _taking_over: dict[str, asyncio.Future[None]]
    _versions: dict[str, int]
    _persisted: set[str]
    _unsaved: set[str]
    # Per call, its write waiting in the queue (see ``_persist``).
    _queued_saves: dict[str, asyncio.Future[None]]
    _timer_at: dict[tuple[str, str, sm.DeviceRef | None], float]
    _store_writes: Worker
    # Messages held back until a change is in the store (see ``_hold_until_stored``).
    _held: dict[sm.DeviceRef, list[m.ServerMessage]]
    _holds: dict[sm.DeviceRef, int]
    _refresher: asyncio.Task[None] | None
    _calls: dict[str, AnyCall]
    _presence: dict[sm.DeviceRef, Presence]
    _online: dict[str, set[sm.DeviceRef]]
    _by_device: dict[sm.DeviceRef, set[str]]
    _ringing_for: dict[str, set[str]]
    _members: dict[str, tuple[sm.DeviceRef, ...]]
    _clock: Callable[[], float]
    quality: QualityBook

    if TYPE_CHECKING:

        def _resend_offers(self, device: sm.DeviceRef, call_id: str) -> None: ...

        async def handle(
            self, device: sm.DeviceRef, message: m.ClientMessage, *, forwarded: bool = False
        ) -> None: ...
        def _deliver(self, device: sm.DeviceRef, message: m.ServerMessage) -> None: ...
        def _deliver_here(
            self, device: sm.DeviceRef, presence: Presence, message: m.ServerMessage
        ) -> None: ...
        def _apply_quietly(
            self, call_id: str, event: AnyEvent, at: float | None = None
        ) -> None: ...
        def _attach(self, call_id: str, device: sm.DeviceRef) -> None: ...
        def _adopt_room(self, call: AnyCall, media_node: str) -> None: ...
        def _set_timer(
            self, call_id: str, kind: sm.TimerKind, at: float, device: sm.DeviceRef | None
        ) -> None: ...
        def _ring_late_device(self, device: sm.DeviceRef, busy: bool) -> None: ...
        def _in_connected_call(self, device: sm.DeviceRef) -> bool: ...
        async def _busy_elsewhere(
            self, account_id: str, devices: frozenset[sm.DeviceRef]
        ) -> frozenset[sm.DeviceRef]: ...
        def _close_device_here(self, device: sm.DeviceRef) -> None: ...
        def _close_account_here(self, account_id: str, keep: sm.DeviceRef | None) -> None: ...
        async def _adopt(self, call_id: str) -> None: ...
        def _rehome(self, call_id: str, owner: str) -> None: ...
        def _share(self, call_id: str) -> None: ...
        def _refresh_busy(self) -> None: ...
        def _on_supersede(self, envelope: Supersede) -> None: ...
        def _on_operator_request(self, request: OperatorRequest) -> None: ...
        def _on_operator_reply(self, reply: OperatorReply) -> None: ...

    @property
    def node_id(self) -> str:
        return self._router.node_id

    @property
    def router(self) -> Router:
        return self._router

    async def start(self) -> None:
        await self._router.start(self)
        if self._records is not None:
            self._store_writes.start()
            self._refresher = asyncio.create_task(self._refresh_records(self._records))

    async def _refresh_records(self, records: CallRecords) -> None:
        while True:
            await asyncio.sleep(keys.PRESENCE_REFRESH_S)
            self._refresh_busy()
            try:
                missing = await records.refresh(sorted(self._persisted))
            except (RedisError, OSError):
                records.outage.failed("call records")
                continue
            # Expired while the store was away, or changed while it was: write them again.
            for call_id in sorted(set(missing) | self._unsaved):
                self._unsaved.discard(call_id)
                if call_id in self._persisted and call_id in self._calls:
                    self._persist(call_id)

    async def flush_store_writes(self) -> None:
        """Wait until every call state queued for the store is written (tests, shutdown)."""
        if self._store_writes.running:
            await self._store_writes.submit(_nothing)

    def _hold_until_stored(
        self, previous: AnyCall | None, call: AnyCall
    ) -> tuple[sm.DeviceRef, ...]:
        """A device starts talking (an answer, a join): hold back every message for the call's
        devices until the change is in the store. Otherwise the callee could hear ``accepted``
        from a node that dies before writing it, and a survivor would take the call over as
        still ringing (and record it as missed). Costs one store round trip per answer, not
        per message; other changes are written just after they are told (the write window,
        docs/scaling.md). Not while this node sees the store away: the write could only fail,
        after up to a command timeout. Returns the devices held, for ``_release_when_stored``."""
        if self._records is None or previous is None or self._records.outage.down:
            return ()
        devices = (*kinds.involved(previous), *kinds.involved(call))
        if not any(kinds.talking(call, d) and not kinds.talking(previous, d) for d in devices):
            return ()
        for device in devices:
            self._holds[device] = self._holds.get(device, 0) + 1
            self._held.setdefault(device, [])
        return devices

    def _release_when_stored(
        self, devices: tuple[sm.DeviceRef, ...], written: asyncio.Future[None] | None
    ) -> None:
        """Let the held messages go once ``written`` is done, written or failed: a live call
        goes on without the store (docs/scaling.md, "The store goes away")."""
        if not devices:
            return
        if written is None:
            self._let_held_go(devices)
        else:
            written.add_done_callback(lambda _: self._let_held_go(devices))

    def _let_held_go(self, devices: tuple[sm.DeviceRef, ...]) -> None:
        for device in devices:
            holds = self._holds.get(device, 0) - 1
            if holds > 0:
                self._holds[device] = holds
                continue
            self._holds.pop(device, None)
            for message in self._held.pop(device, []):
                self._deliver(device, message)

    def _persist(self, call_id: str) -> asyncio.Future[None] | None:
        """Queue the call's new state (or its end) for the store; the write's future.

        At most one write of a call waits in the queue: it reads the call when it runs, so
        the changes made while it waits go with it (a writer behind at peak coalesces
        instead of falling further behind; the store lags by at most that one write). A call
        that ends before its first write leaves nothing in the store."""
        self._share(call_id)
        records = self._records
        if records is None:
            return None
        if call_id not in self._calls:
            if call_id not in self._persisted:
                return None
            self._persisted.discard(call_id)
            queued = self._queued_saves.pop(call_id, None)
            if queued is not None and call_id not in self._versions:
                return queued  # no write began: the queued one finds it gone, nothing to delete
            self._versions.pop(call_id, None)
            return self._store_writes.submit(Staged(partial(records.stage_delete, call_id=call_id)))
        self._persisted.add(call_id)
        queued = self._queued_saves.get(call_id)
        if queued is None:
            queued = self._queued_saves[call_id] = self._store_writes.submit(
                Staged(partial(self._stage_save, records, call_id))
            )
            queued.add_done_callback(partial(self._unsaved_if_failed, call_id))
        return queued

    def _unsaved_if_failed(self, call_id: str, written: asyncio.Future[None]) -> None:
        if not written.cancelled() and written.exception() is not None:
            self._unsaved.add(call_id)  # the refresher writes it when the store is back

    def _stage_save(self, records: CallRecords, call_id: str, batch: Batch) -> Finish | None:
        """The call as it is now, if this node still runs it (the queued write of ``_persist``)."""
        self._queued_saves.pop(call_id, None)  # a change from now on queues another write
        call = self._calls.get(call_id)
        if call is None or call_id not in self._persisted:
            return None
        # Group and relayed calls: the room's media node, for a survivor to adopt the room.
        media = None if self._media is None else self._media.node_of(call_id)
        timers = [
            Timer(kind, at, device)  # type: ignore[arg-type]
            for (owner, kind, device), at in self._timer_at.items()
            if owner == call_id
        ]
        # In the store from now on, as far as a deletion is concerned (see ``_persist``).
        version = self._versions.setdefault(call_id, 0)
        saved = records.stage_save(batch, call, timers, version, media)

        async def finish(results: list[Any]) -> None:
            written = await saved(results)
            if written is None:
                log.warning("call %s is no longer this node's: another node took it", call_id)
                self._persisted.discard(call_id)
                return
            if call_id in self._persisted:
                self._versions[call_id] = written

        return finish

    async def on_envelope(self, envelope: Envelopes) -> None:
        """Something another node sent this one (see ``signaling.cluster.routing``)."""
        device = envelope.device
        match envelope:
            case Deliver():
                self._on_deliver(envelope)
            case Forward(message=message, on_behalf=on_behalf):
                await self._on_forward(device, message, on_behalf)
            case DeviceEvent():
                self._on_device_event(envelope)
            case Handover():
                self._hand_over(device, envelope.origin)
            case Adopt(call_id=call_id):
                await self._adopt(call_id)
            case Moved(call_id=call_id, owner=owner):
                self._rehome(call_id, owner)
            case Supersede():
                self._on_supersede(envelope)
            case OperatorRequest():
                self._on_operator_request(envelope)
            case OperatorReply():
                self._on_operator_reply(envelope)
            case PresenceBack():
                with contextlib.suppress(RedisError, OSError):  # the heartbeat tries again
                    await self.on_presence_settling()

    async def on_presence_settling(self) -> None:
        """Presence written again after an outage: the callees' devices that a call ringing
        now did not find when it was placed ring too (``Inbox.on_presence_settling``)."""
        for account_id in list(self._ringing_for):
            calls = self._ringing_for.get(account_id, ())
            rung = {d for c in calls for d in self._members.get(c, ())}
            for device in await self._router.online(account_id) - rung:
                busy = self._in_connected_call(device) or bool(
                    await self._busy_elsewhere(account_id, frozenset({device}))
                )
                self._ring_late_device(device, busy)

    def _on_deliver(self, envelope: Deliver) -> None:
        device = envelope.device
        presence = self._presence.get(device)
        if presence is None:
            if not envelope.rerouted:
                # The device left this node after the sender last found it here.
                rerouted = msgspec.structs.replace(envelope, origin=self.node_id, rerouted=True)
                self._router.deliver(device, rerouted)
            return
        call_id, owner = envelope.call_id, envelope.owner
        if call_id is not None and owner is not None:
            if isinstance(envelope.message, m.Ended):
                self._forget_remote(device, call_id)
            else:
                self._remote.setdefault(device, {})[call_id] = owner
        self._deliver_here(device, presence, envelope.message)

    def _forget_remote(self, device: sm.DeviceRef, call_id: str) -> None:
        calls = self._remote.get(device)
        if calls is not None:
            calls.pop(call_id, None)
            if not calls:
                del self._remote[device]

    async def _on_forward(
        self, device: sm.DeviceRef, message: m.ClientMessage, on_behalf: bool = False
    ) -> None:
        """A device on another node acts on a call this node owns; errors go back to it. A
        node acting on its behalf read the store's busy entries, which lag behind the calls
        (the owner removes them after the call ended): a call already over is no error."""
        try:
            await self.handle(device, message, forwarded=True)
        except CallError as error:
            refusal = m.refusal(message, error.code, error.detail, error.call_id)
        except DirectoryError as error:
            refusal = m.refusal(message, error.code, error.detail)
        except (RedisError, OSError):
            refusal = m.refusal(message, "unavailable", "The store is unavailable.")
        else:
            return
        if not on_behalf:
            self._deliver(device, refusal)

    def _on_device_event(self, event: DeviceEvent) -> None:
        """A device's state changed on another node: the calls it has here follow."""
        device = event.device
        if event.event == "revoke_account":
            keep = sm.DeviceRef(event.account_id, event.device_id) if event.device_id else None
            self._close_account_here(event.account_id, keep)
            return
        if event.event == "revoked" and device in self._presence:
            self._close_device_here(device)
            return
        calls = list(self._by_device.get(device, ()))
        match event.event:
            case "online":
                self._ring_late_device(device, event.busy)
            case "lost":
                for call_id in calls:
                    self._apply_quietly(call_id, sm.DeviceLost(device), at=event.at)
            case "gone" | "revoked":
                for call_id in calls:
                    self._apply_quietly(call_id, sm.DeviceGone(device))
            case "resumed":
                for call_id in calls:
                    call = self._calls.get(call_id)
                    if call is not None and kinds.is_lost(call, device):
                        self._apply_quietly(call_id, sm.DeviceResumed(device))
                    self._resend_offers(device, call_id)

    def _hand_over(self, device: sm.DeviceRef, node: str) -> None:
        """The device connected to ``node``: close it here and pass on what was queued."""
        presence = self._presence.pop(device, None)
        self._online.get(device.account_id, set()).discard(device)
        self._remote.pop(device, None)
        if presence is None:
            return
        # No longer this node's to refresh; the store's entry is deleted only while still ours.
        self._router.unregister(device)
        if presence.expiry is not None:
            presence.expiry.cancel()
        if presence.link is not None:
            presence.link.replaced()
        for message in presence.queue or ():
            self._router.send(node, self._envelope(device, message))

    def _envelope(self, device: sm.DeviceRef, message: m.ServerMessage) -> Deliver:
        call_id = getattr(message, "call_id", None)
        owned = isinstance(call_id, str) and call_id in self._calls
        return Deliver(
            origin=self.node_id, account_id=device.account_id, device_id=device.device_id,
            message=cast(m.ServerMessages, message), call_id=call_id if owned else None,
            owner=self.node_id if owned else None,
        )  # fmt: skip

    def _announce(self, device: sm.DeviceRef, event: DeviceEventKind, busy: bool = False) -> None:
        self._router.broadcast(
            DeviceEvent(
                origin=self.node_id, account_id=device.account_id, device_id=device.device_id,
                event=event, busy=busy, at=self._clock(),
            )
        )  # fmt: skip

    async def on_node_dead(self, node: str, last_seen: float) -> None:
        """Another node died: this node tries to take over the calls it ran; its devices count
        as lost since its last heartbeat; calls nobody could take end (``peer_lost``)."""
        if self._records is not None:
            await self._take_over(self._records, node)
        for call_id, call in list(self._calls.items()):
            for device in kinds.involved(call):
                if device in self._presence or kinds.is_lost(call, device):
                    continue
                if await self._router.lookup(device) is None:
                    self._apply_quietly(call_id, sm.DeviceLost(device), at=last_seen)
        for device, calls in list(self._remote.items()):
            for call_id, owner in list(calls.items()):
                if owner != node:
                    continue
                if call_id in self._calls:
                    self._forget_remote(device, call_id)  # now ours
                    continue
                moved = None if self._records is None else await self._records.owner(call_id)
                if moved is not None and moved != node:
                    calls[call_id] = moved
                    continue
                if owner == node:
                    self._forget_remote(device, call_id)
                    presence = self._presence.get(device)
                    if presence is not None:
                        ended = m.Ended(call_id=call_id, reason="peer_lost")
                        self._deliver_here(device, presence, ended)

    async def _take_over(self, records: CallRecords, node: str) -> None:
        """Continue the dead node's calls here: the first survivor to ask gets each one."""
        for call_id in await records.owned_by(node):
            if call_id in self._calls:
                continue
            # The record names this node before the call is installed here (its names are
            # looked up first): a device's message meanwhile waits rather than go to the dead.
            installed = self._taking_over[call_id] = asyncio.get_running_loop().create_future()
            try:
                stored = await records.take_over(call_id, node)
                if stored is None:
                    continue  # ended meanwhile, or another survivor was first
                log.info("took over call %s from node %s", call_id, node)
                self._install(call_id, stored)
            finally:
                del self._taking_over[call_id]
                installed.set_result(None)
        await records.forget_node(node)

    def _install(self, call_id: str, stored: Stored) -> None:
        """Run a call from its record here (taken over, or handed over by a draining node)."""
        call = stored.call
        if self._records is not None:
            self._records.hold(call_id)  # see CallRecords._may_restore
        self._calls[call_id] = call
        self._versions[call_id] = stored.version
        self._persisted.add(call_id)
        self.quality.open_call(call_id, self._clock())
        for device in kinds.involved(call):
            self._attach(call_id, device)
        if isinstance(call, sm.Call) and call.phase is sm.Phase.RINGING and call.reachable:
            self._ringing_for.setdefault(call.callee_account, set()).add(call_id)
        if isinstance(call, g.GroupCall):
            for account in call.awaiting:
                self._ringing_for.setdefault(account, set()).add(call_id)
        if stored.media_node is not None:
            self._adopt_room(call, stored.media_node)
        for timer in stored.timers:
            self._set_timer(call_id, timer.kind, timer.at, timer.device)
        self._share(call_id)  # its ringing and busy entries now name this node


def store_writer(records: CallRecords | None) -> Worker:
    """The one worker that writes this node's call records, in order. The store being away is
    reported to the node's outage watch (one warning), not logged for every write."""
    if records is None:
        return Worker()
    return Worker(
        (RedisError, OSError), lambda: records.outage.failed("call records"), store=records.store
    )


async def _nothing() -> None:
    return None
