"""The call state machine, table-driven: every (state, event) pair, the illegal ones included."""

from __future__ import annotations

from dataclasses import replace

import pytest

from signaling.calls import machine as sm
from signaling.protocol import messages as m

NOW = 1_000.0
CALLER = sm.DeviceRef("a" * 32, "1" * 32)
PHONE = sm.DeviceRef("b" * 32, "2" * 32)
LAPTOP = sm.DeviceRef("b" * 32, "3" * 32)
STRANGER = sm.DeviceRef("c" * 32, "4" * 32)
NAMES = {CALLER: "caller", PHONE: "phone", LAPTOP: "laptop", STRANGER: "stranger"}
CALL_ID = "f" * 32
HOST = "candidate:1 1 udp 2122 192.168.1.5 5000 typ host"
RELAYED = "candidate:3 1 udp 100 5.6.7.8 3478 typ relay raddr 1.2.3.4 rport 5000"


def _card(ref: sm.DeviceRef) -> m.Person:
    return m.Person(account_id=ref.account_id, handle=NAMES[ref], display_name=None)


def _base(relay_only: bool = False, reachable: bool = True) -> sm.Call:
    return sm.Call(
        id=CALL_ID,
        caller=CALLER,
        callee_account=PHONE.account_id,
        media="audio",
        relay_only=relay_only,
        caller_card=_card(CALLER),
        callee_card=_card(PHONE),
        reachable=reachable,
    )


def ringing() -> sm.Call:
    call, _ = sm.start(_base(), frozenset({PHONE, LAPTOP}), frozenset(), NOW)
    return call


def connected() -> sm.Call:
    call, _ = sm.transition(ringing(), sm.AcceptEvent(PHONE), NOW)
    return call


def connected_lost() -> sm.Call:
    call, _ = sm.transition(connected(), sm.DeviceLost(PHONE), NOW)
    return call


def ended() -> sm.Call:
    call, _ = sm.transition(connected(), sm.HangupEvent(CALLER), NOW)
    return call


STATES = {
    "ringing": ringing,
    "connected": connected,
    "connected_lost": connected_lost,
    "ended": ended,
}

OFFER = m.Description(call_id=CALL_ID, kind="offer", sdp="v=0")
EVENTS: dict[str, sm.Event] = {
    "accept_by_ringing": sm.AcceptEvent(PHONE),
    "accept_by_stranger": sm.AcceptEvent(STRANGER),
    "decline_by_ringing": sm.DeclineEvent(PHONE),
    "decline_busy": sm.DeclineEvent(PHONE, busy=True),
    "decline_by_stranger": sm.DeclineEvent(STRANGER),
    "hangup_by_caller": sm.HangupEvent(CALLER),
    "hangup_by_phone": sm.HangupEvent(PHONE),
    "hangup_by_stranger": sm.HangupEvent(STRANGER),
    "offer_from_caller": sm.SignalEvent(CALLER, OFFER),
    "offer_from_stranger": sm.SignalEvent(STRANGER, OFFER),
    "mute_by_caller": sm.MuteEvent(CALLER, True, True),
    "mute_by_stranger": sm.MuteEvent(STRANGER, True, False),
    "ring_timeout": sm.RingTimeout(),
    "phone_lost": sm.DeviceLost(PHONE),
    "stranger_lost": sm.DeviceLost(STRANGER),
    "phone_resumed": sm.DeviceResumed(PHONE),
    "phone_resume_timeout": sm.ResumeTimeout(PHONE),
    "glare": sm.Superseded(),
    "laptop_online": sm.DeviceOnline(LAPTOP),
    "stranger_online": sm.DeviceOnline(STRANGER),
    "phone_gone": sm.DeviceGone(PHONE),
    "stranger_gone": sm.DeviceGone(STRANGER),
    "fallback_by_phone": sm.FallbackEvent(PHONE, sfu=False),
    "fallback_to_sfu_by_caller": sm.FallbackEvent(CALLER, sfu=True),
    "fallback_by_stranger": sm.FallbackEvent(STRANGER, sfu=False),
}

