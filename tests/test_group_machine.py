"""The group call machine, stepped by hand with a fake clock: every event, legal and illegal."""

from __future__ import annotations

from dataclasses import replace

import pytest

from signaling.calls import group as g
from signaling.calls import machine as sm
from signaling.calls.machine import DeviceRef, Phase, Rejected
from signaling.protocol import messages as m

HOST = DeviceRef("host", "h1")
BOB1, BOB2 = DeviceRef("bob", "b1"), DeviceRef("bob", "b2")
CAROL = DeviceRef("carol", "c1")
DAVE_OFFLINE = "dave"
NOW = 1000.0


def person(account: str) -> m.Person:
    return m.Person(account_id=account, handle=account, display_name=None)


def fresh() -> tuple[g.GroupCall, list[g.Effect]]:
    call = g.GroupCall(
        id="c" * 32,
        host=person("host"),
        media="video",
        invited=frozenset({"host", "bob", "carol", DAVE_OFFLINE}),
        ring_timeout_s=60,
        resume_window_s=30,
    )
    online = {"bob": frozenset({BOB1, BOB2}), "carol": frozenset({CAROL}), "dave": frozenset()}
    return g.start(call, HOST, "0" * 16, online, frozenset({CAROL}), NOW, ref="r1")


def sends(effects: list[g.Effect]) -> list[tuple[DeviceRef, m.ServerMessage]]:
    return [(e.to, e.message) for e in effects if isinstance(e, sm.Send)]


def ended_to(effects: list[g.Effect]) -> dict[DeviceRef, str]:
    return {to: msg.reason for to, msg in sends(effects) if isinstance(msg, m.Ended)}


def roster_of(effects: list[g.Effect]) -> set[DeviceRef]:
    return {to for to, msg in sends(effects) if isinstance(msg, m.Participants)}


def join(call: g.GroupCall, device: DeviceRef, pid: str) -> tuple[g.GroupCall, list[g.Effect]]:
    return g.transition(call, g.JoinEvent(device, pid, person(device.account_id)), NOW + 1)


def test_start_rings_every_online_invitee_wakes_the_offline_one_and_seats_the_host() -> None:
    call, effects = fresh()
    incoming = {to: msg for to, msg in sends(effects) if isinstance(msg, m.Incoming)}
    assert set(incoming) == {BOB1, BOB2, CAROL}
    assert all(msg.group and msg.caller.account_id == "host" for msg in incoming.values())
    assert incoming[CAROL].busy and not incoming[BOB1].busy
    assert g.sm.WakeUp(DAVE_OFFLINE) in effects
    assert sm.SetTimer("ring", NOW + 60) in effects
    joined = [msg for to, msg in sends(effects) if isinstance(msg, m.Joined)]
    assert [(j.participant, j.ref) for j in joined] == [("0" * 16, "r1")]
    assert set(call.members) == {HOST} and call.awaiting == {"bob", "carol", "dave"}


def test_joining_stops_the_other_devices_of_that_account_and_everyone_gets_the_roster() -> None:
    call, _ = fresh()
    call, effects = join(call, BOB2, "b" * 16)
    assert ended_to(effects) == {BOB1: "answered_elsewhere"}
    assert roster_of(effects) == {HOST, BOB2}
    assert call.ringing == {CAROL} and call.awaiting == {"carol", "dave"}
    listing = next(msg for _, msg in sends(effects) if isinstance(msg, m.Participants))
    assert [p.participant for p in listing.participants] == ["b" * 16, "0" * 16]


def test_decline_ends_ringing_for_that_account_only() -> None:
    call, _ = fresh()
    call, effects = g.transition(call, sm.DeclineEvent(BOB1), NOW)
    assert ended_to(effects) == {BOB1: "declined", BOB2: "declined_elsewhere"}
    assert roster_of(effects) == set()  # the others are not told who declined
    assert call.ringing == {CAROL}


