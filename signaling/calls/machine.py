"""The 1:1 call state machine: pure, no I/O; time is an argument; it returns effects.

A call rings on every online device of the callee, is answered on one of them, and ends once.
The adapter (``service.py``) feeds it events, and ``effects.py`` carries out the effects it
returns: messages to devices, timers, a missed-call record, a push wake-up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Literal

from signaling.calls import relay
from signaling.protocol import messages as m

RING_TIMEOUT_S = 60.0
RESUME_WINDOW_S = 30.0


class Phase(Enum):
    RINGING = "ringing"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class DeviceRef:
    account_id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    caller: DeviceRef
    callee_account: str
    media: m.Media
    relay_only: bool
    caller_card: m.Person
    callee_card: m.Person
    phase: Phase = Phase.RINGING
    ringing: frozenset[DeviceRef] = frozenset()
    callee: DeviceRef | None = None
    lost: frozenset[DeviceRef] = frozenset()
    # False when the callee may not be rung (blocked, not allowed, hidden, unknown): the call
    # then rings nowhere and times out exactly as for an offline callee.
    reachable: bool = True
    # Media through the SFU instead of peer to peer (hide-my-IP without a TURN server).
    sfu: bool = False
    # The peer-to-peer path failed and the call moved to a relay (``relay_only`` since then).
    fell_back: bool = False
    ring_timeout_s: float = RING_TIMEOUT_S
    resume_window_s: float = RESUME_WINDOW_S

    def legs(self) -> tuple[DeviceRef, ...]:
        return (self.caller,) if self.callee is None else (self.caller, self.callee)

    def peer_of(self, device: DeviceRef) -> DeviceRef | None:
        if device == self.caller:
            return self.callee
        return self.caller if device == self.callee else None

    def involves(self, device: DeviceRef) -> bool:
        return device in self.legs() or device in self.ringing


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """What other participants of a call through the SFU need to send a device media keys:
    its Ed25519 device key, its X25519 media key and that key's signature (base64url)."""

    device_key: str
    media_key: str
    media_key_signature: str


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcceptEvent:
    device: DeviceRef
    #: For a call through the SFU: the media keys of the caller's and this device, which the
    #: two devices are introduced with (``participants``, docs/e2ee.md).
    keys: tuple[DeviceKeys | None, DeviceKeys | None] = (None, None)


@dataclass(frozen=True, slots=True)
class DeclineEvent:
    device: DeviceRef
    busy: bool = False


@dataclass(frozen=True, slots=True)
class HangupEvent:
    device: DeviceRef


@dataclass(frozen=True, slots=True)
class SignalEvent:
    """SDP or an ICE candidate from one leg, for the other."""

    device: DeviceRef
    message: m.Description | m.Ice


@dataclass(frozen=True, slots=True)
class MuteEvent:
    """What one leg sends (microphone, camera), for the other to show."""

    device: DeviceRef
    audio_muted: bool
    video_muted: bool
    screen: bool = False  # it shares its screen (a second video track)


@dataclass(frozen=True, slots=True)
class FallbackEvent:
    """A leg's peer-to-peer path failed: move the call to a relay, the SFU when ``sfu`` (then
    ``keys`` are the caller's and the callee's, as for ``AcceptEvent``), else TURN."""

    device: DeviceRef
    sfu: bool
    keys: tuple[DeviceKeys | None, DeviceKeys | None] = (None, None)


@dataclass(frozen=True, slots=True)
class RingTimeout:
    pass


@dataclass(frozen=True, slots=True)
class DeviceLost:
    device: DeviceRef


@dataclass(frozen=True, slots=True)
class DeviceOnline:
    """A device of the callee came online (woken by push, or back) while the call rings."""

    device: DeviceRef
    busy: bool = False


