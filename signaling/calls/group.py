"""The group call state machine: pure, no I/O; time is an argument; it returns effects.

A group call lives as long as someone is in it. Each invited account rings like the callee of a
1:1 call (on every online device, answered on one, declined for all, missed after the ring
timeout), and accepting joins. Media goes through the SFU: the machine decides who subscribes to
whom once each participant has published; the adapter talks to the SFU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from signaling.calls import machine as sm
from signaling.calls.machine import DeviceRef, Phase, Rejected
from signaling.protocol import messages as m

MAX_PARTICIPANTS = 16


@dataclass(frozen=True, slots=True)
class Member:
    participant: str
    person: m.Person
    audio_muted: bool = False
    video_muted: bool = False
    screen: bool = False
    published: bool = False
    lost: bool = False
    #: The device's keys for end-to-end encrypted media, shown to the others (docs/e2ee.md).
    keys: sm.DeviceKeys | None = None


@dataclass(frozen=True, slots=True)
class GroupCall:
    id: str
    host: m.Person
    media: m.Media
    # Accounts that may join: the host's and every invitee the host may ring. An invitee who may
    # not be rung (blocked, not allowed, hidden) is simply absent, exactly like an offline one.
    invited: frozenset[str]
    phase: Phase = Phase.CONNECTED
    members: Mapping[DeviceRef, Member] = field(default_factory=dict)
    ringing: frozenset[DeviceRef] = frozenset()
    # Accounts still being rung: their devices that come online ring too, until the timeout.
    awaiting: frozenset[str] = frozenset()
    ring_timeout_s: float = sm.RING_TIMEOUT_S
    resume_window_s: float = sm.RESUME_WINDOW_S
    max_participants: int = MAX_PARTICIPANTS

    def involves(self, device: DeviceRef) -> bool:
        return device in self.members or device in self.ringing

    def may_join(self, device: DeviceRef) -> bool:
        return device.account_id in self.invited and device not in self.members


# --- group-only events and effects ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JoinEvent:
    """A device accepts the invitation (or rejoins) as ``participant``."""

    device: DeviceRef
    participant: str
    person: m.Person
    ref: str | None = None
    keys: sm.DeviceKeys | None = None


@dataclass(frozen=True, slots=True)
class MuteEvent:
    device: DeviceRef
    audio_muted: bool
    video_muted: bool
    screen: bool = False


@dataclass(frozen=True, slots=True)
class AddEvent:
    """The host, in the call, rings more people: ``online`` maps each account it may ring to
    its online devices (as for ``start``); ``busy``: those devices already in another call."""

    device: DeviceRef
    online: Mapping[str, frozenset[DeviceRef]]
    busy: frozenset[DeviceRef] = frozenset()


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """The SFU accepted the device's media: it can now send and receive."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class MediaFailed:
    """The SFU lost the device's media (ICE failed, or the media node went away)."""

    device: DeviceRef


