"""Two signaling nodes on one store: a call placed on one rings, connects and ends on the other.

Both nodes run in this process as real HTTP servers with the Redis router and their own node
ids; everything between them goes through the store, as between two machines. Every test runs
on the standalone Valkey and on the 3-primary Redis Cluster.
"""

from __future__ import annotations

import asyncio

import pytest

from directory.storage import keys
from directory.store import Store
from signaling.appkeys import NODE
from signaling.protocol import messages as m
from signaling.sdk.client import Client
from signaling.sdk.line import Line, LineClosed
from tests.conftest import MakeServer, Server, befriend, unique
from tests.redis_cluster import BOTH_STORES
from tests.test_calls import _device

pytestmark = BOTH_STORES


async def _two_nodes(make_server: MakeServer, **changes: object) -> tuple[Server, Server]:
    a = await make_server(routing="redis", node_id=unique("node-a"), **changes)
    b = await make_server(routing="redis", node_id=unique("node-b"), **changes)
    return a, b


def _on(server: Server, client: Client) -> Client:
    """The same device, talking to another node."""
    moved = server.client()
    moved.profile = client.profile
    return moved


async def _line(client: Client) -> Line:
    line = Line(client)
    await line.open()
    return line


async def test_a_caller_on_one_node_reaches_a_callee_on_another(make_server: MakeServer) -> None:
    node_a, node_b = await _two_nodes(make_server)
    alice = await node_a.signup("alice", "Alice")
    bob = _on(node_b, await node_a.signup("bob"))
    await befriend(alice, bob)  # peer to peer: no relay between contacts
    async with await _line(alice) as a, await _line(bob) as b:
        await a.send(m.Invite(handle="bob", media="video", ref="r1"))
        call_id = (await a.expect(m.Ringing)).call_id
        incoming = await b.expect(m.Incoming)
        assert (incoming.call_id, incoming.caller.handle) == (call_id, "alice")

        await b.send(m.Accept(call_id=call_id))
        assert (await a.expect(m.Accepted)).peer.handle == "bob"
        assert (await b.expect(m.Accepted)).role == "callee"

        await a.send(m.Description(call_id=call_id, kind="offer", sdp="v=0 offer"))
        assert (await b.expect(m.PeerDescription)).sdp == "v=0 offer"
        await b.send(m.Description(call_id=call_id, kind="answer", sdp="v=0 answer"))
        assert (await a.expect(m.PeerDescription)).sdp == "v=0 answer"
        for i in range(5):
            candidate = f"candidate:{i} 1 udp 1 127.0.0.1 {9000 + i} typ host"
            await b.send(m.Ice(call_id=call_id, candidate=candidate))
        ports = [(await a.expect(m.PeerIce)).candidate.split()[5] for _ in range(5)]
        assert ports == [str(9000 + i) for i in range(5)]  # in order

        await b.send(m.Hangup(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "hangup"
        assert (await b.expect(m.Ended)).reason == "hangup"


async def test_a_remote_device_errors_come_back_to_it(make_server: MakeServer) -> None:
    node_a, node_b = await _two_nodes(make_server)
    alice = await node_a.signup("alice")
    bob = _on(node_b, await node_a.signup("bob"))
    async with await _line(alice) as a, await _line(bob) as b:
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        # Not connected yet: SDP from the callee is refused by the owner, and bob hears why.
        await b.send(m.Description(call_id=call_id, kind="offer", sdp="v=0"))
        error = await b.expect(m.Error)
        assert (error.code, error.call_id) == ("not_in_call", call_id)
        await b.send(m.Decline(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "declined"


async def test_every_device_rings_wherever_it_is_connected(make_server: MakeServer) -> None:
    node_a, node_b = await _two_nodes(make_server)
    alice = await node_a.signup("alice")
    carol = await node_b.signup("carol")
    async with await _line(carol) as c, await _line(alice) as a:
        await a.send(m.Invite(handle="carol"))
        call_id = (await a.expect(m.Ringing)).call_id
        assert (await c.expect(m.Incoming)).call_id == call_id
        await a.send(m.Hangup(call_id=call_id))
        assert (await c.expect(m.Ended)).reason == "missed"


async def test_a_device_coming_online_on_another_node_rings_late(
    make_server: MakeServer,
) -> None:
    node_a, node_b = await _two_nodes(make_server)
    alice = await node_a.signup("alice")
    bob = _on(node_b, await node_a.signup("bob"))
    async with await _line(alice) as a:
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        async with await _line(bob) as b:
            assert (await b.expect(m.Incoming)).call_id == call_id
            await b.send(m.Accept(call_id=call_id))
            assert (await a.expect(m.Accepted)).role == "caller"


async def test_a_dropped_device_resumes_on_the_other_node(make_server: MakeServer) -> None:
    node_a, node_b = await _two_nodes(make_server)
    alice = await node_a.signup("alice")
    bob_a = await node_a.signup("bob")
    await befriend(alice, bob_a)  # peer to peer: no relay between contacts
    async with await _line(alice) as a:
        b = await _line(bob_a)
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        welcome = b.welcome
        await b.close()
        assert (await a.expect(m.PeerReconnecting)).call_id == call_id

        moved = Line(_on(node_b, bob_a))
        moved.welcome = welcome
        async with moved:
            assert (await moved.open(resume=True)).resumed
            assert (await a.expect(m.PeerResumed)).call_id == call_id
            await moved.send(m.Description(call_id=call_id, kind="offer", sdp="v=0 again"))
            assert (await a.expect(m.PeerDescription)).sdp == "v=0 again"
            await a.send(m.Hangup(call_id=call_id))
            assert (await moved.expect(m.Ended)).reason == "hangup"


async def test_a_device_that_moved_to_another_node_stays_there(
    make_server: MakeServer, store: Store
) -> None:
    """The node a device left stops refreshing its presence: the entry stays the new node's.

    bench/cluster.py found this: the old node kept the device among its own and wrote its stale
    entry back at every refresh, so calls rang the old node, where nobody was, until its resume
    window ran out. The nodes start half a heartbeat apart so that such a write would stand for
    about half a second before the new node's own refresh, long enough for the polling to see.
    """
    node_a = await make_server(routing="redis", node_id=unique("node-a"))
    await asyncio.sleep(keys.NODE_HEARTBEAT_S / 2)
    node_b = await make_server(routing="redis", node_id=unique("node-b"))
    alice = await node_a.signup("alice")
    bob_a = await node_a.signup("bob")
    assert bob_a.profile is not None
    account_id, device_id = bob_a.profile.account_id, bob_a.profile.device_id
    first = await _line(bob_a)
    await first.close()
    async with await _line(_on(node_b, bob_a)) as b, await _line(alice) as a:
        # Through node a's next presence refresh (a wait for that event, not a timing check).
        deadline = asyncio.get_running_loop().time() + keys.PRESENCE_REFRESH_S + 1.5
        while asyncio.get_running_loop().time() < deadline:
            raw = await store.redis.hget(keys.presence(account_id), device_id)
            assert raw is not None and f'"{node_b.app[NODE].id}"' in raw, raw
            await asyncio.sleep(0.05)
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        assert (await b.expect(m.Incoming)).call_id == call_id
        await a.send(m.Hangup(call_id=call_id))
        assert (await b.expect(m.Ended)).reason == "missed"


async def test_revoking_a_device_closes_it_on_the_other_node(make_server: MakeServer) -> None:
    node_a, node_b = await _two_nodes(make_server)
    alice = await node_a.signup("alice")
    bob = await node_a.signup("bob")
    laptop = _on(node_b, await _device(node_a, bob))
    async with await _line(alice) as a, await _line(laptop) as b:
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        assert laptop.profile is not None
        await bob.request("DELETE", f"/v1/devices/{laptop.profile.device_id}")  # on node a
        assert (await a.expect(m.Ended)).reason == "peer_lost"
        with pytest.raises(LineClosed) as closed:
            while True:
                await b.receive(within=5)
        assert closed.value.code == 4001