@dataclass(frozen=True, slots=True)
class DeviceGone:
    """The device will not come back (revoked, erased, or signed in afresh): no resume window."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class DeviceResumed:
    device: DeviceRef


@dataclass(frozen=True, slots=True)
class ResumeTimeout:
    device: DeviceRef


@dataclass(frozen=True, slots=True)
class Superseded:
    """Glare: the two people called each other at once and the other call survives."""


Event = (
    AcceptEvent
    | DeclineEvent
    | HangupEvent
    | SignalEvent
    | MuteEvent
    | FallbackEvent
    | RingTimeout
    | DeviceLost
    | DeviceOnline
    | DeviceGone
    | DeviceResumed
    | ResumeTimeout
    | Superseded
)

# --- effects -----------------------------------------------------------------------------------

TimerKind = Literal["ring", "resume"]


@dataclass(frozen=True, slots=True)
class Send:
    to: DeviceRef
    message: m.ServerMessage


@dataclass(frozen=True, slots=True)
class SetTimer:
    kind: TimerKind
    at: float
    device: DeviceRef | None = None


@dataclass(frozen=True, slots=True)
class ClearTimer:
    kind: TimerKind
    device: DeviceRef | None = None


@dataclass(frozen=True, slots=True)
class RecordMissed:
    callee_account: str
    caller_account: str
    at: float
    #: False for a callee who may not be rung: nothing is recorded, but the adapter does the
    #: same store round trips, so the end of the call takes as long (protocol.md 11.8).
    kept: bool = True


@dataclass(frozen=True, slots=True)
class WakeUp:
    """No device of the callee is online: ask the push adapter to wake one. ``send`` False:
    a callee who may not be rung; the adapter reads as for a wake-up and sends nothing."""

    callee_account: str
    send: bool = True


@dataclass(frozen=True, slots=True)
class Finished:
    """The call is over; the adapter forgets it."""


Effect = Send | SetTimer | ClearTimer | RecordMissed | WakeUp | Finished


class Rejected(Exception):
    """The event is not legal in the call's state; the sender gets a typed error."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


# --- transitions -------------------------------------------------------------------------------


def start(
    call: Call,
    online: frozenset[DeviceRef],
    busy: frozenset[DeviceRef],
    now: float,
    ref: str | None = None,
) -> tuple[Call, list[Effect]]:
    """Ring every online device (none when unreachable) and tell the caller it is ringing."""
    ringing = online if call.reachable else frozenset()
    call = replace(call, ringing=ringing, phase=Phase.RINGING)
    effects: list[Effect] = [
        Send(call.caller, m.Ringing(call_id=call.id, ref=ref)),
        SetTimer("ring", now + call.ring_timeout_s),
    ]
    for device in sorted(ringing, key=_order):
        incoming = m.Incoming(
            call_id=call.id, caller=call.caller_card, media=call.media, busy=device in busy
        )
        effects.append(Send(device, incoming))
    if not ringing:
        effects.append(WakeUp(call.callee_account, send=call.reachable))
    return call, effects


def transition(call: Call, event: Event, now: float) -> tuple[Call, list[Effect]]:
    """Apply one event; raises Rejected for an event the call's state does not allow."""
    if call.phase is Phase.ENDED:
        raise Rejected("call_ended", f"Call {call.id} has already ended.")
    match event:
        case AcceptEvent():
            return _on_accept(call, event, now)
        case DeclineEvent():
            return _on_decline(call, event, now)
        case HangupEvent():
            return _on_hangup(call, event, now)
        case SignalEvent():
            return _on_signal(call, event, now)
        case MuteEvent():
            return _on_mute(call, event)
        case FallbackEvent():
            return _on_fallback(call, event)
        case RingTimeout():
            return _on_ring_timeout(call, event, now)
        case DeviceLost():
            return _on_lost(call, event, now)
        case DeviceOnline():
            return _on_online(call, event)
        case DeviceGone():
            return _on_gone(call, event, now)
        case DeviceResumed():
            return _on_resumed(call, event, now)
        case ResumeTimeout():
            return _on_resume_timeout(call, event, now)
        case Superseded():
            return _on_superseded(call)


def _order(device: DeviceRef) -> tuple[str, str]:
    return (device.account_id, device.device_id)


