"""Media keys between the participants of a call through the SFU (docs/e2ee.md): who gets which
``media_key`` and ``media_key_request``. Pure: the call, the message and the time in, the
deliveries out. The blobs pass through unread.
"""

from __future__ import annotations

from signaling.calls import kinds
from signaling.calls.errors import CallError
from signaling.calls.kinds import AnyCall
from signaling.calls.machine import DeviceRef
from signaling.protocol import messages as m

#: At most one ``media_key_request`` per (requester, asked participant) passes in this time.
REQUEST_INTERVAL_S = 1.0

_KEEP = 256

Delivery = tuple[DeviceRef, m.ServerMessage]


def present(call: AnyCall) -> dict[str, DeviceRef]:
    """The devices whose media goes through the call's SFU room, by participant id."""
    found: dict[str, DeviceRef] = {}
    for device in kinds.sfu_devices(call):
        participant = kinds.sfu_participant(call, device)
        if participant is not None:
            found[participant] = device
    return found


def sender(call: AnyCall, device: DeviceRef) -> str:
    """The device's participant id; a typed refusal when it has none in this call."""
    participant = kinds.sfu_participant(call, device)
    if participant is not None:
        return participant
    if kinds.talking(call, device):
        raise CallError(
            "unexpected_message",
            "This call does not go through the SFU: its media is end to end already.",
            call.id,
        )
    if call.involves(device):
        raise CallError("not_in_call", "Join the call before sending media keys.", call.id)
    raise CallError("unknown_call", "No such call on this device.", call.id)


def route_keys(call: AnyCall, device: DeviceRef, message: m.MediaKeys) -> list[Delivery]:
    """Each named participant still in the call gets its blob; others are skipped."""
    me = sender(call, device)
    named = [entry.participant for entry in message.keys]
    if len(set(named)) != len(named):
        raise CallError("invalid_message", "Name each participant at most once.", call.id)
    to = present(call)
    return [
        (to[entry.participant], m.MediaKey(
            call_id=call.id, participant=me, kid=message.kid, blob=entry.blob
        ))
        for entry in message.keys
        if entry.participant in to and entry.participant != me
    ]  # fmt: skip


class RequestLimiter:
    """When each (call, requester, asked) pair last had a request passed on."""

    def __init__(self) -> None:
        self._last: dict[str, dict[tuple[str, str], float]] = {}

    def allow(self, call_id: str, requester: str, asked: str, now: float) -> bool:
        last = self._last.setdefault(call_id, {})
        if len(last) > _KEEP:  # rejoins make new participant ids: keep only the recent ones
            for pair in [p for p, at in last.items() if now - at >= REQUEST_INTERVAL_S]:
                del last[pair]
        previous = last.get((requester, asked))
        if previous is not None and now - previous < REQUEST_INTERVAL_S:
            return False
        last[(requester, asked)] = now
        return True

    def forget(self, call_id: str) -> None:
        self._last.pop(call_id, None)


def route_request(
    call: AnyCall,
    device: DeviceRef,
    message: m.MediaKeyRequest,
    limiter: RequestLimiter,
    now: float,
) -> list[Delivery]:
    """The asked participant hears who wants its key, unless it is gone or was just asked."""
    me = sender(call, device)
    asked = present(call).get(message.participant)
    if asked is None or message.participant == me:
        return []
    if not limiter.allow(call.id, me, message.participant, now):
        return []
    return [(asked, m.PeerMediaKeyRequest(call_id=call.id, participant=me))]
