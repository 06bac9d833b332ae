"""Call records: snapshots round-trip, writes are compare-and-set, a takeover fences the old
owner out."""

from __future__ import annotations

import base64

from directory.storage import keys
from directory.store import Store
from signaling.calls import group as g
from signaling.calls import machine as sm
from signaling.calls.records import CallRecords, Timer, decode, encode, without_names
from signaling.protocol import messages as m
from tests.redis_cluster import BOTH_STORES

CALLER = sm.DeviceRef("a" * 32, "d" * 32)
CALLEE = sm.DeviceRef("b" * 32, "e" * 32)
PERSON = m.Person(account_id="a" * 32, handle="alice", display_name=None)


def _call() -> sm.Call:
    return sm.Call(
        id="c" * 32, caller=CALLER, callee_account=CALLEE.account_id, media="audio",
        relay_only=False, caller_card=PERSON, callee_card=PERSON,
        ringing=frozenset({CALLEE}), lost=frozenset({CALLER}),
    )  # fmt: skip


def test_one_to_one_and_group_calls_round_trip() -> None:
    call = _call()
    timers = [Timer("ring", 12.5), Timer("resume", 40.0, CALLER)]
    snapshot = decode(encode(call, timers))
    assert (snapshot.one, snapshot.timers, snapshot.media) == (without_names(call), timers, None)
    group = g.GroupCall(
        id="f" * 32, host=PERSON, media="video", invited=frozenset({CALLER.account_id}),
        members={CALLER: g.Member(participant="p1", person=PERSON, published=True)},
    )  # fmt: skip
    snapshot = decode(encode(group, [], media="media-7"))
    assert (snapshot.group, snapshot.timers, snapshot.media) == (
        without_names(group),
        [],
        "media-7",
    )


def test_a_record_names_the_parties_by_id_only() -> None:
    """No handle or display name goes to the store (and its append-only file)."""
    card = m.Person(account_id="a" * 32, handle="alice", display_name="Alice Liddell")
    call = sm.Call(
        id="c" * 32, caller=CALLER, callee_account=CALLEE.account_id, media="audio",
        relay_only=False, caller_card=card, callee_card=card,
    )  # fmt: skip
    group = g.GroupCall(
        id="f" * 32, host=card, media="video", invited=frozenset({CALLER.account_id}),
        members={CALLER: g.Member(participant="p1", person=card)},
    )  # fmt: skip
    for stored in (encode(call, []), encode(group, [])):
        raw = base64.b64decode(stored)
        assert b"alice" not in raw and b"Alice" not in raw
        assert CALLER.account_id.encode() in raw


@BOTH_STORES
async def test_writes_are_compare_and_set_and_a_takeover_fences_the_old_owner(
    store: Store,
) -> None:
    a, b = CallRecords(store, "node-a"), CallRecords(store, "node-b")
    call = _call()
    assert await a.save(call, [], 0) == 1
    assert await a.save(call, [], 0) is None  # stale version
    assert await a.save(call, [Timer("ring", 1.0)], 1, media="media-1") == 2
    assert await b.save(call, [], 2) is None  # not b's call
    assert await a.owner(call.id) == "node-a"
    assert await b.owned_by("node-a") == [call.id]
    assert 0 < await store.redis.ttl(keys.call_record(call.id)) <= keys.CALL_RECORD_TTL_S

    assert await b.take_over(call.id, "node-x") is None  # node-x does not own it
    taken = await b.take_over(call.id, "node-a")
    # No account under these ids: the cards come back with no names.
    expected = (without_names(call), [Timer("ring", 1.0)])
    assert taken is not None and (taken.call, taken.timers) == expected
    assert (taken.version, taken.owner, taken.media_node) == (3, "node-b", "media-1")
    assert await b.take_over(call.id, "node-a") is None  # only the first survivor gets it
    assert await a.save(call, [], 2) is None  # the old owner is fenced out
    assert await b.save(call, [], 3) == 4
    await a.delete(call.id)  # not a's any more: stays
    assert await b.owner(call.id) == "node-b"
    await b.delete(call.id)
    assert await b.load(call.id) is None


async def test_a_draining_owner_hands_over_only_what_it_wrote_last(store: Store) -> None:
    a, b = CallRecords(store, "node-a"), CallRecords(store, "node-b")
    call = _call()
    assert await a.save(call, [Timer("ring", 5.0)], 0) == 1
    assert await a.save(call, [Timer("ring", 5.0)], 1) == 2
    assert await a.hand_over(call.id, 1, "node-b") is None  # a change it has not seen: stays
    assert await b.hand_over(call.id, 2, "node-c") is None  # only the owner gives a call away
    assert await a.hand_over(call.id, 2, "node-b") == 3
    assert await a.owner(call.id) == "node-b"
    assert await a.owned_by("node-a") == []
    assert await a.owned_by("node-b") == [call.id]
    assert await a.save(call, [], 2) is None  # the old owner is fenced out
    assert await a.hand_over(call.id, 3, "node-a") is None
    stored = await b.load(call.id)
    assert stored is not None and stored.timers == [Timer("ring", 5.0)]
    assert await b.save(call, [], 3) == 4
    await b.delete(call.id)
