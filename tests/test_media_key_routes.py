"""The pure core of key routing (``signaling/calls/media_keys.py``): who may send keys in which
call, and who gets what. Table-driven, no I/O."""

from __future__ import annotations

import pytest

from signaling.calls import group as g
from signaling.calls import machine as sm
from signaling.calls import media_keys
from signaling.calls.errors import CallError
from signaling.protocol import messages as m

CALL = "c" * 32
A, B, C, STRANGER, RINGING = (sm.DeviceRef(x, x + "-device") for x in "abcsr")


def _person(device: sm.DeviceRef) -> m.Person:
    return m.Person(account_id=device.account_id, handle=None, display_name=None)


GROUP = g.GroupCall(
    id=CALL,
    host=_person(A),
    media="audio",
    invited=frozenset({"a", "b", "c", "r"}),
    members={d: g.Member(participant=f"{d.account_id}0", person=_person(d)) for d in (A, B, C)},
    ringing=frozenset({RINGING}),
)


def _one_to_one(*, sfu: bool, connected: bool = True) -> sm.Call:
    return sm.Call(
        id=CALL, caller=A, callee_account="b", media="audio", relay_only=sfu,
        caller_card=_person(A), callee_card=_person(B), sfu=sfu,
        phase=sm.Phase.CONNECTED if connected else sm.Phase.RINGING,
        callee=B if connected else None, ringing=frozenset() if connected else frozenset({B}),
    )  # fmt: skip


def _keys(*participants: str) -> m.MediaKeys:
    entries = [m.MediaKeyFor(participant=p, blob=f"blob-{p}") for p in participants]
    return m.MediaKeys(call_id=CALL, kid=4, keys=entries)


@pytest.mark.parametrize(
    ("named", "expected"),
    [
        (["b0", "c0"], [(B, "b0"), (C, "c0")]),
        (["c0"], [(C, "c0")]),
        (["a0", "b0"], [(B, "b0")]),  # yourself: skipped
        (["ffff", "r0", "c0"], [(C, "c0")]),  # unknown, or only ringing: skipped
    ],
)
def test_group_keys_reach_the_named_members(
    named: list[str], expected: list[tuple[sm.DeviceRef, str]]
) -> None:
    routed = media_keys.route_keys(GROUP, A, _keys(*named))
    assert [(to, msg.blob) for to, msg in routed] == [(to, f"blob-{p}") for to, p in expected]
    for _, message in routed:
        assert isinstance(message, m.MediaKey)
        assert (message.call_id, message.participant, message.kid) == (CALL, "a0", 4)


@pytest.mark.parametrize(
    ("call", "device", "code"),
    [
        (GROUP, STRANGER, "unknown_call"),
        (GROUP, RINGING, "not_in_call"),
        (_one_to_one(sfu=False), A, "unexpected_message"),
        (_one_to_one(sfu=True, connected=False), A, "not_in_call"),
        (_one_to_one(sfu=True, connected=False), B, "not_in_call"),
        (_one_to_one(sfu=True), STRANGER, "unknown_call"),
    ],
)
def test_who_may_not_send_keys(
    call: g.GroupCall | sm.Call, device: sm.DeviceRef, code: str
) -> None:
    with pytest.raises(CallError) as refused:
        media_keys.route_keys(call, device, _keys("b0"))
    assert (refused.value.code, refused.value.call_id) == (code, CALL)


def test_a_one_to_one_call_through_the_sfu_routes_between_its_legs() -> None:
    call = _one_to_one(sfu=True)
    a, b = (sm.leg_participant(CALL, d) for d in (A, B))
    [(to, message)] = media_keys.route_keys(call, A, _keys(b, a))
    assert (to, message) == (B, m.MediaKey(call_id=CALL, participant=a, kid=4, blob=f"blob-{b}"))
    limiter = media_keys.RequestLimiter()
    asked = m.MediaKeyRequest(call_id=CALL, participant=a)
    assert media_keys.route_request(call, B, asked, limiter, 0.0) == [
        (A, m.PeerMediaKeyRequest(call_id=CALL, participant=b))
    ]
    assert media_keys.route_request(call, B, asked, limiter, 0.5) == []


def test_naming_someone_twice_is_refused() -> None:
    with pytest.raises(CallError) as refused:
        media_keys.route_keys(GROUP, A, _keys("b0", "c0", "b0"))
    assert refused.value.code == "invalid_message"