def test_ring_timeout_records_missed_calls_and_the_call_goes_on() -> None:
    call, _ = fresh()
    call, _ = join(call, CAROL, "c" * 16)
    call, effects = g.transition(call, sm.RingTimeout(), NOW + 60)
    assert ended_to(effects) == {BOB1: "missed", BOB2: "missed"}
    missed = {e.callee_account for e in effects if isinstance(e, sm.RecordMissed)}
    assert missed == {"bob", "dave"}
    assert call.phase is Phase.CONNECTED and set(call.members) == {HOST, CAROL}
    with pytest.raises(Rejected) as again:
        g.transition(call, sm.RingTimeout(), NOW + 61)
    assert again.value.code == "not_ringing"


def test_publishing_subscribes_each_published_pair_both_ways() -> None:
    call, _ = fresh()
    call, _ = join(call, CAROL, "c" * 16)
    call, first = g.transition(call, g.PublishedEvent(HOST), NOW)
    assert [e for e in first if isinstance(e, g.Subscribe)] == []
    call, second = g.transition(call, g.PublishedEvent(CAROL), NOW)
    assert {(e.subscriber, e.publisher) for e in second if isinstance(e, g.Subscribe)} == {
        (CAROL, HOST),
        (HOST, CAROL),
    }
    with pytest.raises(Rejected) as twice:
        g.transition(call, g.PublishedEvent(CAROL), NOW)
    assert twice.value.code == "already_published"


def test_leaving_removes_from_the_sfu_and_the_last_one_out_ends_the_call() -> None:
    call, _ = fresh()
    call, _ = join(call, CAROL, "c" * 16)
    call, _ = g.transition(call, g.PublishedEvent(HOST), NOW)
    call, effects = g.transition(call, sm.HangupEvent(HOST), NOW + 5)
    assert ended_to(effects) == {HOST: "hangup"}
    assert g.RemoveParticipant("0" * 16) in effects and roster_of(effects) == {CAROL}
    call, effects = g.transition(call, sm.HangupEvent(CAROL), NOW + 6)
    assert ended_to(effects) == {CAROL: "hangup", BOB1: "missed", BOB2: "missed"}
    assert not any(isinstance(e, g.RemoveParticipant) for e in effects)  # never in the SFU
    assert effects[-2:] == [g.CloseRoom(), sm.Finished()]
    assert {e.callee_account for e in effects if isinstance(e, sm.RecordMissed)} == {"bob", "dave"}
    with pytest.raises(Rejected) as after:
        join(call, BOB1, "b" * 16)
    assert after.value.code == "call_ended"


def test_a_participant_can_leave_and_rejoin_with_a_new_participant_id() -> None:
    call, _ = fresh()
    call, _ = join(call, CAROL, "c" * 16)
    call, _ = g.transition(call, sm.HangupEvent(CAROL), NOW)
    call, effects = join(call, CAROL, "d" * 16)
    assert call.members[CAROL].participant == "d" * 16
    assert roster_of(effects) == {HOST, CAROL}


def test_lost_device_is_shown_reconnecting_then_dropped_after_the_window() -> None:
    call, _ = fresh()
    call, _ = join(call, CAROL, "c" * 16)
    call, _ = g.transition(call, g.PublishedEvent(CAROL), NOW)
    call, effects = g.transition(call, sm.DeviceLost(CAROL), NOW)
    assert sm.SetTimer("resume", NOW + 30, CAROL) in effects
    listing = next(msg for _, msg in sends(effects) if isinstance(msg, m.Participants))
    assert {p.participant: p.connected for p in listing.participants} == {
        "0" * 16: True,
        "c" * 16: False,
    }
    resumed, effects = g.transition(call, sm.DeviceResumed(CAROL), NOW + 3)
    assert sm.ClearTimer("resume", CAROL) in effects and not resumed.members[CAROL].lost
    call, effects = g.transition(call, sm.ResumeTimeout(CAROL), NOW + 30)
    assert ended_to(effects) == {CAROL: "peer_lost"} and roster_of(effects) == {HOST}
    assert g.RemoveParticipant("c" * 16) in effects


