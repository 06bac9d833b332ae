"""The key schedule (design §6) as a pure state machine: membership, key messages, drops."""

from __future__ import annotations

import itertools

import pytest

from signaling.sdk.e2ee.keyschedule import (
    PREVIOUS_KEY_S,
    KeyframeWanted,
    KeySchedule,
    RequestKey,
    SendKeys,
)
from signaling.sdk.e2ee.sframe import Drop


def _schedule() -> KeySchedule:
    numbers = itertools.count(1)
    return KeySchedule("me", draw=lambda: bytes([next(numbers)]) * 16)


@pytest.mark.parametrize(
    ("rosters", "expected"),
    [
        # Alone: a key to send under, no one to send it to.
        ([["me"]], [[]]),
        ([["me", "a", "b"]], [[SendKeys(0, bytes([1]) * 16, ("a", "b"))]]),
        # A joiner: a new key for everyone then present, the joiner included.
        (
            [["me", "a"], ["me", "a", "c"]],
            [[SendKeys(0, bytes([1]) * 16, ("a",))], [SendKeys(1, bytes([2]) * 16, ("a", "c"))]],
        ),
        # A leaver: a new key, not for the leaver.
        (
            [["me", "a", "b"], ["me", "a"]],
            [[SendKeys(0, bytes([1]) * 16, ("a", "b"))], [SendKeys(1, bytes([2]) * 16, ("a",))]],
        ),
        # The same roster again (a repeated participants message): nothing new.
        ([["me", "a"], ["a", "me"]], [[SendKeys(0, bytes([1]) * 16, ("a",))], []]),
        # Alone, then someone joins.
        ([["me"], ["me", "a"]], [[], [SendKeys(1, bytes([2]) * 16, ("a",))]]),
    ],
)
def test_membership_draws_a_new_key_for_those_present(
    rosters: list[list[str]], expected: list[list[SendKeys]]
) -> None:
    schedule = _schedule()
    got = [schedule.membership(roster, now=float(i)) for i, roster in enumerate(rosters)]
    assert got == expected
    assert schedule.send is not None


def test_sending_switches_to_the_new_key_at_once_with_a_fresh_counter() -> None:
    schedule = _schedule()
    schedule.membership(["me", "a"], 0.0)
    first = schedule.send
    assert first is not None and [next(first.counter) for _ in range(3)] == [0, 1, 2]
    schedule.membership(["me", "a", "b"], 1.0)
    second = schedule.send
    assert second is not None and second.kid == 1 and next(second.counter) == 0
    assert second.base_key != first.base_key


def test_a_leavers_keys_are_forgotten_and_its_new_keys_refused() -> None:
    schedule = _schedule()
    schedule.membership(["me", "a", "b"], 0.0)
    schedule.key_received("b", 0, bytes(16), 0.0)
    assert schedule.receive_key("b", 0, 0.1) is not None
    schedule.membership(["me", "a"], 1.0)
    assert schedule.receive_key("b", 0, 1.1) is None
    assert schedule.key_received("b", 1, bytes(16), 1.2) == []
    assert schedule.receive_key("b", 1, 1.3) is None
    assert schedule.counters["key_from_unknown_sender"] == 1


def test_the_previous_key_lives_on_for_a_while() -> None:
    schedule = _schedule()
    schedule.membership(["me", "a"], 0.0)
    schedule.key_received("a", 0, bytes(16), 0.0)
    schedule.key_received("a", 1, bytes([1]) * 16, 10.0)
    assert schedule.receive_key("a", 0, 10.0 + PREVIOUS_KEY_S - 0.01) is not None
    assert schedule.receive_key("a", 0, 10.0 + PREVIOUS_KEY_S) is None
    assert schedule.receive_key("a", 1, 100.0) is not None
    schedule.key_received("a", 2, bytes([2]) * 16, 11.0)
    schedule.key_received("a", 3, bytes([3]) * 16, 12.0)
    # Only the one before the newest is kept.
    assert [k for k in range(4) if schedule.receive_key("a", k, 12.5)] == [2, 3]


def test_a_repeated_key_keeps_its_replay_window() -> None:
    schedule = _schedule()
    schedule.membership(["me", "a"], 0.0)
    schedule.key_received("a", 0, bytes(16), 0.0)
    held = schedule.receive_key("a", 0, 0.0)
    assert held is not None
    held.window.mark(5)
    schedule.key_received("a", 0, bytes(16), 1.0)
    assert schedule.receive_key("a", 0, 1.0) is held


def test_missing_keys_are_asked_for_at_most_once_a_second_then_a_keyframe_is_wanted() -> None:
    schedule = _schedule()
    schedule.membership(["me", "a", "b"], 0.0)
    assert schedule.dropped("a", Drop.UNKNOWN_KEY, 1.0) == [RequestKey("a")]
    assert schedule.dropped("a", Drop.UNKNOWN_KEY, 1.5) == []
    assert schedule.dropped("b", Drop.UNKNOWN_KEY, 1.5) == [RequestKey("b")]
    assert schedule.dropped("a", Drop.UNKNOWN_KEY, 2.0) == [RequestKey("a")]
    assert schedule.key_received("a", 0, bytes(16), 2.1) == [KeyframeWanted("a")]
    assert schedule.key_received("a", 1, bytes(16), 2.2) == []
    assert schedule.counters["unknown_key"] == 4
    assert schedule.counters["key_requests"] == 3
    assert schedule.counters["key_requests_held"] == 1


@pytest.mark.parametrize(
    ("reason", "asks"),
    [
        (Drop.UNKNOWN_KEY, True),
        (Drop.AUTH_FAILED, True),
        (Drop.REPLAYED, False),
        (Drop.MALFORMED, False),
    ],
)
def test_drops_are_counted_and_some_ask_for_the_key_again(reason: Drop, asks: bool) -> None:
    schedule = _schedule()
    schedule.membership(["me", "a"], 0.0)
    assert schedule.dropped("a", reason, 5.0) == ([RequestKey("a")] if asks else [])
    assert schedule.counters[reason.value] == 1


def test_a_blob_that_does_not_open_asks_again() -> None:
    schedule = _schedule()
    schedule.membership(["me", "a"], 0.0)
    assert schedule.blob_failed("a", 1.0) == [RequestKey("a")]
    assert schedule.blob_failed("a", 1.2) == []
    assert schedule.blob_failed("stranger", 3.0) == []
    assert schedule.counters["bad_blob"] == 3


def test_a_key_request_gets_the_current_key_only() -> None:
    schedule = _schedule()
    schedule.membership(["me", "a"], 0.0)
    schedule.membership(["me", "a", "b"], 1.0)
    assert schedule.key_requested("a") == [SendKeys(1, bytes([2]) * 16, ("a",))]
    assert schedule.key_requested("stranger") == []
