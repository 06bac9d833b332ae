"""What a call set-up costs the store, counted by the real Valkey (``INFO commandstats``, the
commands inside Lua scripts included), and the per-node writer of call records coalescing
what it has not written yet.

The counts are deterministic: two call services run in this process on the Redis router, with
their heartbeats and refreshes pushed out of the way, and each set-up is measured after a first
one has loaded the scripts and met the other node. Timings are in bench/cluster.py; these
counts keep the reductions from regressing unnoticed (docs/benchmarks.md, "Cluster").
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from directory.batch import Batch
from directory.storage import keys
from directory.store import Store
from signaling.calls import machine as sm
from signaling.calls.crossing import Crossing
from signaling.calls.records import CallRecords, decode
from signaling.calls.service import CallService
from signaling.cluster.routing_redis import RedisRouter
from signaling.protocol import messages as m
from signaling.push import LogPush
from tests.conftest import MakeServer, befriend

#: Store commands per 1:1 set-up (invite, ringing, accept, SDP both ways, two ICE candidates
#: each way, hangup), caller and callee on one node, and on two nodes: 50 and 66 before the
#: presence look-ups were remembered and the busy entries written by a script. Lower them when
#: a change saves commands; a change that raises them needs a reason in docs/benchmarks.md.
SAME_NODE_BUDGET = 48
CROSS_NODE_BUDGET = 58
#: The same set-ups' round trips (requests the store read: a pipeline or a batch is one): 17
#: and 33 when every write and every envelope was a round trip of its own.
SAME_NODE_ROUND_TRIPS = 6
CROSS_NODE_ROUND_TRIPS = 14

_NEVER_S = 3600.0

T = TypeVar("T")


@dataclass
class Link:
    """A connected device as the call service sees it: what it is sent, in order."""

    device: sm.DeviceRef
    inbox: asyncio.Queue[m.ServerMessage] = field(default_factory=asyncio.Queue)

    def send(self, message: m.ServerMessage) -> None:
        self.inbox.put_nowait(message)

    def replaced(self) -> None: ...
    def revoked(self) -> None: ...
    def disconnected(self) -> None: ...
    def drained(self) -> None: ...

    async def expect(self, kind: type[T]) -> T:
        async with asyncio.timeout(10):
            while True:
                message = await self.inbox.get()
                if isinstance(message, kind):
                    return message


async def _node(store: Store, node_id: str) -> CallService:
    router = RedisRouter(
        store, node_id, heartbeat_s=_NEVER_S, presence_refresh_s=_NEVER_S
    )  # the heartbeat's commands would land in the count at random
    records = CallRecords(store, node_id)
    crossing = Crossing(store, node_id, sm.RING_TIMEOUT_S)
    service = CallService(store, LogPush(), router=router, records=records, crossing=crossing)
    await service.start()
    return service


@pytest.fixture
async def nodes(store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setattr(keys, "PRESENCE_REFRESH_S", _NEVER_S)  # the call records' refresher
    started: list[CallService] = []

    async def start(node_id: str) -> CallService:
        started.append(await _node(store, node_id))
        return started[-1]

    yield start
    for service in started:
        await service.close()


async def _people(make_server: MakeServer, count: int) -> list[tuple[sm.DeviceRef, str]]:
    """Accounts made the way users make them (a server on the local router, which writes
    nothing in the background), contacts of each other: their calls stay peer to peer."""
    server = await make_server()
    clients = [await server.signup(f"person{n}") for n in range(count)]
    await befriend(*clients)
    people = []
    for client in clients:
        assert client.profile is not None
        ref = sm.DeviceRef(client.profile.account_id, client.profile.device_id)
        people.append((ref, client.profile.handle))
    return people


async def _connect(node: CallService, device: sm.DeviceRef) -> Link:
    link = Link(device)
    await node.connect(device, link, None)
    await link.expect(m.Welcome)
    return link


async def _set_up(
    caller: tuple[CallService, Link], callee: tuple[CallService, Link], handle: str
) -> None:
    (a, ca), (b, cb) = caller, callee
    await a.handle(ca.device, m.Invite(handle=handle, media="audio", ref="r"))
    call_id = (await ca.expect(m.Ringing)).call_id
    await cb.expect(m.Incoming)
    await _written(a, b)  # each change written before the next: no write coalesced, by chance
    await b.handle(cb.device, m.Accept(call_id=call_id))
    await ca.expect(m.Accepted)
    await cb.expect(m.Accepted)
    await _written(a, b)
    await a.handle(ca.device, m.Description(call_id=call_id, kind="offer", sdp="v=0 o"))
    await cb.expect(m.PeerDescription)
    await b.handle(cb.device, m.Description(call_id=call_id, kind="answer", sdp="v=0 a"))
    await ca.expect(m.PeerDescription)
    for n in range(2):
        await a.handle(ca.device, m.Ice(call_id=call_id, candidate=f"candidate:{n}"))
        await b.handle(cb.device, m.Ice(call_id=call_id, candidate=f"candidate:{n}"))
    for _ in range(2):
        await ca.expect(m.PeerIce)
        await cb.expect(m.PeerIce)
    await a.handle(ca.device, m.Hangup(call_id=call_id))
    await ca.expect(m.Ended)
    await cb.expect(m.Ended)
    await _written(a, b)


async def _written(*nodes: CallService) -> None:
    for node in nodes:
        await node.flush_store_writes()
        await node.router.flush()


async def _commands(store: Store) -> Counter[str]:
    """Commands run so far, by name, and ``requests``: the requests read from clients, that
    is the round trips (a pipeline is one; this request is counted too)."""
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.info("commandstats")
        pipe.info("stats")
        commands, stats = await pipe.execute()
    counts = Counter({name.removeprefix("cmdstat_"): s["calls"] for name, s in commands.items()})
    counts["requests"] = stats["total_reads_processed"]
    return counts


async def _cost(store: Store, caller: Any, callee: Any, handle: str) -> tuple[int, int, str]:
    """Store commands and round trips of one set-up, and the commands by name."""
    before = await _commands(store)
    await _set_up(caller, callee, handle)
    spent = await _commands(store) - before
    del spent["info"]
    round_trips = spent.pop("requests") - 1  # the second count's own request
    return spent.total(), round_trips, str(dict(spent))


async def test_a_set_up_across_nodes_costs_the_store_little_more_than_one_inside_a_node(
    make_server: MakeServer, store: Store, nodes: Any
) -> None:
    (alice, _), (bob, bob_handle), (carol, carol_handle) = await _people(make_server, 3)
    a, b = await nodes("cost-a"), await nodes("cost-b")
    on_a = (a, await _connect(a, alice))
    bob_on_a = (a, await _connect(a, bob))
    carol_on_b = (b, await _connect(b, carol))
    for callee, handle in ((bob_on_a, bob_handle), (carol_on_b, carol_handle)):
        await _set_up(on_a, callee, handle)  # scripts loaded, the other node met
    same = await _cost(store, on_a, bob_on_a, bob_handle)
    cross = await _cost(store, on_a, carol_on_b, carol_handle)
    report = f"same node {same}; across nodes {cross}"
    assert (same[0], cross[0]) <= (SAME_NODE_BUDGET, CROSS_NODE_BUDGET), report
    assert (same[1], cross[1]) <= (SAME_NODE_ROUND_TRIPS, CROSS_NODE_ROUND_TRIPS), report


async def _blocked(service: CallService) -> asyncio.Event:
    """Hold the node's writer of call records until the event is set."""
    go = asyncio.Event()

    async def wait() -> None:
        await go.wait()

    service._store_writes.submit(wait)
    return go


