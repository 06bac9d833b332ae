"""Runs calls on one node: the adapter around the pure state machines (``machine``, ``group``).

``CallService`` owns the state and takes the devices' messages: it resolves whom an invite rings
and turns each message into an event for its call. The rest is in its mixins, one concept each:
the connected devices and delivery (``presence.py``), applying events and carrying out their
effects (``effects.py``), other nodes (``nodes.py``, ``handover.py``, ``crossing_calls.py``),
operators (``operations.py``) and calls through the SFU (``sfu_calls.py``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import cast

from directory import handles, lookup
from directory.batch import Batch
from directory.errors import RateLimited
from directory.storage.tasks import cancel_until_done
from directory.store import Store
from signaling.calls import group as g
from signaling.calls import kinds, media_keys
from signaling.calls import machine as sm
from signaling.calls.conference import Conference
from signaling.calls.crossing import Crossing, Ringing
from signaling.calls.crossing_calls import CrossingCalls
from signaling.calls.effects import NOBODY, CallEffects
from signaling.calls.errors import CallError
from signaling.calls.handover import CallHandover, Held
from signaling.calls.kinds import AnyCall
from signaling.calls.lifecycle import EventSink, Lifecycle
from signaling.calls.media_pool import MediaPool
from signaling.calls.nodes import NodeCalls, store_writer
from signaling.calls.operations import OperatorCalls
from signaling.calls.presence import DeviceSessions, Presence
from signaling.calls.quality import QualityBook
from signaling.calls.records import CallRecords
from signaling.calls.sfu_calls import INVITE_BURST, INVITES_PER_S, SfuCalls
from signaling.cluster.routing import (
    Forward,
    OperatorReply,
    Router,
)
from signaling.cluster.routing_local import LocalRouter
from signaling.metrics import Metrics
from signaling.protocol import messages as m
from signaling.protocol.operator import Sample
from signaling.push import PushAdapter

log = logging.getLogger("callbook.calls")


class CallService(
    DeviceSessions, CallEffects, NodeCalls, CallHandover, CrossingCalls, OperatorCalls, SfuCalls
):
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
        # Calls this node is taking over from a dead node, done once each is installed.
        self._taking_over: dict[str, asyncio.Future[None]] = {}
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
            None
            if media is None
            else Conference(media, self._deliver, self._on_leg_failed, self._on_screen_ended)
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
        if isinstance(call_id, str) and call_id in self._taking_over:
            await asyncio.shield(self._taking_over[call_id])
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
            case m.Unpublish():
                await self._unpublish(device, message)
            case m.SubscribeAnswer():
                await self._answer_subscription(device, message)
            case m.RenegotiateAnswer():
                await self._answer_renegotiation(device, message)
            case m.View():
                await self._set_view(device, message)
            case m.Mute():
                call = self._calls.get(message.call_id)
                event: sm.MuteEvent | g.MuteEvent = (
                    sm.MuteEvent(device, message.audio_muted, message.video_muted, message.screen)
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
        callee_account = callee_id or NOBODY
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

    # --- quality reports, accessors, closing ----------------------------------------------------

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
        await asyncio.gather(*(cancel_until_done(task) for task in list(self._tasks)))
