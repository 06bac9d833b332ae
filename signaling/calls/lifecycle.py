"""Call lifecycle events for webhooks, derived from the calls' own transitions: no I/O.

The service shows :class:`Lifecycle` each call's state after a transition, with the effects the
machine returned; it compares that with what it last saw of the call and returns what happened
in between, numbered per call (``seq`` 1, 2, ...) so receivers can order and spot gaps:

``call_started`` -> ``participant_joined`` -> ``ringing`` -> ``answered`` ->
``participant_left`` -> ``ended`` (the order within one transition).

Why diff states rather than add emit calls to each transition: the machines stay as they are
(pure, shared with others' work), and one hook in the service's effect runner sees every change,
whichever path caused it (a device, a timer, an operator).

Semantics:

- ``ringing``: once per call, when some device of a callee (invitee) first rings. A call to an
  offline or unreachable callee has no ``ringing`` (callers are told "ringing" either way; the
  operator is not).
- ``answered``: once per call; a 1:1 call is connected, or someone other than the host joined a
  group call.
- ``participant_joined`` / ``participant_left``: per account (a participant is an account, not
  a device: a second device of the same account in a group call is not a second participant).
  The caller (host) joins at the start; the callee when answering.
- ``ended``: with the reason the caller hears (1:1), or the one the last participant hears
  (group: ``hangup``, ``peer_lost``, ``media_failed``, ``operator``).

Participants are named only by ``pseudonym(call_id, account_id)``, the HMAC the operator view
uses (``QualityBook.pseudonym``): stable within a call, linked to nothing outside it. Events
never carry a handle, an account or device id, or an address.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import msgspec

from signaling.calls import group as g
from signaling.calls import machine as sm
from signaling.protocol import messages as m

EventType = Literal[
    "call_started", "ringing", "answered", "participant_joined", "participant_left", "ended"
]
Role = Literal["caller", "callee", "host", "guest"]


class LifecycleEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One event as a webhook receiver gets it (``sent_at`` is set per delivery attempt)."""

    #: Unique per event (not per attempt): receivers de-duplicate on it.
    id: str
    type: EventType
    call_id: str
    #: 1, 2, ... within the call, in the order things happened.
    seq: int
    #: Unix seconds when the server saw it happen.
    at: float
    #: ``call_started``: ``one_to_one`` or ``group``; and ``audio`` or ``video``.
    kind: Literal["one_to_one", "group"] | None = None
    media: m.Media | None = None
    #: ``participant_*``: the per-call pseudonym, and the participant's role.
    participant: str | None = None
    role: Role | None = None
    #: ``ended``: why.
    reason: m.EndReason | None = None
    #: Unix seconds of this delivery attempt (covered by the signature).
    sent_at: int | None = None


class EventSink(Protocol):
    """Where the service hands events; ``emit`` must not block."""

    def emit(self, event: LifecycleEvent) -> None: ...


@dataclass(slots=True)
class _Seen:
    seq: int = 0
    present: dict[str, Role] = field(default_factory=dict)
    rang: bool = False
    answered: bool = False


Pseudonym = Callable[[str, str], str]


class Lifecycle:
    """Remembers, per live call, what it last reported; ``observe`` returns what changed."""

    def __init__(self, pseudonym: Pseudonym, new_id: Callable[[], str] | None = None) -> None:
        self._pseudonym = pseudonym
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self._seen: dict[str, _Seen] = {}

    def observe(
        self, call: sm.Call | g.GroupCall | None, effects: Sequence[g.Effect], now: float
    ) -> list[LifecycleEvent]:
        if call is None:
            return []
        events: list[LifecycleEvent] = []
        seen = self._seen.get(call.id)

        def add(what: EventType, **fields: object) -> None:
            assert seen is not None
            seen.seq += 1
            events.append(
                msgspec.structs.replace(
                    LifecycleEvent(
                        id=self._new_id(), type=what, call_id=call.id, seq=seen.seq, at=now
                    ),
                    **fields,
                )
            )

        if seen is None:
            seen = self._seen[call.id] = _Seen()
            one_to_one = isinstance(call, sm.Call)
            add("call_started", kind="one_to_one" if one_to_one else "group", media=call.media)
        ended = call.phase is sm.Phase.ENDED
        present = {} if ended else _present(call)
        for account, role in present.items():
            if account not in seen.present:
                add("participant_joined", participant=self._pseudonym(call.id, account), role=role)
        if not seen.rang and call.ringing:
            seen.rang = True
            add("ringing")
        if not seen.answered and _answered(call):
            seen.answered = True
            add("answered")
        for account, role in seen.present.items():
            if account not in present:
                add("participant_left", participant=self._pseudonym(call.id, account), role=role)
        seen.present = present
        if ended:
            add("ended", reason=_reason(call, effects))
            del self._seen[call.id]
        return events

    def live(self) -> int:
        return len(self._seen)


def _present(call: sm.Call | g.GroupCall) -> dict[str, Role]:
    if isinstance(call, sm.Call):
        present: dict[str, Role] = {call.caller.account_id: "caller"}
        if call.callee is not None:
            present.setdefault(call.callee.account_id, "callee")
        return present
    host = call.host.account_id
    return {
        d.account_id: "host" if d.account_id == host else "guest"
        for d in sorted(call.members, key=lambda d: (d.account_id != host, d.account_id))
    }


def _answered(call: sm.Call | g.GroupCall) -> bool:
    if isinstance(call, sm.Call):
        return call.callee is not None
    return any(d.account_id != call.host.account_id for d in call.members)


def _reason(call: sm.Call | g.GroupCall, effects: Sequence[g.Effect]) -> m.EndReason:
    endings = [
        (e.to, e.message.reason)
        for e in effects
        if isinstance(e, sm.Send) and isinstance(e.message, m.Ended)
    ]
    if isinstance(call, sm.Call):
        for to, reason in endings:
            if to == call.caller:
                return reason
    # A group call: the last participant's leaving comes first (or everyone hears "operator").
    return endings[0][1] if endings else "hangup"
