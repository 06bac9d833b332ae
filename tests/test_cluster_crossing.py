"""Glare and busy across nodes: the same assertions on one node and on two.

On two nodes the callers are on different nodes, so each call is owned by another node than the
call crossing it (glare), and the call a callee talks in is owned by another node than the one
that rings it again (busy).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from directory.batch import Batch
from directory.store import Store
from signaling.appkeys import CALLS
from signaling.calls.crossing import Crossing
from signaling.protocol import messages as m
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.conftest import MakeServer, Server, unique
from tests.redis_cluster import BOTH_STORES
from tests.test_cluster import _line, _on

pytestmark = BOTH_STORES

Seen = list[m.ServerMessage]


@pytest.fixture(params=["one node", "two nodes"])
async def nodes(request: pytest.FixtureRequest, make_server: MakeServer) -> tuple[Server, Server]:
    if request.param == "one node":
        single = await make_server()
        return single, single
    first = await make_server(routing="redis", node_id=unique("node-a"))
    second = await make_server(routing="redis", node_id=unique("node-b"))
    return first, second


async def _until(line: Line, seen: Seen, done: Callable[[Seen], bool]) -> None:
    """Read into ``seen`` until ``done`` holds (each message within the usual bound)."""
    while not done(seen):
        seen.append(await line.receive(within=10))


def _has(kind: type[m.ServerMessage], call_id: str | None = None) -> Callable[[Seen], bool]:
    def check(seen: Seen) -> bool:
        return any(
            isinstance(x, kind) and (call_id is None or getattr(x, "call_id", None) == call_id)
            for x in seen
        )

    return check


def _ringing(seen: Seen) -> str | None:
    return next((x.call_id for x in seen if isinstance(x, m.Ringing)), None)


async def _people(nodes: tuple[Server, Server], *handles: str) -> list[Client]:
    """The first person signs up on the first node; every other one is moved to the second."""
    first, second = nodes
    people = [await first.signup(handles[0])]
    for handle in handles[1:]:
        people.append(_on(second, await first.signup(handle)))
    return people


async def _glare(a: Line, b: Line, seen_a: Seen, seen_b: Seen) -> None:
    """Both calls rang; the one with the smaller id survives and is answered."""
    await _until(a, seen_a, lambda s: _ringing(s) is not None)
    await _until(b, seen_b, lambda s: _ringing(s) is not None)
    ours, theirs = _ringing(seen_a), _ringing(seen_b)
    assert ours is not None and theirs is not None and ours != theirs
    survivor, loser = min(ours, theirs), max(ours, theirs)
    await _until(a, seen_a, _has(m.Ended, loser))
    await _until(b, seen_b, _has(m.Ended, loser))
    ended = [x for x in seen_a + seen_b if isinstance(x, m.Ended)]
    assert {(x.call_id, x.reason) for x in ended} == {(loser, "glare")}

    callee, caller, seen_callee = (b, a, seen_b) if survivor == ours else (a, b, seen_a)
    await _until(callee, seen_callee, _has(m.Incoming, survivor))
    await callee.send(m.Accept(call_id=survivor))
    assert (await callee.expect(m.Accepted)).call_id == survivor
    assert (await caller.expect(m.Accepted)).call_id == survivor


@pytest.mark.parametrize("first", ["alice", "bob"])
async def test_calling_each_other_one_after_the_other_is_glare(
    nodes: tuple[Server, Server], first: str
) -> None:
    """The second invite finds the first (whichever node each is on) still ringing."""
    alice, bob = await _people(nodes, "alice", "bob")
    async with await _line(alice) as a, await _line(bob) as b:
        seen_a: Seen = []
        seen_b: Seen = []
        lines = {"alice": (a, seen_a, "bob"), "bob": (b, seen_b, "alice")}
        one, seen_one, callee = lines[first]
        two, seen_two, _ = lines["bob" if first == "alice" else "alice"]
        await one.send(m.Invite(handle=callee))
        await _until(one, seen_one, lambda s: _ringing(s) is not None)
        call_id = _ringing(seen_one)
        await _until(two, seen_two, _has(m.Incoming, call_id))
        await two.send(m.Invite(handle=first))
        await _glare(a, b, seen_a, seen_b)


async def test_calling_each_other_at_once_is_glare(nodes: tuple[Server, Server]) -> None:
    alice, bob = await _people(nodes, "alice", "bob")
    async with await _line(alice) as a, await _line(bob) as b:
        await asyncio.gather(a.send(m.Invite(handle="bob")), b.send(m.Invite(handle="alice")))
        await _glare(a, b, [], [])


async def test_a_callee_talking_in_a_call_another_node_runs_is_busy(
    nodes: tuple[Server, Server],
) -> None:
    """Alice's call to Bob runs on the first node; Carol's, on Bob's node, finds him busy."""
    alice, bob, carol = await _people(nodes, "alice", "bob", "carol")
    async with await _line(alice) as a, await _line(bob) as b, await _line(carol) as c:
        await a.send(m.Invite(handle="bob"))
        first = (await a.expect(m.Ringing)).call_id
        assert (await b.expect(m.Incoming)).call_id == first
        await b.send(m.Accept(call_id=first))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        await nodes[0].app[CALLS].flush_store_writes()  # the owner has shared the call

        await c.send(m.Invite(handle="bob"))
        second = (await c.expect(m.Ringing)).call_id
        waiting = await b.expect(m.Incoming)
        assert (waiting.call_id, waiting.busy) == (second, True)
        await c.send(m.Hangup(call_id=second))
        assert (await b.expect(m.Ended)).call_id == second
        assert (await c.expect(m.Ended)).reason == "cancelled"

        await a.send(m.Hangup(call_id=first))
        assert (await b.expect(m.Ended)).call_id == first
        await a.expect(m.Ended)
        await nodes[0].app[CALLS].flush_store_writes()  # and has taken it back

        await c.send(m.Invite(handle="bob"))
        third = (await c.expect(m.Ringing)).call_id
        ringing = await b.expect(m.Incoming)
        assert (ringing.call_id, ringing.busy) == (third, False)


