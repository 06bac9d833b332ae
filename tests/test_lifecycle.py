"""Lifecycle events derived from the pure machines: every path of a call, without I/O."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from signaling.calls import group as g
from signaling.calls import machine as sm
from signaling.calls.lifecycle import Lifecycle, LifecycleEvent
from signaling.config import ConfigError, from_env
from signaling.protocol import messages as m

ALICE = sm.DeviceRef("alice-id", "a1")
BOB = sm.DeviceRef("bob-id", "b1")
BOB_LAPTOP = sm.DeviceRef("bob-id", "b2")
CAROL = sm.DeviceRef("carol-id", "c1")


def _person(device: sm.DeviceRef) -> m.Person:
    return m.Person(account_id=device.account_id, handle=None, display_name=None)


def _call(reachable: bool = True) -> sm.Call:
    return sm.Call(
        id="call-1",
        caller=ALICE,
        callee_account=BOB.account_id,
        media="audio",
        relay_only=False,
        caller_card=_person(ALICE),
        callee_card=_person(BOB),
        reachable=reachable,
    )


def _summary(events: Sequence[LifecycleEvent]) -> list[tuple[str, str | None]]:
    return [(e.type, e.participant or e.reason) for e in events]


def _lifecycle() -> Lifecycle:
    return Lifecycle(lambda call_id, account: f"p({account})")


def test_answered_call_from_start_to_hangup() -> None:
    life = _lifecycle()
    call, effects = sm.start(_call(), frozenset({BOB, BOB_LAPTOP}), frozenset(), 0.0)
    events = life.observe(call, effects, 1.0)
    call, effects = sm.transition(call, sm.AcceptEvent(BOB_LAPTOP), 2.0)
    events += life.observe(call, effects, 2.0)
    call, effects = sm.transition(call, sm.HangupEvent(BOB_LAPTOP), 3.0)
    events += life.observe(call, effects, 3.0)
    assert _summary(events) == [
        ("call_started", None),
        ("participant_joined", "p(alice-id)"),
        ("ringing", None),
        ("participant_joined", "p(bob-id)"),
        ("answered", None),
        ("participant_left", "p(alice-id)"),
        ("participant_left", "p(bob-id)"),
        ("ended", "hangup"),
    ]
    assert [e.seq for e in events] == list(range(1, 9))
    assert [e.at for e in events][:3] == [1.0, 1.0, 1.0]
    assert life.live() == 0


@pytest.mark.parametrize(
    ("reachable", "online", "event", "reason", "rang"),
    [
        (True, {BOB}, sm.DeclineEvent(BOB), "declined", True),
        (True, {BOB}, sm.DeclineEvent(BOB, busy=True), "busy", True),
        (True, {BOB}, sm.HangupEvent(ALICE), "cancelled", True),
        (True, {BOB}, sm.RingTimeout(), "no_answer", True),
        (True, set(), sm.RingTimeout(), "no_answer", False),  # offline: woken, never rang
        (False, {BOB}, sm.RingTimeout(), "no_answer", False),  # may not call: rings nowhere
        (True, {BOB}, sm.Superseded(), "glare", True),
    ],
)
def test_unanswered_calls_end_with_the_callers_reason(
    reachable: bool, online: set[sm.DeviceRef], event: sm.Event, reason: str, rang: bool
) -> None:
    life = _lifecycle()
    call, effects = sm.start(_call(reachable), frozenset(online), frozenset(), 0.0)
    events = life.observe(call, effects, 0.0)
    call, effects = sm.transition(call, event, 1.0)
    events += life.observe(call, effects, 1.0)
    types = [e.type for e in events]
    assert ("ringing" in types) is rang
    assert "answered" not in types
    assert events[-1].reason == reason
    assert types[-2:] == ["participant_left", "ended"]


def test_late_device_rings_and_operator_ends() -> None:
    life = _lifecycle()
    call, effects = sm.start(_call(), frozenset(), frozenset(), 0.0)
    assert "ringing" not in [e.type for e in life.observe(call, effects, 0.0)]
    call, effects = sm.transition(call, sm.DeviceOnline(BOB, False), 1.0)
    assert [e.type for e in life.observe(call, effects, 1.0)] == ["ringing"]
    call, effects = sm.end_by_operator(call)
    assert _summary(life.observe(call, effects, 2.0))[-1] == ("ended", "operator")


def test_group_call_participants_are_accounts_not_devices() -> None:
    life = _lifecycle()
    call = g.GroupCall(
        id="group-1", host=_person(ALICE), media="video", invited=frozenset({"alice-id", "bob-id"})
    )
    online = {"bob-id": frozenset({BOB, BOB_LAPTOP})}
    call, effects = g.start(call, ALICE, "pa", online, frozenset(), 0.0)
    events = life.observe(call, effects, 0.0)
    for device, participant in ((BOB, "pb1"), (BOB_LAPTOP, "pb2")):  # bob joins twice
        step = g.JoinEvent(device, participant, _person(device))
        call, effects = g.transition(call, step, 1.0)
        events += life.observe(call, effects, 1.0)
    call, effects = g.transition(call, sm.HangupEvent(BOB), 2.0)
    events += life.observe(call, effects, 2.0)  # bob's laptop is still in: bob has not left
    call, effects = g.end_by_operator(call)
    events += life.observe(call, effects, 3.0)
    assert [(e.type, e.participant or e.reason, e.role) for e in events] == [
        ("call_started", None, None),
        ("participant_joined", "p(alice-id)", "host"),
        ("ringing", None, None),
        ("participant_joined", "p(bob-id)", "guest"),
        ("answered", None, None),
        ("participant_left", "p(alice-id)", "host"),
        ("participant_left", "p(bob-id)", "guest"),
        ("ended", "operator", None),
    ]
    assert events[0].kind == "group" and events[0].media == "video"


def test_nothing_for_an_unknown_call() -> None:
    assert _lifecycle().observe(None, [sm.Finished()], 0.0) == []


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"CALLBOOK_WEBHOOK_URLS": "https://hooks.example.org/cb"}, "CALLBOOK_WEBHOOK_SECRET"),
        ({"CALLBOOK_WEBHOOK_URLS": "ftp://x", "CALLBOOK_WEBHOOK_SECRET": "s"}, "http(s)"),
        ({"CALLBOOK_WEBHOOK_MAX_ATTEMPTS": "0"}, "between 1 and 100"),
    ],
)
def test_webhook_configuration_is_checked(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        from_env(env)


def test_webhook_configuration_from_the_environment() -> None:
    config = from_env(
        {
            "CALLBOOK_WEBHOOK_URLS": "https://a.example/h, https://b.example/h",
            "CALLBOOK_WEBHOOK_SECRET": "s3cret",
            "CALLBOOK_WEBHOOK_MAX_ATTEMPTS": "5",
            "CALLBOOK_WEBHOOK_RETENTION_HOURS": "24",
        }
    )
    assert config.webhook_urls == ("https://a.example/h", "https://b.example/h")
    assert (config.webhook_secret, config.webhook_max_attempts) == ("s3cret", 5)
    assert config.webhook_retention_s == 24 * 3600
