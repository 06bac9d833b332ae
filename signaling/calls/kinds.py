"""The two kinds of call, 1:1 and group, seen together: what the adapter asks of either.

Pure functions over the machines' immutable call values; ``service.py`` dispatches through them
so that it handles both kinds with one set of effects.
"""

from __future__ import annotations

from collections.abc import Sequence

from directory.records import Account
from signaling.calls import group as g
from signaling.calls import machine as sm
from signaling.protocol import messages as m

AnyCall = sm.Call | g.GroupCall
AnyEvent = sm.Event | g.Event


def person(account: Account) -> m.Person:
    return m.Person(account_id=account.id, handle=account.handle, display_name=account.display_name)


def step(call: AnyCall, event: AnyEvent, now: float) -> tuple[AnyCall, Sequence[g.Effect]]:
    if isinstance(call, g.GroupCall):
        if isinstance(
            event, sm.AcceptEvent | sm.SignalEvent | sm.MuteEvent | sm.FallbackEvent | sm.Superseded
        ):
            raise sm.Rejected("unexpected_message", "This message does not apply to group calls.")
        return g.transition(call, event, now)
    if isinstance(event, g.JoinEvent | g.AddEvent | g.MuteEvent | g.PublishedEvent | g.MediaFailed):
        raise sm.Rejected("unexpected_message", "This message applies to group calls only.")
    return sm.transition(call, event, now)


def may_act(call: AnyCall, event: AnyEvent, device: sm.DeviceRef) -> bool:
    if isinstance(call, g.GroupCall) and isinstance(event, g.JoinEvent):
        return call.may_join(device) or call.involves(device)
    return call.involves(device)


def involved(call: AnyCall) -> tuple[sm.DeviceRef, ...]:
    if isinstance(call, sm.Call):
        return (*call.legs(), *sorted(call.ringing, key=lambda d: (d.account_id, d.device_id)))
    return (*call.members, *call.ringing)


def is_lost(call: AnyCall, device: sm.DeviceRef) -> bool:
    if isinstance(call, sm.Call):
        return device in call.lost
    member = call.members.get(device)
    return member is not None and member.lost


def talking(call: AnyCall, device: sm.DeviceRef) -> bool:
    """The device is in the call's conversation (not merely being rung)."""
    if isinstance(call, sm.Call):
        return call.phase is sm.Phase.CONNECTED and device in call.legs()
    return device in call.members


def sfu_devices(call: AnyCall) -> tuple[sm.DeviceRef, ...]:
    if isinstance(call, g.GroupCall):
        return tuple(call.members)
    return call.legs() if call.sfu else ()


def sfu_participant(call: AnyCall | None, device: sm.DeviceRef) -> str | None:
    """The device's participant id in the call's SFU room, if its media goes there."""
    if isinstance(call, g.GroupCall):
        member = call.members.get(device)
        return None if member is None else member.participant
    if call is None or not call.sfu or call.phase is not sm.Phase.CONNECTED:
        return None
    return sm.leg_participant(call.id, device) if device in call.legs() else None