DECLINED = {
    "caller": "ended:declined",
    "phone": "ended:declined",
    "laptop": "ended:declined_elsewhere",
}
PEER_LOST = {"caller": "ended:peer_lost", "phone": "ended:peer_lost"}
HUNG_UP = {"caller": "ended:hangup", "phone": "ended:hangup"}
RELAYED_BOTH = {"caller": "relayed", "phone": "relayed"}
# (state, event) -> (phase after, {device: message type or "ended:<reason>"}) or "!<code>"
Outcome = tuple[str, dict[str, str]] | str
TABLE: dict[tuple[str, str], Outcome] = {
    ("ringing", "accept_by_ringing"): (
        "connected",
        {"caller": "accepted", "phone": "accepted", "laptop": "ended:answered_elsewhere"},
    ),
    ("ringing", "accept_by_stranger"): "!not_ringing",
    ("ringing", "decline_by_ringing"): (
        "ended",
        DECLINED,
    ),
    ("ringing", "decline_busy"): (
        "ended",
        {"caller": "ended:busy", "phone": "ended:busy", "laptop": "ended:declined_elsewhere"},
    ),
    ("ringing", "decline_by_stranger"): "!not_ringing",
    ("ringing", "hangup_by_caller"): (
        "ended", {"caller": "ended:cancelled", "phone": "ended:missed", "laptop": "ended:missed"}
    ),
    ("ringing", "hangup_by_phone"): (
        "ended",
        DECLINED,
    ),
    ("ringing", "hangup_by_stranger"): "!not_in_call",
    ("ringing", "offer_from_caller"): "!not_in_call",
    ("ringing", "offer_from_stranger"): "!not_in_call",
    ("ringing", "mute_by_caller"): "!not_in_call",
    ("ringing", "mute_by_stranger"): "!not_in_call",
    ("ringing", "ring_timeout"): (
        "ended", {"caller": "ended:no_answer", "phone": "ended:missed", "laptop": "ended:missed"}
    ),
    ("ringing", "phone_lost"): ("ringing", {}),
    ("ringing", "stranger_lost"): "!not_in_call",
    ("ringing", "phone_resumed"): "!not_lost",
    ("ringing", "phone_resume_timeout"): "!not_lost",
    ("ringing", "glare"): (
        "ended", {"caller": "ended:glare", "phone": "ended:glare", "laptop": "ended:glare"}
    ),
    ("connected", "accept_by_ringing"): "!not_ringing",
    ("connected", "accept_by_stranger"): "!not_ringing",
    ("connected", "decline_by_ringing"): "!not_ringing",
    ("connected", "decline_busy"): "!not_ringing",
    ("connected", "decline_by_stranger"): "!not_ringing",
    ("connected", "hangup_by_caller"): ("ended", HUNG_UP),
    ("connected", "hangup_by_phone"): ("ended", HUNG_UP),
    ("connected", "hangup_by_stranger"): "!not_in_call",
    ("connected", "offer_from_caller"): ("connected", {"phone": "sdp"}),
    ("connected", "offer_from_stranger"): "!not_in_call",
    ("connected", "mute_by_caller"): ("connected", {"phone": "peer_mute"}),
    ("connected", "mute_by_stranger"): "!not_in_call",
    ("connected", "ring_timeout"): "!not_ringing",
    ("connected", "phone_lost"): ("connected", {"caller": "peer_reconnecting"}),
    ("connected", "stranger_lost"): "!not_in_call",
    ("connected", "phone_resumed"): "!not_lost",
    ("connected", "phone_resume_timeout"): "!not_lost",
    ("connected", "glare"): ("ended", {"caller": "ended:glare", "phone": "ended:glare"}),
    ("connected_lost", "accept_by_ringing"): "!not_ringing",
    ("connected_lost", "accept_by_stranger"): "!not_ringing",
    ("connected_lost", "decline_by_ringing"): "!not_ringing",
    ("connected_lost", "decline_busy"): "!not_ringing",
    ("connected_lost", "decline_by_stranger"): "!not_ringing",
    ("connected_lost", "hangup_by_caller"): (
    "ended", HUNG_UP),
    ("connected_lost", "hangup_by_phone"): (
    "ended", HUNG_UP),
    ("connected_lost", "hangup_by_stranger"): "!not_in_call",
    # Messages for a device in its resume window are queued by the adapter, not refused.
    ("connected_lost", "offer_from_caller"): ("connected", {"phone": "sdp"}),
    ("connected_lost", "offer_from_stranger"): "!not_in_call",
    ("connected_lost", "mute_by_caller"): ("connected", {"phone": "peer_mute"}),
    ("connected_lost", "mute_by_stranger"): "!not_in_call",
    ("connected_lost", "ring_timeout"): "!not_ringing",
    ("connected_lost", "phone_lost"): ("connected", {"caller": "peer_reconnecting"}),
    ("connected_lost", "stranger_lost"): "!not_in_call",
    ("connected_lost", "phone_resumed"): ("connected", {"caller": "peer_resumed"}),
    ("connected_lost", "phone_resume_timeout"): (
        "ended", {"caller": "ended:peer_lost", "phone": "ended:peer_lost"}
    ),
    ("connected_lost", "glare"): ("ended", {"caller": "ended:glare", "phone": "ended:glare"}),
    ("ringing", "laptop_online"): ("ringing", {"laptop": "incoming"}),
    ("ringing", "stranger_online"): "!not_ringing",
    ("ringing", "phone_gone"): ("ringing", {}),
    ("ringing", "stranger_gone"): "!not_in_call",
    ("connected", "laptop_online"): "!not_ringing",
    ("connected", "stranger_online"): "!not_ringing",
    ("connected", "phone_gone"): ("ended", PEER_LOST),
    ("connected", "stranger_gone"): "!not_in_call",
    ("connected_lost", "laptop_online"): "!not_ringing",
    ("connected_lost", "stranger_online"): "!not_ringing",
    ("connected_lost", "phone_gone"): ("ended", PEER_LOST),
    ("connected_lost", "stranger_gone"): "!not_in_call",
    ("ringing", "fallback_by_phone"): "!not_in_call",
    ("ringing", "fallback_to_sfu_by_caller"): "!not_in_call",
    ("ringing", "fallback_by_stranger"): "!not_in_call",
    ("connected", "fallback_by_phone"): ("connected", RELAYED_BOTH),
    ("connected", "fallback_to_sfu_by_caller"): ("connected", RELAYED_BOTH),
    ("connected", "fallback_by_stranger"): "!not_in_call",
    # A leg in its resume window hears of the move when it resumes (the adapter queues it).
    ("connected_lost", "fallback_by_phone"): ("connected", RELAYED_BOTH),
    ("connected_lost", "fallback_to_sfu_by_caller"): ("connected", RELAYED_BOTH),
    ("connected_lost", "fallback_by_stranger"): "!not_in_call",
}  # fmt: skip
for event_name in EVENTS:
    TABLE[("ended", event_name)] = "!call_ended"


