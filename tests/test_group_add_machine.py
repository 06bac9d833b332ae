"""``group_add`` in the pure group machine (issue 17, item 10): who may add, who rings, and
that the ring timer starts again; plus ``mute``'s ``screen`` in the roster (item 7)."""

from __future__ import annotations

import pytest

from signaling.calls import group as g
from signaling.calls import machine as sm
from signaling.calls.machine import DeviceRef, Rejected
from signaling.protocol import messages as m
from tests.test_group_machine import BOB1, BOB2, CAROL, HOST, NOW, fresh, join, sends

ERIN, FRED = DeviceRef("erin", "e1"), DeviceRef("fred", "f1")
LATER = NOW + 30


def in_call() -> g.GroupCall:
    """Bob joined, Carol declined, Dave (offline) still awaited."""
    call, _ = fresh()
    call, _ = join(call, BOB1, "b" * 16)
    call, _ = g.transition(call, sm.DeclineEvent(CAROL, False), NOW + 2)
    return call


def incoming_to(effects: list[g.Effect]) -> dict[DeviceRef, m.Incoming]:
    return {to: msg for to, msg in sends(effects) if isinstance(msg, m.Incoming)}


def test_the_host_rings_new_people_and_the_ring_time_starts_again() -> None:
    call = in_call()
    online = {"erin": frozenset({ERIN}), "fred": frozenset({FRED}), "gina": frozenset()}
    call, effects = g.transition(call, g.AddEvent(HOST, online, frozenset({FRED})), LATER)
    rung = incoming_to(effects)
    assert set(rung) == {ERIN, FRED}
    assert all(msg.group and msg.caller.account_id == "host" for msg in rung.values())
    assert rung[FRED].busy and not rung[ERIN].busy
    assert sm.WakeUp("gina") in effects
    assert sm.SetTimer("ring", LATER + 60) in effects
    assert {"erin", "fred", "gina"} <= call.invited and {"erin", "fred", "gina"} <= call.awaiting
    assert {ERIN, FRED} <= call.ringing
    call, effects = join(call, ERIN, "e" * 16)
    assert ERIN in call.members


@pytest.mark.parametrize(
    ("online", "rung"),
    [
        ({"bob": frozenset({BOB2})}, set()),  # in the call already (on another device)
        ({"dave": frozenset()}, set()),  # still being rung
        ({"carol": frozenset({CAROL})}, {CAROL}),  # declined before: may be asked again
        ({}, set()),  # everyone listed was left out (may not be rung, unknown)
    ],
)
def test_who_is_rung_again(online: dict[str, frozenset[DeviceRef]], rung: set[DeviceRef]) -> None:
    call = in_call()
    after, effects = g.transition(call, g.AddEvent(HOST, online), LATER)
    assert set(incoming_to(effects)) == rung
    assert (sm.SetTimer("ring", LATER + 60) in effects) == bool(rung)
    if not rung:
        assert after == call and effects == []


@pytest.mark.parametrize(
    ("device", "code"), [(BOB1, "not_host"), (CAROL, "not_in_call"), (ERIN, "not_in_call")]
)
def test_only_the_host_in_the_call_adds(device: DeviceRef, code: str) -> None:
    with pytest.raises(Rejected) as refused:
        g.transition(in_call(), g.AddEvent(device, {"erin": frozenset({ERIN})}), LATER)
    assert refused.value.code == code


def test_a_shared_screen_is_in_the_roster_and_ends_with_the_next_mute() -> None:
    call = in_call()
    call, effects = g.transition(call, g.MuteEvent(HOST, False, False, screen=True), LATER)
    rosters = [msg for _, msg in sends(effects) if isinstance(msg, m.Participants)]
    assert len(rosters) == 2  # host and Bob
    for roster in rosters:
        assert {p.person.handle: p.screen for p in roster.participants} == {
            "host": True,
            "bob": False,
        }
    call, _ = g.transition(call, g.MuteEvent(HOST, False, False), LATER + 1)
    assert not call.members[HOST].screen