async def test_changes_a_busy_writer_has_not_written_yet_go_in_one_write(
    make_server: MakeServer, store: Store, nodes: Any
) -> None:
    (alice, _), (bob, bob_handle) = await _people(make_server, 2)
    a = await nodes("cost-a")
    ca, cb = await _connect(a, alice), await _connect(a, bob)
    go = await _blocked(a)
    await a.handle(alice, m.Invite(handle=bob_handle, media="audio", ref="r"))
    call_id = (await ca.expect(m.Ringing)).call_id
    await cb.expect(m.Incoming)
    await a.handle(bob, m.Accept(call_id=call_id))  # told once the answer is in the store
    assert ca.inbox.empty()
    go.set()
    await ca.expect(m.Accepted)
    await a.flush_store_writes()
    record = await store.redis.hgetall(keys.call_record(call_id))
    # Ringing and answered went in one write, the newest state.
    assert record["v"] == "1"
    stored = decode(record["state"]).one
    assert stored is not None and stored.phase is sm.Phase.CONNECTED


async def test_a_call_over_before_its_first_write_leaves_nothing_to_write(
    make_server: MakeServer, store: Store, nodes: Any
) -> None:
    (alice, _), (bob, bob_handle) = await _people(make_server, 2)
    a = await nodes("cost-a")
    ca, cb = await _connect(a, alice), await _connect(a, bob)
    go = await _blocked(a)
    await a.handle(alice, m.Invite(handle=bob_handle, media="audio", ref="r"))
    call_id = (await ca.expect(m.Ringing)).call_id
    await a.handle(alice, m.Hangup(call_id=call_id))
    await cb.expect(m.Ended)
    before = await _commands(store)
    go.set()
    await a.flush_store_writes()
    spent = await _commands(store) - before
    del spent["info"], spent["requests"]
    # Only the ring entry shared for glare, and its removal: no record written, none deleted.
    assert spent["sadd"] == spent["srem"] == spent["del"] == 0, dict(spent)
    assert not await store.redis.exists(keys.call_record(call_id))