def _end(
    call: Call,
    reasons: dict[DeviceRef, m.EndReason],
    extra: list[Effect] | None = None,
) -> tuple[Call, list[Effect]]:
    effects: list[Effect] = [ClearTimer("ring")]
    for device in call.lost:
        effects.append(ClearTimer("resume", device))
    for device, reason in sorted(reasons.items(), key=lambda item: _order(item[0])):
        effects.append(Send(device, m.Ended(call_id=call.id, reason=reason)))
    effects.extend(extra or [])
    effects.append(Finished())
    return replace(call, phase=Phase.ENDED, ringing=frozenset(), lost=frozenset()), effects


def _on_accept(call: Call, event: AcceptEvent, now: float) -> tuple[Call, list[Effect]]:
    if call.phase is not Phase.RINGING or event.device not in call.ringing:
        raise Rejected("not_ringing", f"Call {call.id} is not ringing on this device.")
    others = call.ringing - {event.device}
    connected = replace(call, phase=Phase.CONNECTED, callee=event.device, ringing=frozenset())
    effects: list[Effect] = [
        ClearTimer("ring"),
        Send(call.caller, _accepted(connected, "caller", call.caller, event.keys)),
        Send(event.device, _accepted(connected, "callee", event.device, event.keys)),
    ]
    for device in sorted(others, key=_order):
        effects.append(Send(device, m.Ended(call_id=call.id, reason="answered_elsewhere")))
    return connected, effects


def _introduction(
    call: Call, keys: tuple[DeviceKeys | None, DeviceKeys | None]
) -> list[m.Participant]:
    """The two devices of a call through the SFU, as a group call lists its participants."""
    legs = zip(call.legs(), (call.caller_card, call.callee_card), keys, strict=True)
    return [
        participant_entry(leg_participant(call.id, device), card, device_keys)
        for device, card, device_keys in legs
    ]


def participant_entry(
    participant: str,
    person: m.Person,
    keys: DeviceKeys | None,
    *,
    audio_muted: bool = False,
    video_muted: bool = False,
    screen: bool = False,
    connected: bool = True,
) -> m.Participant:
    """A ``participants`` entry: who, their device's keys, and mute and connection state."""
    return m.Participant(
        participant=participant, person=person, audio_muted=audio_muted,
        video_muted=video_muted, screen=screen, connected=connected,
        device_key=None if keys is None else keys.device_key,
        media_key=None if keys is None else keys.media_key,
        media_key_signature=None if keys is None else keys.media_key_signature,
    )  # fmt: skip


def leg_participant(call_id: str, device: DeviceRef) -> str:
    """A 1:1 leg's participant id in the call's SFU room: stable for the call, meaningless
    outside it."""
    digest = hashlib.sha256(f"{call_id}:{device.account_id}:{device.device_id}".encode())
    return digest.hexdigest()[:16]


def _accepted(
    call: Call,
    role: Literal["caller", "callee"],
    device: DeviceRef,
    keys: tuple[DeviceKeys | None, DeviceKeys | None],
) -> m.Accepted:
    peer = call.callee_card if role == "caller" else call.caller_card
    if not call.sfu:
        return m.Accepted(call_id=call.id, role=role, relay_only=call.relay_only, peer=peer)
    return m.Accepted(
        call_id=call.id, role=role, relay_only=call.relay_only, peer=peer, sfu=True,
        participant=leg_participant(call.id, device), participants=_introduction(call, keys),
    )  # fmt: skip


def _on_decline(call: Call, event: DeclineEvent, now: float) -> tuple[Call, list[Effect]]:
    if call.phase is not Phase.RINGING or event.device not in call.ringing:
        raise Rejected("not_ringing", f"Call {call.id} is not ringing on this device.")
    reason: m.EndReason = "busy" if event.busy else "declined"
    reasons: dict[DeviceRef, m.EndReason] = {call.caller: reason, event.device: reason}
    for device in call.ringing - {event.device}:
        reasons[device] = "declined_elsewhere"
    return _end(call, reasons)