Event = (
    JoinEvent
    | AddEvent
    | MuteEvent
    | PublishedEvent
    | MediaFailed
    | sm.DeclineEvent
    | sm.HangupEvent
    | sm.RingTimeout
    | sm.DeviceLost
    | sm.DeviceOnline
    | sm.DeviceGone
    | sm.DeviceResumed
    | sm.ResumeTimeout
)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Offer ``subscriber`` the media of ``publisher`` through the SFU."""

    subscriber: DeviceRef
    publisher: DeviceRef


@dataclass(frozen=True, slots=True)
class RemoveParticipant:
    participant: str


@dataclass(frozen=True, slots=True)
class CloseRoom:
    pass


Effect = sm.Effect | Subscribe | RemoveParticipant | CloseRoom


# --- transitions -------------------------------------------------------------------------------


def start(
    call: GroupCall,
    host: DeviceRef,
    participant: str,
    online: Mapping[str, frozenset[DeviceRef]],
    busy: frozenset[DeviceRef],
    now: float,
    ref: str | None = None,
    keys: sm.DeviceKeys | None = None,
) -> tuple[GroupCall, list[Effect]]:
    """The host joins at once (with its device's ``keys``); every online device of an invited
    account rings.

    ``online`` maps each invited account (the host's excluded) to its online devices.
    """
    ringing = frozenset(d for devices in online.values() for d in devices if d != host)
    awaiting = frozenset(online) - {host.account_id}
    call = replace(call, ringing=ringing, awaiting=awaiting)
    effects: list[Effect] = []
    if awaiting:
        effects.append(sm.SetTimer("ring", now + call.ring_timeout_s))
    for device in sorted(ringing, key=_order):
        effects.append(sm.Send(device, _incoming(call, device in busy)))
    for account in sorted(awaiting):
        if not online[account]:
            effects.append(sm.WakeUp(account))
    joined, join_effects = _on_join(call, JoinEvent(host, participant, call.host, ref, keys))
    return joined, effects + join_effects


def transition(call: GroupCall, event: Event, now: float) -> tuple[GroupCall, list[Effect]]:
    """Apply one event; raises Rejected for an event the call's state does not allow."""
    if call.phase is Phase.ENDED:
        raise Rejected("call_ended", f"Call {call.id} has already ended.")
    match event:
        case JoinEvent():
            return _on_join(call, event)
        case AddEvent():
            return _on_add(call, event, now)
        case MuteEvent():
            return _on_mute(call, event)
        case PublishedEvent():
            return _on_published(call, event)
        case sm.DeclineEvent():
            return _on_decline(call, event)
        case sm.HangupEvent():
            return _on_hangup(call, event, now)
        case sm.RingTimeout():
            return _on_ring_timeout(call, now)
        case sm.DeviceLost():
            return _on_lost(call, event, now)
        case sm.DeviceOnline():
            return _on_online(call, event)
        case sm.DeviceResumed():
            return _on_resumed(call, event)
        case sm.DeviceGone() | sm.ResumeTimeout() | MediaFailed():
            return _on_gone(call, event, now)


def _order(device: DeviceRef) -> tuple[str, str]:
    return (device.account_id, device.device_id)


def _incoming(call: GroupCall, busy: bool) -> m.Incoming:
    return m.Incoming(call_id=call.id, caller=call.host, media=call.media, busy=busy, group=True)


def _roster(call: GroupCall) -> list[Effect]:
    """Everyone in the call hears who is in it now."""
    listing = m.Participants(
        call_id=call.id,
        participants=[
            sm.participant_entry(
                member.participant,
                member.person,
                member.keys,
                audio_muted=member.audio_muted,
                video_muted=member.video_muted,
                screen=member.screen,
                connected=not member.lost,
            )
            for _, member in sorted(call.members.items(), key=lambda item: _order(item[0]))
        ],
    )
    return [sm.Send(device, listing) for device in sorted(call.members, key=_order)]


def _stop_ringing_account(
    call: GroupCall, account: str, reason: m.EndReason, spared: DeviceRef | None = None
) -> tuple[GroupCall, list[Effect]]:
    """Stop ringing every device of one account (except ``spared``), telling each why."""
    stopped = sorted(
        (d for d in call.ringing if d.account_id == account and d != spared), key=_order
    )
    effects: list[Effect] = [sm.Send(d, m.Ended(call_id=call.id, reason=reason)) for d in stopped]
    call = replace(
        call,
        ringing=call.ringing - set(stopped) - ({spared} if spared else set()),
        awaiting=call.awaiting - {account},
    )
    if not call.awaiting:
        effects.append(sm.ClearTimer("ring"))
    return call, effects


def _on_join(call: GroupCall, event: JoinEvent) -> tuple[GroupCall, list[Effect]]:
    device = event.device
    if not call.may_join(device):
        raise Rejected("not_ringing", f"Call {call.id} has no place for this device.")
    if len(call.members) >= call.max_participants:
        raise Rejected("call_full", f"Call {call.id} already has {call.max_participants} people.")
    effects: list[Effect] = []
    if device.account_id in call.awaiting or device in call.ringing:
        call, effects = _stop_ringing_account(
            call, device.account_id, "answered_elsewhere", spared=device
        )
    member = Member(participant=event.participant, person=event.person, keys=event.keys)
    call = replace(call, members={**call.members, device: member})
    joined = m.Joined(
        call_id=call.id,
        participant=event.participant,
        media=call.media,
        host=call.host,
        ref=event.ref,
        ring_timeout_s=call.ring_timeout_s,
    )
    return call, [*effects, sm.Send(device, joined), *_roster(call)]


def _on_add(call: GroupCall, event: AddEvent, now: float) -> tuple[GroupCall, list[Effect]]:
    """Ring accounts that are neither in the call nor still ringing. The ring timeout starts
    again for everyone still ringing: one timer per call."""
    _member(call, event.device)
    if event.device.account_id != call.host.account_id:
        raise Rejected("not_host", "Only the host can add people to this call.")
    present = {device.account_id for device in call.members} | call.awaiting
    fresh = {a: ds for a, ds in event.online.items() if a not in present}
    if not fresh:
        return call, []
    ringing = frozenset(d for devices in fresh.values() for d in devices)
    call = replace(
        call,
        invited=call.invited | set(fresh),
        ringing=call.ringing | ringing,
        awaiting=call.awaiting | set(fresh),
    )
    effects: list[Effect] = [sm.SetTimer("ring", now + call.ring_timeout_s)]
    for device in sorted(ringing, key=_order):
        effects.append(sm.Send(device, _incoming(call, device in event.busy)))
    effects += [sm.WakeUp(account) for account in sorted(fresh) if not fresh[account]]
    return call, effects


def _member(call: GroupCall, device: DeviceRef) -> Member:
    member = call.members.get(device)
    if member is None:
        raise Rejected("not_in_call", f"This device is not part of call {call.id}.")
    return member


def _on_mute(call: GroupCall, event: MuteEvent) -> tuple[GroupCall, list[Effect]]:
    member = _member(call, event.device)
    changed = replace(
        member, audio_muted=event.audio_muted, video_muted=event.video_muted, screen=event.screen
    )
    if changed == member:
        return call, []
    call = replace(call, members={**call.members, event.device: changed})
    return call, _roster(call)


def _on_published(call: GroupCall, event: PublishedEvent) -> tuple[GroupCall, list[Effect]]:
    member = _member(call, event.device)
    if member.published:
        raise Rejected("already_published", "This device already sends its media to the call.")
    call = replace(call, members={**call.members, event.device: replace(member, published=True)})
    effects: list[Effect] = []
    for other, peer in sorted(call.members.items(), key=lambda item: _order(item[0])):
        if other != event.device and peer.published:
            effects.append(Subscribe(subscriber=event.device, publisher=other))
            effects.append(Subscribe(subscriber=other, publisher=event.device))
    return call, effects


def _on_decline(call: GroupCall, event: sm.DeclineEvent) -> tuple[GroupCall, list[Effect]]:
    if event.device not in call.ringing:
        raise Rejected("not_ringing", f"Call {call.id} is not ringing on this device.")
    reason: m.EndReason = "busy" if event.busy else "declined"
    own = [sm.Send(event.device, m.Ended(call_id=call.id, reason=reason))]
    call, effects = _stop_ringing_account(
        call, event.device.account_id, "declined_elsewhere", spared=event.device
    )
    return call, [*own, *effects]


def _on_hangup(
    call: GroupCall, event: sm.HangupEvent, now: float
) -> tuple[GroupCall, list[Effect]]:
    if event.device in call.ringing:
        return _on_decline(call, sm.DeclineEvent(event.device))
    _member(call, event.device)
    return _leave(call, event.device, "hangup", now)


def _leave(
    call: GroupCall, device: DeviceRef, reason: m.EndReason, now: float
) -> tuple[GroupCall, list[Effect]]:
    member = call.members[device]
    members = {d: mb for d, mb in call.members.items() if d != device}
    call = replace(call, members=members)
    effects: list[Effect] = [sm.Send(device, m.Ended(call_id=call.id, reason=reason))]
    if member.lost:
        effects.append(sm.ClearTimer("resume", device))
    if member.published:
        effects.append(RemoveParticipant(member.participant))
    if members:
        return call, effects + _roster(call)
    return _end(call, effects, now)


def _end(call: GroupCall, effects: list[Effect], now: float) -> tuple[GroupCall, list[Effect]]:
    """The last participant left: whoever still rings missed the call."""
    effects = list(effects)
    for device in sorted(call.ringing, key=_order):
        effects.append(sm.Send(device, m.Ended(call_id=call.id, reason="missed")))
    effects.extend(_missed(call, call.awaiting, now))
    effects += [sm.ClearTimer("ring"), CloseRoom(), sm.Finished()]
    ended = replace(call, phase=Phase.ENDED, ringing=frozenset(), awaiting=frozenset())
    return ended, effects


def _missed(call: GroupCall, accounts: frozenset[str], now: float) -> list[Effect]:
    host = call.host.account_id
    return [sm.RecordMissed(account, host, now) for account in sorted(accounts)]


def _on_ring_timeout(call: GroupCall, now: float) -> tuple[GroupCall, list[Effect]]:
    if not call.awaiting:
        raise Rejected("not_ringing", f"Call {call.id} is no longer ringing.")
    effects: list[Effect] = [
        sm.Send(device, m.Ended(call_id=call.id, reason="missed"))
        for device in sorted(call.ringing, key=_order)
    ]
    effects.extend(_missed(call, call.awaiting, now))
    return replace(call, ringing=frozenset(), awaiting=frozenset()), effects


def _on_lost(call: GroupCall, event: sm.DeviceLost, now: float) -> tuple[GroupCall, list[Effect]]:
    if event.device in call.ringing:
        return replace(call, ringing=call.ringing - {event.device}), []
    member = _member(call, event.device)
    lost = replace(member, lost=True)
    call = replace(call, members={**call.members, event.device: lost})
    timer = sm.SetTimer("resume", now + call.resume_window_s, event.device)
    return call, [timer, *_roster(call)]


def _on_resumed(call: GroupCall, event: sm.DeviceResumed) -> tuple[GroupCall, list[Effect]]:
    member = _member(call, event.device)
    if not member.lost:
        raise Rejected("not_lost", "This device had not lost its connection.")
    call = replace(call, members={**call.members, event.device: replace(member, lost=False)})
    return call, [sm.ClearTimer("resume", event.device), *_roster(call)]


def _on_online(call: GroupCall, event: sm.DeviceOnline) -> tuple[GroupCall, list[Effect]]:
    if event.device.account_id not in call.awaiting or event.device in call.ringing:
        raise Rejected("not_ringing", f"Call {call.id} is not ringing for this account.")
    call = replace(call, ringing=call.ringing | {event.device})
    return call, [sm.Send(event.device, _incoming(call, event.busy))]


def _on_gone(
    call: GroupCall,
    event: sm.DeviceGone | sm.ResumeTimeout | MediaFailed,
    now: float,
) -> tuple[GroupCall, list[Effect]]:
    if event.device in call.ringing:
        return replace(call, ringing=call.ringing - {event.device}), []
    member = _member(call, event.device)
    if isinstance(event, sm.ResumeTimeout) and not member.lost:
        raise Rejected("not_lost", "This device had not lost its connection.")
    reason: m.EndReason = "media_failed" if isinstance(event, MediaFailed) else "peer_lost"
    return _leave(call, event.device, reason, now)


def end_media_failed(call: GroupCall, now: float) -> tuple[GroupCall, list[Effect]]:
    """The room's media node died: every member gets ``media_failed`` at once (no roster
    updates in between), and whoever still rings missed the call.

    Not an ``Event``: it comes from the media node, not from a device.
    """
    if call.phase is Phase.ENDED:
        raise Rejected("call_ended", f"Call {call.id} has already ended.")
    members = sorted(call.members, key=_order)
    effects: list[Effect] = [
        sm.Send(d, m.Ended(call_id=call.id, reason="media_failed")) for d in members
    ]
    effects.extend(sm.ClearTimer("resume", d) for d in members if call.members[d].lost)
    return _end(replace(call, members={}), effects, now)


def end_by_operator(call: GroupCall) -> tuple[GroupCall, list[Effect]]:
    """An operator ends the call: everyone in it and every device still ringing gets ``operator``.

    Not an ``Event``: no device can cause it.
    """
    if call.phase is Phase.ENDED:
        raise Rejected("call_ended", f"Call {call.id} has already ended.")
    told = sorted({*call.members, *call.ringing}, key=_order)
    effects: list[Effect] = [sm.Send(d, m.Ended(call_id=call.id, reason="operator")) for d in told]
    effects.extend(sm.ClearTimer("resume", d) for d, mb in call.members.items() if mb.lost)
    effects += [sm.ClearTimer("ring"), CloseRoom(), sm.Finished()]
    ended = replace(call, phase=Phase.ENDED, members={}, ringing=frozenset(), awaiting=frozenset())
    return ended, effects