async def test_a_batch_sends_again_only_what_a_store_without_its_scripts_refused(
    store: Store,
) -> None:
    """A restarted store has lost its scripts: the commands that ran must not run twice (a
    record's compare-and-set would then fail against its own write)."""
    counter = "return redis.call('INCR', KEYS[1])"

    def batch() -> Batch:
        queued = Batch(store)
        queued.command("INCR", "cb:{t}:plain")
        queued.script(counter, ["cb:{t}:scripted"], [])
        queued.command("INCR", "cb:{t}:plain")
        return queued

    assert await batch().execute() == [1, 1, 2]
    await store.redis.script_flush()
    assert await batch().execute() == [3, 2, 4]


async def test_a_write_queued_before_a_call_ends_is_dropped_not_taken_for_a_takeover(
    make_server: MakeServer, store: Store, nodes: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The soak's false "another node took it": a change of a call queued behind a busy
    writer, then the call's end. The queued write must not run at the version forgotten with
    the call (the store refuses it, which reads as a takeover); the record is just deleted."""
    (alice, _), (bob, bob_handle) = await _people(make_server, 2)
    a = await nodes("cost-a")
    ca, cb = await _connect(a, alice), await _connect(a, bob)
    await a.handle(alice, m.Invite(handle=bob_handle, media="audio", ref="r"))
    call_id = (await ca.expect(m.Ringing)).call_id
    await cb.expect(m.Incoming)
    await a.handle(bob, m.Accept(call_id=call_id))
    await ca.expect(m.Accepted)
    await a.flush_store_writes()  # written: the call's version is known
    go = await _blocked(a)
    a.disconnect(alice, ca)  # a change (alice lost) queued while the call lives
    await a.handle(bob, m.Hangup(call_id=call_id))  # the call ends before that write runs
    await cb.expect(m.Ended)
    with caplog.at_level("WARNING", logger="callbook.calls"):
        go.set()
        await a.flush_store_writes()
    assert "another node took it" not in caplog.text
    assert not await store.redis.exists(keys.call_record(call_id))