def _on_hangup(call: Call, event: HangupEvent, now: float) -> tuple[Call, list[Effect]]:
    if call.phase is Phase.RINGING:
        if event.device in call.ringing:
            return _on_decline(call, DeclineEvent(event.device), now)
        if event.device != call.caller:
            raise Rejected("not_in_call", f"This device is not part of call {call.id}.")
        reasons: dict[DeviceRef, m.EndReason] = {call.caller: "cancelled"}
        reasons.update(dict.fromkeys(call.ringing, "missed"))
        return _end(call, reasons, _missed(call, now))
    peer = call.peer_of(event.device)
    if peer is None:
        raise Rejected("not_in_call", f"This device is not part of call {call.id}.")
    return _end(call, {peer: "hangup", event.device: "hangup"})


def _missed(call: Call, now: float) -> list[Effect]:
    return [RecordMissed(call.callee_account, call.caller.account_id, now, kept=call.reachable)]


def _on_signal(call: Call, event: SignalEvent, now: float) -> tuple[Call, list[Effect]]:
    peer = call.peer_of(event.device)
    if call.phase is not Phase.CONNECTED or peer is None:
        raise Rejected("not_in_call", f"Call {call.id} is not connected to this device.")
    if call.sfu:
        raise Rejected("use_sfu", f"Call {call.id} goes through the SFU: publish instead.")
    try:
        forwarded = _forwarded(call, event.message)
    except relay.SdpError as exc:
        raise Rejected("invalid_sdp", f"Not forwarded: {exc}") from exc
    return call, [] if forwarded is None else [Send(peer, forwarded)]


def _on_mute(call: Call, event: MuteEvent) -> tuple[Call, list[Effect]]:
    peer = call.peer_of(event.device)
    if call.phase is not Phase.CONNECTED or peer is None:
        raise Rejected("not_in_call", f"Call {call.id} is not connected to this device.")
    told = m.PeerMute(
        call_id=call.id,
        audio_muted=event.audio_muted,
        video_muted=event.video_muted,
        screen=event.screen,
    )
    return call, [Send(peer, told)]


def _forwarded(call: Call, message: m.Description | m.Ice) -> m.ServerMessage | None:
    """What the peer gets of a device's SDP or candidate: relays only on a relay-only call."""
    if isinstance(message, m.Ice):
        candidate: str | None = message.candidate
        if call.relay_only:
            candidate = relay.relay_candidate(message.candidate)
        if candidate is None:
            return None
        return m.PeerIce(
            call_id=call.id,
            candidate=candidate,
            sdp_mid=message.sdp_mid,
            sdp_mline_index=message.sdp_mline_index,
        )
    sdp = relay.relay_only_sdp(message.sdp) if call.relay_only else message.sdp
    return m.PeerDescription(call_id=call.id, kind=message.kind, sdp=sdp, restart=message.restart)


def _on_fallback(call: Call, event: FallbackEvent) -> tuple[Call, list[Effect]]:
    """Both legs move to the relay together; a call already relayed (the other leg asked first,
    or it was relay-only from the start) stays as it is."""
    if call.phase is not Phase.CONNECTED or call.peer_of(event.device) is None:
        raise Rejected("not_in_call", f"Call {call.id} is not connected to this device.")
    if call.relay_only:
        return call, []
    moved = replace(call, relay_only=True, sfu=event.sfu, fell_back=True)
    effects: list[Effect] = []
    for device in moved.legs():
        relayed = m.Relayed(call_id=call.id)
        if event.sfu:
            relayed = m.Relayed(
                call_id=call.id, sfu=True, participant=leg_participant(call.id, device),
                participants=_introduction(moved, event.keys),
            )  # fmt: skip
        effects.append(Send(device, relayed))
    return moved, effects


def path(call: Call, relayed: Iterable[bool]) -> Literal["p2p", "turn", "sfu"]:
    """The media path of a connected call: ``relayed`` are the legs' own reports of whether
    their selected candidate pair is a relay."""
    if call.sfu:
        return "sfu"
    return "turn" if call.relay_only or any(relayed) else "p2p"


def _on_ring_timeout(call: Call, event: RingTimeout, now: float) -> tuple[Call, list[Effect]]:
    if call.phase is not Phase.RINGING:
        raise Rejected("not_ringing", f"Call {call.id} is no longer ringing.")
    reasons: dict[DeviceRef, m.EndReason] = {call.caller: "no_answer"}
    reasons.update(dict.fromkeys(call.ringing, "missed"))
    return _end(call, reasons, _missed(call, now))


