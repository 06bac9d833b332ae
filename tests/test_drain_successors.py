"""Whom a draining node hands its calls to (issue 18, finding 3): only nodes alive and not
draining. A node dead less than its TTL ago (its heartbeat still in the registry) or one that is
draining itself is no successor; of two nodes draining at once, neither passes a call to the
other. In-process nodes on the test Valkey, a real call placed through them."""

from __future__ import annotations

import pytest

from directory.inventory import INVENTORY
from directory.storage import keys
from directory.store import Store
from signaling.appkeys import CALLS, NODE
from signaling.calls.records import CallRecords
from signaling.calls.service import CallService
from signaling.cluster.liveness import successors
from signaling.protocol import messages as m
from signaling.sdk.line import Line
from tests.conftest import MakeServer, Server, unique
from tests.media_nodes import until_stored
from tests.store_walk import stored_fields
from tests.test_cluster import _line, _on

NOW = 1000.0


@pytest.mark.parametrize(
    ("beats", "draining", "expected"),
    [
        ([("me", NOW), ("b", NOW - 0.5), ("c", NOW - 1.0)], [], ["b", "c"]),
        ([("b", NOW - 2.5), ("c", NOW - 2.6)], [], ["b"]),  # c missed two beats
        ([("b", NOW), ("c", NOW)], ["c"], ["b"]),  # c drains too
        ([("b", NOW), ("c", NOW)], ["me", "b", "c"], []),
        ([("me", NOW)], [], []),  # alone
    ],
)
def test_successors_are_other_live_nodes_that_are_not_draining(
    beats: list[tuple[str, float]], draining: list[str], expected: list[str]
) -> None:
    assert successors(beats, draining, me="me", now=NOW, fresh_s=2.5) == expected


async def _ringing(caller: Line, callee: Line, store: Store, owner: str) -> str:
    await caller.send(m.Invite(handle="bob"))
    call_id = (await caller.expect(m.Ringing)).call_id
    assert (await callee.expect(m.Incoming)).call_id == call_id
    records = CallRecords(store, "probe")

    async def stored() -> bool:
        return await records.owner(call_id) == owner

    await until_stored(stored, 10, "the call's record")
    return call_id


async def _hand_over(calls: CallService) -> None:
    """What the drain does (and retries every second): here until the one call has moved, as a
    successor whose heartbeat is late on a loaded machine is no successor at that moment."""

    async def moved() -> bool:
        return await calls.hand_over_calls() == 1

    await until_stored(moved, 10, "the call handed over")


async def _ghosts_before(store: Store, call_id: str, kind: str) -> None:
    """Registry entries sorting before every real node, as many as it takes for the old choice
    (live nodes by id, ``int(call_id, 16) % count``) to land on one of them."""
    count = next(k for k in range(1, 8) if int(call_id, 16) % (k + 1) != k)
    now = store.clock()
    ghosts = [f"aaa-ghost-{i}" for i in range(count)]
    if kind == "stale":  # died 3 s ago: silent two beats, not yet counted dead (5 s)
        await store.redis.zadd(keys.nodes(), dict.fromkeys(ghosts, now - 3.0))
    else:  # alive, but draining
        await store.redis.zadd(keys.nodes(), dict.fromkeys(ghosts, now))
        await store.redis.zadd(keys.nodes_draining(), dict.fromkeys(ghosts, now))


@pytest.mark.parametrize("kind", ["stale", "draining"])
async def test_a_draining_node_hands_its_call_only_to_a_live_node_that_stays(
    make_server: MakeServer, store: Store, kind: str
) -> None:
    node_a = await make_server(routing="redis", node_id=unique("node-a"))
    node_b = await make_server(routing="redis", node_id=unique("node-b"))
    alice = await node_a.signup("alice")
    bob = _on(node_b, await node_a.signup("bob"))
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _ringing(a, b, store, node_a.app[NODE].id)
        await _ghosts_before(store, call_id, kind)
        calls = node_a.app[CALLS]
        await calls.begin_drain()
        await _hand_over(calls)
        assert await CallRecords(store, "probe").owner(call_id) == node_b.app[NODE].id
        await b.send(m.Accept(call_id=call_id))
        assert (await a.expect(m.Accepted)).call_id == call_id


async def _call_on_b_first(a: Line, b: Line, store: Store, node_a: Server) -> str:
    """A ringing call whose id the old choice (``int(call_id, 16) % 2`` over the two other
    nodes by id) would give to B; calls that would not are hung up."""
    for _ in range(20):
        call_id = await _ringing(a, b, store, node_a.app[NODE].id)
        if int(call_id, 16) % 2 == 0:
            return call_id
        await a.send(m.Hangup(call_id=call_id))
        await a.expect(m.Ended)
        await b.expect(m.Ended)
    raise AssertionError("twenty odd call ids")


async def test_two_nodes_draining_at_once_hand_their_calls_to_the_node_that_stays(
    make_server: MakeServer, store: Store
) -> None:
    """A and B drain at once; A's call goes to C, never to B (which would pass it on again)."""
    node_a, node_b, node_c = [
        await make_server(routing="redis", node_id=unique(f"pair-{n}")) for n in "abc"
    ]
    alice = await node_a.signup("alice")
    bob = _on(node_c, await node_a.signup("bob"))
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _call_on_b_first(a, b, store, node_a)
        first, second = node_a.app[CALLS], node_b.app[CALLS]
        await first.begin_drain()
        await second.begin_drain()
        await _hand_over(first)
        assert await CallRecords(store, "probe").owner(call_id) == node_c.app[NODE].id
        assert second.live_call(call_id) is None
        assert await second.hand_over_calls() == 0  # nothing came to B to pass on
        datum = next(d for d in INVENTORY if d.name == "nodes_draining")
        assert await stored_fields(store, keys.nodes_draining(), datum) == set(datum.fields)
        await b.send(m.Accept(call_id=call_id))
        assert (await a.expect(m.Accepted)).call_id == call_id