def _summary(effects: list[sm.Effect]) -> dict[str, str]:
    sent: dict[str, str] = {}
    for effect in effects:
        if isinstance(effect, sm.Send):
            message = effect.message
            label = f"ended:{message.reason}" if isinstance(message, m.Ended) else _tag(message)
            assert NAMES[effect.to] not in sent, "one message per device per event"
            sent[NAMES[effect.to]] = label
    return sent


def _tag(message: m.ServerMessage) -> str:
    tag = type(message).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def test_the_table_covers_every_pair() -> None:
    assert set(TABLE) == {(s, e) for s in STATES for e in EVENTS}


@pytest.mark.parametrize(("state", "event"), sorted(TABLE), ids=lambda v: str(v))
def test_transition(state: str, event: str) -> None:
    call = STATES[state]()
    expected = TABLE[(state, event)]
    if isinstance(expected, str):
        with pytest.raises(sm.Rejected) as rejected:
            sm.transition(call, EVENTS[event], NOW)
        assert rejected.value.code == expected[1:]
        return
    after, effects = sm.transition(call, EVENTS[event], NOW)
    phase, messages = expected
    assert after.phase.value == phase
    assert _summary(effects) == messages
    if phase == "ended":
        assert any(isinstance(e, sm.Finished) for e in effects)
        assert any(isinstance(e, sm.ClearTimer) and e.kind == "ring" for e in effects)


def test_start_rings_every_online_device_and_flags_busy_ones() -> None:
    call, effects = sm.start(_base(), frozenset({PHONE, LAPTOP}), frozenset({LAPTOP}), NOW, "r1")
    assert call.ringing == {PHONE, LAPTOP}
    sends = [e for e in effects if isinstance(e, sm.Send)]
    assert sends[0] == sm.Send(CALLER, m.Ringing(call_id=CALL_ID, ref="r1"))
    busy = {NAMES[e.to]: e.message.busy for e in sends if isinstance(e.message, m.Incoming)}
    assert busy == {"phone": False, "laptop": True}
    assert sm.SetTimer("ring", NOW + sm.RING_TIMEOUT_S) in effects


def test_unreachable_and_offline_callees_look_the_same_to_the_caller() -> None:
    _, hidden = sm.start(_base(reachable=False), frozenset({PHONE}), frozenset(), NOW)
    _, offline = sm.start(_base(), frozenset(), frozenset(), NOW)
    to_caller = [
        [e for e in fx if isinstance(e, sm.Send) and e.to == CALLER] for fx in (hidden, offline)
    ]
    assert to_caller[0] == to_caller[1]
    # Nobody is rung or woken for a callee who may not be reached; an offline one gets a push.
    # Both ask the adapter for the same work (the wake-up's reads), so timing tells nothing.
    assert not any(isinstance(e, sm.Send) and e.to != CALLER for e in hidden)
    assert sm.WakeUp(PHONE.account_id) in offline
    assert sm.WakeUp(PHONE.account_id, send=False) in hidden