def _on_lost(call: Call, event: DeviceLost, now: float) -> tuple[Call, list[Effect]]:
    if event.device in call.ringing:
        # A ringing device that drops simply stops ringing; the others ring on.
        return replace(call, ringing=call.ringing - {event.device}), []
    if event.device not in call.legs():
        raise Rejected("not_in_call", f"This device is not part of call {call.id}.")
    effects: list[Effect] = [SetTimer("resume", now + call.resume_window_s, event.device)]
    peer = call.peer_of(event.device)
    if peer is not None:
        effects.append(Send(peer, m.PeerReconnecting(call_id=call.id)))
    return replace(call, lost=call.lost | {event.device}), effects


def _on_online(call: Call, event: DeviceOnline) -> tuple[Call, list[Effect]]:
    if (
        call.phase is not Phase.RINGING
        or not call.reachable
        or event.device.account_id != call.callee_account
    ):
        raise Rejected("not_ringing", f"Call {call.id} is not ringing for this account.")
    incoming = m.Incoming(
        call_id=call.id, caller=call.caller_card, media=call.media, busy=event.busy
    )
    return replace(call, ringing=call.ringing | {event.device}), [Send(event.device, incoming)]


def _on_gone(call: Call, event: DeviceGone, now: float) -> tuple[Call, list[Effect]]:
    if event.device in call.ringing:
        return replace(call, ringing=call.ringing - {event.device}), []
    if event.device not in call.legs():
        raise Rejected("not_in_call", f"This device is not part of call {call.id}.")
    lost = replace(call, lost=call.lost | {event.device})
    return _on_resume_timeout(lost, ResumeTimeout(event.device), now)


def _on_resumed(call: Call, event: DeviceResumed, now: float) -> tuple[Call, list[Effect]]:
    if event.device not in call.lost:
        raise Rejected("not_lost", "This device had not lost its connection.")
    effects: list[Effect] = [ClearTimer("resume", event.device)]
    peer = call.peer_of(event.device)
    if peer is not None:
        effects.append(Send(peer, m.PeerResumed(call_id=call.id)))
    return replace(call, lost=call.lost - {event.device}), effects


def _on_resume_timeout(call: Call, event: ResumeTimeout, now: float) -> tuple[Call, list[Effect]]:
    if event.device not in call.lost:
        raise Rejected("not_lost", "This device had not lost its connection.")
    reasons: dict[DeviceRef, m.EndReason] = {event.device: "peer_lost"}
    peer = call.peer_of(event.device)
    if peer is not None:
        reasons[peer] = "peer_lost"
    if call.phase is Phase.RINGING:
        reasons.update(dict.fromkeys(call.ringing, "missed"))
        return _end(call, reasons, _missed(call, now))
    return _end(call, reasons)


def _on_superseded(call: Call) -> tuple[Call, list[Effect]]:
    reasons: dict[DeviceRef, m.EndReason] = dict.fromkeys((*call.legs(), *call.ringing), "glare")
    return _end(call, reasons)


def end_media_failed(call: Call) -> tuple[Call, list[Effect]]:
    """A call through the SFU whose media node died: both legs get ``media_failed``.

    Not an ``Event``: it comes from the media node, not from a device.
    """
    if call.phase is Phase.ENDED:
        raise Rejected("call_ended", f"Call {call.id} has already ended.")
    reasons: dict[DeviceRef, m.EndReason] = dict.fromkeys(
        (*call.legs(), *call.ringing), "media_failed"
    )
    return _end(call, reasons)


def end_by_operator(call: Call) -> tuple[Call, list[Effect]]:
    """An operator ends the call: every device in it, ringing ones too, gets ``operator``.

    Not an ``Event``: no device can cause it, and it is legal in every phase but ``ENDED``.
    """
    if call.phase is Phase.ENDED:
        raise Rejected("call_ended", f"Call {call.id} has already ended.")
    reasons: dict[DeviceRef, m.EndReason] = dict.fromkeys((*call.legs(), *call.ringing), "operator")
    return _end(call, reasons)
