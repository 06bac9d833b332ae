"""Runs 1:1 calls on one node: the adapter around the pure state machine.

It knows which devices are connected here, resolves whom an invite rings, feeds events to
``machine`` and carries out the effects: messages to devices (queued while a device is within its
resume window), timers on the event loop, missed-call records and push wake-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from directory import accounts, handles, history, lookup, push_tokens
from directory.batch import Batch
from directory.errors import RateLimited
from directory.store import Store
from signaling.calls import group as g
from signaling.calls import kinds, media_keys
from signaling.calls import machine as sm
from signaling.calls.conference import Conference
from signaling.calls.crossing import Crossing, Ringing
from signaling.calls.crossing_calls import CrossingCalls
from signaling.calls.errors import CallError
from signaling.calls.handover import CallHandover, Held
from signaling.calls.kinds import AnyCall, AnyEvent
from signaling.calls.lifecycle import EventSink, Lifecycle
from signaling.calls.media_pool import MediaPool
from signaling.calls.nodes import NodeCalls, store_writer
from signaling.calls.operations import OperatorCalls
from signaling.calls.quality import QualityBook
from signaling.calls.records import CallRecords
from signaling.calls.sfu_calls import INVITE_BURST, INVITES_PER_S, SfuCalls
from signaling.metrics import Metrics
from signaling.protocol import messages as m
from signaling.protocol.operator import Sample
from signaling.push import PushAdapter
from signaling.routing import (
    DeviceEvent,
    Forward,
    Handover,
    Location,
    OperatorReply,
    Router,
    resume_digest,
)
from signaling.routing_local import LocalRouter

log = logging.getLogger("callbook.calls")

#: Stands for the account of a callee no account holds, where a real callee's is read.
_NOBODY = "-"


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


class CallService(NodeCalls, CallHandover, CrossingCalls, OperatorCalls, SfuCalls):
    def __init__(
        self,
        store: Store,
        push: PushAdapter,
        *,
        ring_timeout_s: float = sm.RING_TIMEOUT_S,
        resume_window_s: float = sm.RESUME_WINDOW_S,
        resume_queue_max: int = 256,
        clock: Callable[[], float] | None = None,
        metrics: Metrics | None = None,
        media: MediaPool | None = None,
        turn_configured: bool = False,
        events: EventSink | None = None,
        router: Router | None = None,
        records: CallRecords | None = None,
        crossing: Crossing | None = None,
    ) -> None:
        self._store = store
        # How this node reaches devices on other nodes (docs/scaling.md); alone by default.
        self._router: Router = router or LocalRouter()
        # Calls owned by other nodes that devices connected here take part in: the owner of
        # each, so that a device's message about the call goes there.
        self._remote: dict[sm.DeviceRef, dict[str, str]] = {}
        # With several nodes: each live 1:1 call is also in the store (``records.py``), written
        # in order by one worker, so that another node can continue it if this one dies.
        self._records = records
        self._versions: dict[str, int] = {}
        self._persisted: set[str] = set()
        self._timer_at: dict[tuple[str, str, sm.DeviceRef | None], float] = {}
        self._unsaved: set[str] = set()
        self._queued_saves: dict[str, asyncio.Future[None]] = {}
        self._store_writes = store_writer(records)
        self._held: dict[sm.DeviceRef, list[m.ServerMessage]] = {}
        self._holds: dict[sm.DeviceRef, int] = {}
        # With several nodes: ringing calls and busy devices shared through the store, so that
        # glare and busy work across nodes (``crossing_calls.py``); needs ``records``' writer.
        self._crossing = crossing if records is not None else None
        self._shared_ringing: dict[str, tuple[str, str]] = {}
        self._shared_talking: dict[str, frozenset[sm.DeviceRef]] = {}
        self._glare_checks: dict[str, asyncio.Future[None]] = {}
        self._crossing_found: dict[str, list[Ringing]] = {}
        # Operators' requests to other nodes, waiting for their answers (``operations.py``).
        self._operator_replies: dict[str, asyncio.Future[OperatorReply]] = {}
        self._refresher: asyncio.Task[None] | None = None
        # Draining (``handover.py``): calls on their way to another node, and those gone.
        self._draining = False
        self._moving: dict[str, Held] = {}
        self._moved: dict[str, str] = {}
        self._ring_timeout_s = ring_timeout_s
        self._resume_window_s = resume_window_s
        # Messages kept for a device in its resume window; past this its calls end.
        self._resume_queue_max = resume_queue_max
        self._push = push
        self._clock = clock or store.clock
        self._calls: dict[str, AnyCall] = {}
        self._by_device: dict[sm.DeviceRef, set[str]] = {}
        self._members: dict[str, tuple[sm.DeviceRef, ...]] = {}
        self._ringing_for: dict[str, set[str]] = {}
        self._presence: dict[sm.DeviceRef, Presence] = {}
        self._online: dict[str, set[sm.DeviceRef]] = {}
        self._timers: dict[tuple[str, str, sm.DeviceRef | None], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._metrics = metrics
        # When each ringing call was placed (monotonic), for the ring-to-answer histogram.
        self._invited_at: dict[str, float] = {}
        # The media nodes (one fixed, or a registry) and the rooms this node opened on them.
        self._media = media
        self._conference = (
            None if media is None else Conference(media, self._deliver, self._on_leg_failed)
        )
        if media is not None and self._conference is not None:
            media.on_lost(self._on_media_lost)
            self._conference.start()
        # Hide-my-IP goes through TURN when there is one, else through the SFU.
        self._turn_configured = turn_configured
        # Relayed 1:1 calls: the legs whose media the SFU has accepted.
        self._published: dict[str, set[sm.DeviceRef]] = {}
        # End-to-end media keys: when each participant last asked another for its key.
        self._key_requests = media_keys.RequestLimiter()
        # Media quality devices report, and when each call started: for the operator view.
        self.quality = QualityBook()
        # Lifecycle events for webhooks (call started, ringing, ... ended), when configured.
        self._events = events
        self._lifecycle = Lifecycle(self.quality.pseudonym)
        if metrics is not None:
            metrics.track_active_calls(self.active_calls)

    # --- connections ---------------------------------------------------------------------------

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

    def active_calls(self) -> int:
        return len(self._calls)

    # --- messages from devices -----------------------------------------------------------------

    async def handle(
        self, device: sm.DeviceRef, message: m.ClientMessage, *, forwarded: bool = False
    ) -> None:
        if self._redirected(device, message):
            return
        if self._draining and not forwarded and isinstance(message, m.Invite | m.GroupInvite):
            await self._place_elsewhere(device, message)
            return
        call_id = getattr(message, "call_id", None)
        if not forwarded and isinstance(call_id, str) and call_id not in self._calls:
            owner = self._remote.get(device, {}).get(call_id)
            if owner is not None and owner != self.node_id:
                self._router.send(
                    owner,
                    Forward(origin=self.node_id, account_id=device.account_id,
                            device_id=device.device_id,
                            message=cast(m.ClientMessages, message)),
                )  # fmt: skip
                return
            if owner is None and self._records is not None:
                owner = await self._records.owner(call_id)
                if owner is not None and owner != self.node_id:
                    self._remote.setdefault(device, {})[call_id] = owner
                    await self.handle(device, message)
                    return
        match message:
            case m.Invite():
                await self._invite(device, message)
            case m.Accept():
                elsewhere = await self._talking_elsewhere(device)
                if isinstance(self._calls.get(message.call_id), g.GroupCall):
                    await self._join(device, message.call_id)
                else:
                    accept = await self._accept_event(device, self._calls.get(message.call_id))
                    self._apply(message.call_id, accept, device)
                self._switch_away(device, message.call_id)
                self._switch_away_elsewhere(device, message.call_id, elsewhere)
            case m.Decline():
                self._apply(message.call_id, sm.DeclineEvent(device, message.busy), device)
            case m.Hangup():
                self._apply(message.call_id, sm.HangupEvent(device), device)
            case m.Description() | m.Ice():
                self._apply(message.call_id, sm.SignalEvent(device, message), device)
            case m.RelayFallback():
                fallback = await self._fallback_event(device, self._calls.get(message.call_id))
                self._apply(message.call_id, fallback, device)
            case m.GroupInvite():
                await self._group_invite(device, message)
            case m.GroupAdd():
                await self._group_add(device, message)
            case m.Publish():
                await self._publish(device, message)
            case m.SubscribeAnswer():
                await self._answer_subscription(device, message)
            case m.Mute():
                call = self._calls.get(message.call_id)
                event: sm.MuteEvent | g.MuteEvent = (
                    sm.MuteEvent(device, message.audio_muted, message.video_muted)
                    if isinstance(call, sm.Call)
                    else g.MuteEvent(
                        device, message.audio_muted, message.video_muted, message.screen
                    )
                )
                self._apply(message.call_id, event, device)
            case m.Ping():
                self._deliver(device, m.Pong())
            case m.Quality():
                self._on_quality(device, message)
            case m.MediaKeys() | m.MediaKeyRequest():
                self._route_media_keys(device, message)
            case _:
                raise CallError("unexpected_message", "This message is not expected now.")

    async def _invite(self, caller: sm.DeviceRef, invite: m.Invite) -> None:
        if (invite.handle is None) == (invite.account_id is None):
            raise CallError("invalid_message", "Give exactly one of handle and account_id.")
        typed = None
        if invite.handle is not None:
            typed = handles.parse_lookup(invite.handle)
            if typed is None:
                raise CallError("invalid_handle", "That is not a valid handle.")
        started = time.perf_counter()
        try:
            dialing = await lookup.dial(
                self._store, caller.account_id, handle=typed, account_id=invite.account_id,
                burst=INVITE_BURST, refill_per_s=INVITES_PER_S,
            )  # fmt: skip
        except RateLimited as exc:
            raise CallError("rate_limited", exc.detail) from exc
        finally:
            if self._metrics is not None:
                self._metrics.store_dial.observe(time.perf_counter() - started)
        caller_account, callee_id = dialing.caller, dialing.callee_id
        if caller_account.suspended:
            raise CallError("account_suspended", "This account is suspended; it cannot call.")
        if callee_id == caller.account_id:
            raise CallError("invalid_target", "You cannot call your own account.")
        await self._require_key_to_relay(caller, caller_account.relay_calls)
        # The callee's card, devices and busy ones in one round trip, whoever the callee is:
        # the store calls must not tell a callee who may be rung from one who may not
        # (docs/protocol.md 11.8).
        callee_account = callee_id or _NOBODY
        batch = Batch(self._store)
        card = lookup.stage_callable_card(
            batch, caller.account_id, callee_id or "-", caller_account.relay_calls
        )
        online_of = self._router.stage_online(batch, callee_account)
        busy_of = self._stage_busy_elsewhere(batch, callee_account)
        results = await batch.execute()
        target = card(results)
        callee_card = (
            m.Person(account_id=target[0].account_id, handle=target[0].handle,
                     display_name=target[0].display_name)
            if target else m.Person(account_id=callee_id or "", handle=typed, display_name=None)
        )  # fmt: skip
        relay_only = caller_account.relay_calls == "always" or (target is not None and target[1])
        call = sm.Call(
            id=secrets.token_hex(16),
            caller=caller,
            callee_account=callee_id or "",
            media=invite.media,
            relay_only=relay_only,
            sfu=relay_only and not self._turn_configured and self._conference is not None,
            caller_card=m.Person(
                account_id=caller_account.id,
                handle=caller_account.handle,
                display_name=caller_account.display_name,
            ),
            callee_card=callee_card,
            reachable=target is not None,
            ring_timeout_s=self._ring_timeout_s,
            resume_window_s=self._resume_window_s,
        )
        online = await online_of(results)
        busy = frozenset(d for d in online if self._in_connected_call(d))
        busy |= await busy_of(results, online - busy)
        if not call.reachable:
            online = busy = frozenset()
        self._register(call, online)
        call, effects = sm.start(call, online, busy, self._clock(), invite.ref)
        self._calls[call.id] = call
        self.quality.open_call(call.id, self._clock())
        if self._metrics is not None:
            self._metrics.on_setup()
            self._invited_at[call.id] = time.perf_counter()
        if call.reachable:
            self._ringing_for.setdefault(call.callee_account, set()).add(call.id)
        self._run(call.id, effects)
        self._persist(call.id)
        self._resolve_glare(call)
        # Not awaited: the caller's next message (a hangup) must not wait on a store write
        # here, whoever the callee is (the write differs for a callee who may not be rung).
        # Only with several nodes: a task per invite costs a single node for nothing.
        if call.id in self._glare_checks:
            self._spawn(self._resolve_glare_across_nodes(call))

    def _resolve_glare(self, call: sm.Call) -> None:
        """Two people calling each other at once: the call with the smallest id survives."""
        if not call.reachable:
            return
        crossing = [
            other.id
            for other_id in self._ringing_for.get(call.caller.account_id, ())
            if isinstance(other := self._calls[other_id], sm.Call)
            and other.caller.account_id == call.callee_account
        ]
        if not crossing:
            return
        survivor = min([call.id, *crossing])
        for call_id in [call.id, *crossing]:
            if call_id != survivor:
                self._apply_quietly(call_id, sm.Superseded())

    def _in_connected_call(self, device: sm.DeviceRef) -> bool:
        return any(kinds.talking(self._calls[c], device) for c in self._by_device.get(device, ()))

    def _switch_away(self, device: sm.DeviceRef, accepting: str) -> None:
        """Answering a waiting call hangs up the call the device was in."""
        for call_id in list(self._by_device.get(device, ())):
            if call_id != accepting and kinds.talking(self._calls[call_id], device):
                self._apply_quietly(call_id, sm.HangupEvent(device))

    # --- the machine and its effects -----------------------------------------------------------

    def _register(self, call: sm.Call, ringing: frozenset[sm.DeviceRef]) -> None:
        for device in (call.caller, *ringing):
            self._attach(call.id, device)

    def _attach(self, call_id: str, device: sm.DeviceRef) -> None:
        """Index a device under a call it rings on or takes part in."""
        members = self._members.get(call_id, ())
        if device not in members:
            self._members[call_id] = (*members, device)
            self._by_device.setdefault(device, set()).add(call_id)

    def _apply(
        self,
        call_id: str,
        event: AnyEvent,
        sender: sm.DeviceRef | None = None,
        at: float | None = None,
    ) -> None:
        """``at``: when the event happened, if earlier than now (a node's last heartbeat)."""
        call = previous = self._calls.get(call_id)
        if call is None or (sender is not None and not kinds.may_act(call, event, sender)):
            # Someone else's call id looks exactly like one that never existed.
            raise CallError("unknown_call", "No such call on this device.", call_id)
        try:
            call, effects = kinds.step(call, event, self._clock() if at is None else at)
        except sm.Rejected as rejected:
            raise CallError(rejected.code, rejected.detail, call_id) from rejected
        self._calls[call_id] = call
        self._stop_ringing(call)
        held = self._hold_until_stored(previous, call)
        self._run(call_id, effects)
        written = self._persist(call_id) if call is not previous else None
        self._release_when_stored(held, written)

    def _apply_quietly(self, call_id: str, event: AnyEvent, at: float | None = None) -> None:
        """For events the server raises itself: an illegal one is simply moot."""
        with contextlib.suppress(CallError):
            self._apply(call_id, event, at=at)

    def _run(self, call_id: str, effects: Sequence[g.Effect]) -> None:
        if self._events is not None:
            for event in self._lifecycle.observe(self._calls.get(call_id), effects, self._clock()):
                self._events.emit(event)
        recording = {e.callee_account for e in effects if isinstance(e, sm.RecordMissed) and e.kept}
        held: dict[str, list[sm.Send]] = {}
        for effect in effects:
            match effect:
                case g.Subscribe() | g.RemoveParticipant() | g.CloseRoom():
                    self._media_effect(call_id, effect)
                case sm.Send(to=to) if to.account_id in recording and _tells_missed(effect):
                    # Told once the record exists, so a device that refreshes its missed-call
                    # list on this message finds the call in it.
                    held.setdefault(to.account_id, []).append(effect)
                case sm.Send(to=to, message=message):
                    if self._metrics is not None:
                        self._observe(call_id, to, message)
                    self._deliver(to, message)
                case sm.SetTimer(kind=kind, at=at, device=device):
                    self._set_timer(call_id, kind, at, device)
                case sm.ClearTimer(kind=kind, device=device):
                    self._timer_at.pop((call_id, kind, device), None)
                    handle = self._timers.pop((call_id, kind, device), None)
                    if handle is not None:
                        handle.cancel()
                case sm.RecordMissed(callee_account=account):
                    self._spawn(self._record_missed(call_id, effect, held.pop(account, [])))
                case sm.WakeUp(callee_account=account_id, send=send):
                    self._spawn(self._wake(call_id, account_id or _NOBODY, send))
                case sm.Finished():
                    call = self._calls.get(call_id)
                    if isinstance(call, sm.Call) and call.sfu:
                        self._media_effect(call_id, g.CloseRoom())
                    self._forget(call_id)

    def _observe(self, call_id: str, to: sm.DeviceRef, message: m.ServerMessage) -> None:
        """Count what the caller hears: an answer, or the end of the call and its reason."""
        kind = type(message)
        if kind is not m.Ended and kind is not m.Accepted:
            return
        call = self._calls.get(call_id)
        metrics = self._metrics
        if not isinstance(call, sm.Call) or metrics is None or to != call.caller:
            return
        if isinstance(message, m.Ended):
            metrics.on_ended(message.reason)
            if call.callee is not None:
                legs = self.quality.legs(call_id).values()
                relayed = [leg.relayed for leg in legs if leg.relayed is not None]
                metrics.on_path(sm.path(call, relayed), call.fell_back)
        else:
            invited = self._invited_at.pop(call_id, None)
            metrics.on_answered(None if invited is None else time.perf_counter() - invited)

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

    def _set_timer(
        self, call_id: str, kind: sm.TimerKind, at: float, device: sm.DeviceRef | None
    ) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - self._clock())
        event: sm.Event = sm.RingTimeout()
        if device is not None:
            event = sm.ResumeTimeout(device)
        key = (call_id, kind, device)
        previous = self._timers.pop(key, None)
        if previous is not None:
            previous.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key, event)
        self._timer_at[key] = at

    def _fire(self, key: tuple[str, str, sm.DeviceRef | None], event: sm.Event) -> None:
        self._timers.pop(key, None)
        self._timer_at.pop(key, None)
        self._apply_quietly(key[0], event)

    def _stop_ringing(self, call: AnyCall) -> None:
        """Unindex the accounts a call no longer rings for."""
        done: set[str] | frozenset[str]
        if isinstance(call, sm.Call):
            done = set() if call.phase is sm.Phase.RINGING else {call.callee_account}
        else:
            done = (
                call.invited - call.awaiting if call.phase is not sm.Phase.ENDED else call.invited
            )
        for account in done:
            ringing = self._ringing_for.get(account)
            if ringing is not None:
                ringing.discard(call.id)
                if not ringing:
                    del self._ringing_for[account]

    def _forget(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        self._invited_at.pop(call_id, None)
        self._published.pop(call_id, None)
        self._key_requests.forget(call_id)
        self.quality.forget_call(call_id)
        if call is not None:
            self._stop_ringing(call)
        for device in self._members.pop(call_id, ()):
            calls = self._by_device.get(device)
            if calls is not None:
                calls.discard(call_id)
                if not calls:
                    del self._by_device[device]

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record_missed(
        self, call_id: str, effect: sm.RecordMissed, then: list[sm.Send]
    ) -> None:
        try:
            caller = await accounts.get(self._store, effect.caller_account)
            if effect.kept:
                await history.record_missed(
                    self._store, effect.callee_account, caller.id, caller.handle, effect.at
                )
            else:
                await history.record_nothing(self._store, caller.id, effect.at)
        except Exception:
            log.exception("could not record a missed call")
        finally:
            for send in then:
                self._deliver(send.to, send.message)

    async def _wake(self, call_id: str, account_id: str, send: bool = True) -> None:
        try:
            registrations = await push_tokens.list_all(self._store, account_id)
            if registrations and send:
                await self._push.wake(call_id, account_id, registrations)
        except Exception:
            log.exception("push wake-up failed")

    # --- operators ------------------------------------------------------------------------------

    def _on_quality(self, device: sm.DeviceRef, report: m.Quality) -> None:
        call = self._calls.get(report.call_id)
        if call is None or not kinds.talking(call, device):
            raise CallError("unknown_call", "No connected call with this id on this device.")
        sample = Sample(
            at=self._clock(), rtt_ms=report.rtt_ms, jitter_ms=report.jitter_ms,
            loss=report.loss, bitrate_kbps=report.bitrate_kbps,
        )  # fmt: skip
        kept = self.quality.record(
            call.id, device.account_id, device.device_id, sample, report.relayed, time.monotonic()
        )
        if not kept and self._metrics is not None:
            self._metrics.on_quality_dropped()

    @property
    def conference(self) -> Conference | None:
        return self._conference

    @property
    def media(self) -> MediaPool | None:
        return self._media

    def now(self) -> float:
        return self._clock()

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await self._store_writes.stop()
        await self._router.close()
        if self._conference is not None:
            await self._conference.aclose()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _tells_missed(send: sm.Send) -> bool:
    return isinstance(send.message, m.Ended) and send.message.reason == "missed"