async def test_answering_a_waiting_call_hangs_up_the_call_another_node_runs(
    nodes: tuple[Server, Server],
) -> None:
    """Call waiting: Bob talks with Alice (first node), answers Carol (his node's call)."""
    alice, bob, carol = await _people(nodes, "alice", "bob", "carol")
    async with await _line(alice) as a, await _line(bob) as b, await _line(carol) as c:
        await a.send(m.Invite(handle="bob"))
        first = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=first))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        await nodes[0].app[CALLS].flush_store_writes()  # the owner has shared the call

        await c.send(m.Invite(handle="bob"))
        second = (await c.expect(m.Ringing)).call_id
        assert (await b.expect(m.Incoming)).busy
        await b.send(m.Accept(call_id=second))
        ended = await a.expect(m.Ended)
        assert (ended.call_id, ended.reason) == (first, "hangup")
        got = {type(x): x for x in [await b.receive(within=10), await b.receive(within=10)]}
        assert got[m.Accepted].call_id == second  # type: ignore[attr-defined]
        assert got[m.Ended].call_id == first  # type: ignore[attr-defined]
        assert (await c.expect(m.Accepted)).call_id == second


async def test_what_a_dead_node_left_makes_nobody_busy_nor_ends_a_call(
    make_server: MakeServer, store: Store
) -> None:
    """Entries whose owner is not a live node (it died, its keys not yet expired) count for
    nothing: not the busy device, not the ringing call with the smallest possible id."""
    node = await make_server(routing="redis", node_id=unique("node-b"))
    alice = await node.signup("alice")
    bob = await node.signup("bob")
    assert alice.profile is not None and bob.profile is not None
    dead = Crossing(store, "node-dead", ring_timeout_s=60)
    batch = Batch(store)
    dead.set_busy(batch, "f" * 32, bob.profile.account_id, [bob.profile.device_id])
    await batch.execute()
    await dead.ring("0" * 32, bob.profile.account_id, alice.profile.account_id)
    async with await _line(alice) as a, await _line(bob) as b:
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        incoming = await b.expect(m.Incoming)
        assert (incoming.call_id, incoming.busy) == (call_id, False)
        await b.send(m.Accept(call_id=call_id))
        assert (await a.expect(m.Accepted)).call_id == call_id