def test_missed_call_is_recorded_only_for_a_reachable_callee() -> None:
    for reachable, recorded in ((True, True), (False, False)):
        call, _ = sm.start(_base(reachable=reachable), frozenset(), frozenset(), NOW)
        _, effects = sm.transition(call, sm.RingTimeout(), NOW + 60)
        missed = [e for e in effects if isinstance(e, sm.RecordMissed)]
        assert [e.kept for e in missed] == [recorded]  # the same work, kept or not


def test_relay_only_calls_forward_relay_candidates_only_and_scrubbed() -> None:
    call = replace(connected(), relay_only=True)
    host = m.Ice(call_id=CALL_ID, candidate=HOST)
    relay = m.Ice(call_id=CALL_ID, candidate=RELAYED)
    assert sm.transition(call, sm.SignalEvent(CALLER, host), NOW)[1] == []
    [sent] = sm.transition(call, sm.SignalEvent(CALLER, relay), NOW)[1]
    assert isinstance(sent, sm.Send) and isinstance(sent.message, m.PeerIce)
    assert "typ relay" in sent.message.candidate and "1.2.3.4" not in sent.message.candidate


def test_a_relay_only_call_refuses_a_malformed_sdp_with_a_typed_error() -> None:
    call = replace(connected(), relay_only=True)
    bad = m.Description(call_id=CALL_ID, kind="offer", sdp="v=0\ra=" + HOST)
    with pytest.raises(sm.Rejected) as refused:
        sm.transition(call, sm.SignalEvent(CALLER, bad), NOW)
    assert refused.value.code == "invalid_sdp"


def test_a_dead_media_node_ends_a_relayed_call_for_both_legs() -> None:
    call, effects = sm.end_media_failed(connected_lost())
    reasons = {e.to: e.message.reason for e in effects if isinstance(e, sm.Send)}  # type: ignore[attr-defined]
    assert reasons == {CALLER: "media_failed", PHONE: "media_failed"}
    assert sm.ClearTimer("resume", PHONE) in effects and effects[-1] == sm.Finished()
    assert call.phase is sm.Phase.ENDED
    with pytest.raises(sm.Rejected):
        sm.end_media_failed(call)


def _relayed(effects: list[sm.Effect]) -> dict[sm.DeviceRef, m.Relayed]:
    return {e.to: e.message for e in effects if isinstance(e, sm.Send)
            and isinstance(e.message, m.Relayed)}  # fmt: skip


def test_a_failed_path_moves_the_call_to_turn_and_filters_from_then_on() -> None:
    moved, effects = sm.transition(connected(), sm.FallbackEvent(PHONE, sfu=False), NOW)
    assert (moved.relay_only, moved.sfu, moved.fell_back) == (True, False, True)
    assert {d: r.sfu for d, r in _relayed(effects).items()} == {CALLER: False, PHONE: False}
    assert sm.path(moved, []) == "turn" and sm.path(connected(), [False, False]) == "p2p"
    host = m.Ice(call_id=CALL_ID, candidate=HOST)
    assert sm.transition(moved, sm.SignalEvent(CALLER, host), NOW)[1] == []
    # The other leg's request, crossing the first, changes nothing.
    assert sm.transition(moved, sm.FallbackEvent(CALLER, sfu=False), NOW) == (moved, [])


def test_a_failed_path_moves_the_call_to_the_sfu_with_both_legs_introduced() -> None:
    keys = (sm.DeviceKeys("dk-a", "mk-a", "sig-a"), sm.DeviceKeys("dk-b", "mk-b", "sig-b"))
    moved, effects = sm.transition(connected(), sm.FallbackEvent(CALLER, True, keys), NOW)
    assert (moved.relay_only, moved.sfu, moved.fell_back) == (True, True, True)
    assert sm.path(moved, [False]) == "sfu"
    relayed = _relayed(effects)
    ids = [sm.leg_participant(CALL_ID, CALLER), sm.leg_participant(CALL_ID, PHONE)]
    for device in (CALLER, PHONE):
        assert relayed[device].sfu and relayed[device].participant == ids[device == PHONE]
        entries = relayed[device].participants or []
        assert [(p.participant, p.media_key) for p in entries] == [
            (ids[0], "mk-a"),
            (ids[1], "mk-b"),
        ]
    with pytest.raises(sm.Rejected) as rejected:
        sm.transition(moved, sm.SignalEvent(CALLER, OFFER), NOW)
    assert rejected.value.code == "use_sfu"


def test_a_call_relayed_from_the_start_does_not_fall_back() -> None:
    call, _ = sm.start(_base(relay_only=True), frozenset({PHONE}), frozenset(), NOW)
    call, _ = sm.transition(call, sm.AcceptEvent(PHONE), NOW)
    assert sm.transition(call, sm.FallbackEvent(PHONE, sfu=True), NOW) == (call, [])
