"""What a node does about the store coming back, piece by piece: the judgement of other nodes
(pure), the outage watch (pure, with a clock), and call records that expired meanwhile (on the
real store). The whole, with real processes: tests/test_store_outage.py."""

from __future__ import annotations

import logging

import pytest

from directory.storage import keys
from directory.store import Store
from signaling.calls import machine as sm
from signaling.calls.records import CallRecords
from signaling.cluster.liveness import judge
from signaling.cluster.outage import QUIET_END_S, StoreOutage
from signaling.protocol import messages as m

CALLER = sm.DeviceRef("a" * 32, "d" * 32)
PERSON = m.Person(account_id="a" * 32, handle="alice", display_name=None)
DEAD_AFTER = 5.0


def _call() -> sm.Call:
    return sm.Call(
        id="c" * 32, caller=CALLER, callee_account="b" * 32, media="audio", relay_only=False,
        caller_card=PERSON, callee_card=PERSON, ringing=frozenset(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("beats", "steady", "previous", "reported", "alive", "dead"),
    [
        # A fresh beat is alive; one older than 5 s is dead, reported once.
        ({"b": 98.0, "c": 90.0}, True, {}, set(), {"b": 98.0}, [("c", 90.0)]),
        ({"c": 90.0}, True, {}, {"c"}, {}, []),
        # Its own entry is never judged.
        ({"me": 10.0}, True, {}, set(), {}, []),
        # Just back from an outage (not steady): stale nodes it saw alive before stay alive,
        # stale nodes it did not see are neither alive nor reported.
        ({"b": 85.0, "c": 80.0}, False, {"b": 84.0}, set(), {"b": 100.0}, []),
        ({"b": 99.0}, False, {"b": 84.0}, set(), {"b": 99.0}, []),
    ],
)
def test_judgement(
    beats: dict[str, float],
    steady: bool,
    previous: dict[str, float],
    reported: set[str],
    alive: dict[str, float],
    dead: list[tuple[str, float]],
) -> None:
    judged = judge(
        beats.items(), me="me", now=100.0, dead_after_s=DEAD_AFTER, steady=steady,
        previous=previous, reported=reported,
    )  # fmt: skip
    assert (judged.alive, judged.dead) == (alive, dead)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_warns_once_and_steadiness_counts_from_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = StoreOutage(clock)
    clock.now += 10
    assert outage.steady_for() == 10
    with caplog.at_level(logging.INFO, logger="callbook.store"):
        for _ in range(50):
            outage.failed("a request")
            clock.now += 0.2
        assert outage.down and outage.steady_for() == 0
        outage.ok()
        clock.now += 3
    assert not outage.down and outage.steady_for() == 3
    assert outage.ended == 1  # the nodes rewrite their presence once per outage
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "a request" in warnings[0].getMessage()
    assert "after 10.0 s (50 failures" in caplog.records[-1].getMessage()


def test_failures_far_apart_without_a_success_are_two_outages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = StoreOutage(clock)
    with caplog.at_level(logging.WARNING, logger="callbook.store"):
        outage.failed("a request")
        clock.now += QUIET_END_S + 1
        outage.failed("a request")
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


async def test_a_record_that_expired_is_written_again_by_its_owner(store: Store) -> None:
    records = CallRecords(store, "node-a")
    call = _call()
    # Judged dead once, long before this call: that does not stop it from being written again.
    await store.redis.zadd(keys.nodes_judged_dead(), {"node-a": store.clock() - 30})
    assert await records.save(call, [], 0) == 1
    assert await records.save(call, [], 1) == 2
    # The store lost it (expired while the store was away from every node).
    await store.redis.delete(keys.call_record(call.id), keys.node_calls("node-a"))
    assert await records.refresh([call.id]) == [call.id]
    assert await records.save(call, [], 2) == 3
    stored = await records.load(call.id)
    assert stored is not None and (stored.owner, stored.version) == ("node-a", 3)
    assert await records.owned_by("node-a") == [call.id]  # survivors would find it
    assert await records.refresh([call.id]) == []


async def test_a_node_judged_dead_does_not_raise_a_taken_call_from_the_dead(
    store: Store,
) -> None:
    """Node a was cut off from the store; b judged it dead, took its call over and ended it.
    When a is back, the missing record must stay missing: the call is b's, and over."""
    a, b = CallRecords(store, "node-a"), CallRecords(store, "node-b")
    call = _call()
    assert await a.save(call, [], 0) == 1
    await store.redis.zadd(keys.nodes_judged_dead(), {"node-a": store.clock() + 1})
    assert await b.take_over(call.id, "node-a") is not None
    await b.delete(call.id)
    assert await a.save(call, [], 1) is None
    assert await a.load(call.id) is None
