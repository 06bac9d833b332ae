"""Carrying out what the pure machines decide: an event is applied to a call (``_apply``), and its
effects become messages to devices, timers on the event loop, rooms on the media nodes,
missed-call records and push wake-ups; with the indexes of calls by device and ringing account.

A mixin of ``CallService`` (``service.py``), which owns the state declared here. The machines
themselves (``machine.py``, ``group.py``) do no I/O and take the time as an argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING

from directory import accounts, history, push_tokens
from directory.store import Store
from signaling.calls import group as g
from signaling.calls import kinds
from signaling.calls import machine as sm
from signaling.calls.errors import CallError
from signaling.calls.kinds import AnyCall, AnyEvent
from signaling.calls.lifecycle import EventSink, Lifecycle
from signaling.calls.media_keys import RequestLimiter
from signaling.calls.quality import QualityBook
from signaling.metrics import Metrics
from signaling.protocol import messages as m
from signaling.push import PushAdapter

log = logging.getLogger("callbook.calls")

#: Stands for the account of a callee no account holds, where a real callee's is read.
NOBODY = "-"


class CallEffects:
    _store: Store
    _push: PushAdapter
    _clock: Callable[[], float]
    _metrics: Metrics | None
    _events: EventSink | None
    _lifecycle: Lifecycle
    _calls: dict[str, AnyCall]
    _by_device: dict[sm.DeviceRef, set[str]]
    _members: dict[str, tuple[sm.DeviceRef, ...]]
    _ringing_for: dict[str, set[str]]
    _timers: dict[tuple[str, str, sm.DeviceRef | None], asyncio.TimerHandle]
    _timer_at: dict[tuple[str, str, sm.DeviceRef | None], float]
    _tasks: set[asyncio.Task[None]]
    _invited_at: dict[str, float]
    _published: dict[str, set[sm.DeviceRef]]
    _key_requests: RequestLimiter
    quality: QualityBook

    if TYPE_CHECKING:

        def _deliver(self, device: sm.DeviceRef, message: m.ServerMessage) -> None: ...
        def _media_effect(
            self, call_id: str, effect: g.Subscribe | g.RemoveParticipant | g.CloseRoom
        ) -> None: ...
        def _persist(self, call_id: str) -> asyncio.Future[None] | None: ...
        def _hold_until_stored(
            self, previous: AnyCall | None, call: AnyCall
        ) -> tuple[sm.DeviceRef, ...]: ...
        def _release_when_stored(
            self, devices: tuple[sm.DeviceRef, ...], written: asyncio.Future[None] | None
        ) -> None: ...

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
                    self._spawn(self._wake(call_id, account_id or NOBODY, send))
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
                await history.record_nothing(self._store, effect.at)
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


def _tells_missed(send: sm.Send) -> bool:
    return isinstance(send.message, m.Ended) and send.message.reason == "missed"