def test_media_failure_drops_the_participant() -> None:
    call, _ = fresh()
    call, _ = join(call, CAROL, "c" * 16)
    call, effects = g.transition(call, g.MediaFailed(CAROL), NOW)
    assert ended_to(effects) == {CAROL: "media_failed"} and set(call.members) == {HOST}


def test_late_device_of_an_awaited_account_rings() -> None:
    call, _ = fresh()
    dave = DeviceRef(DAVE_OFFLINE, "d1")
    call, effects = g.transition(call, sm.DeviceOnline(dave), NOW + 2)
    assert [type(msg) for _, msg in sends(effects)] == [m.Incoming] and dave in call.ringing


def test_mute_is_shown_to_everyone_once() -> None:
    call, _ = fresh()
    call, _ = join(call, CAROL, "c" * 16)
    call, effects = g.transition(call, g.MuteEvent(CAROL, True, False), NOW)
    assert roster_of(effects) == {HOST, CAROL} and call.members[CAROL].audio_muted
    _, again = g.transition(call, g.MuteEvent(CAROL, True, False), NOW)
    assert again == []


def test_a_full_call_refuses_one_more() -> None:
    call, _ = fresh()
    call = replace(call, max_participants=2)
    call, _ = join(call, CAROL, "c" * 16)
    with pytest.raises(Rejected) as full:
        join(call, BOB1, "b" * 16)
    assert full.value.code == "call_full"


ILLEGAL: list[tuple[str, g.Event, str]] = [
    ("stranger joins", g.JoinEvent(DeviceRef("eve", "e"), "e" * 16, person("eve")), "not_ringing"),
    ("member joins twice", g.JoinEvent(HOST, "1" * 16, person("host")), "not_ringing"),
    ("non-member mutes", g.MuteEvent(BOB1, True, True), "not_in_call"),
    ("non-member publishes", g.PublishedEvent(BOB1), "not_in_call"),
    ("stranger hangs up", sm.HangupEvent(DeviceRef("eve", "e")), "not_in_call"),
    ("member declines", sm.DeclineEvent(HOST), "not_ringing"),
    ("resume without loss", sm.DeviceResumed(HOST), "not_lost"),
    ("resume timeout without loss", sm.ResumeTimeout(HOST), "not_lost"),
    ("stranger comes online", sm.DeviceOnline(DeviceRef("eve", "e")), "not_ringing"),
]


@pytest.mark.parametrize(
    ("event", "code"), [(e, c) for _, e, c in ILLEGAL], ids=[i for i, _, _ in ILLEGAL]
)
def test_illegal_events_are_rejected_with_a_code(event: g.Event, code: str) -> None:
    call, _ = fresh()
    with pytest.raises(Rejected) as rejected:
        g.transition(call, event, NOW)
    assert rejected.value.code == code


def test_a_dead_media_node_ends_the_call_for_every_member_at_once() -> None:
    call, _ = fresh()
    call, _ = join(call, BOB1, "b" * 16)
    call, _ = g.transition(call, sm.DeviceLost(HOST), NOW + 2)
    call, effects = g.end_media_failed(call, NOW + 3)
    # Members: media_failed, with no roster in between; whoever still rings missed it.
    assert ended_to(effects) == {HOST: "media_failed", BOB1: "media_failed", CAROL: "missed"}
    assert not roster_of(effects)
    assert sm.ClearTimer("resume", HOST) in effects and g.CloseRoom() in effects
    assert sm.RecordMissed("carol", "host", NOW + 3) in effects
    assert effects[-1] == sm.Finished() and call.phase is Phase.ENDED
    with pytest.raises(Rejected) as rejected:
        g.end_media_failed(call, NOW + 4)
    assert rejected.value.code == "call_ended"
