"""Draining, piece by piece, on in-process servers: what a draining node refuses, where a new
call from a device still connected to it goes, and the single-node drain."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from directory.store import Store
from signaling.appkeys import CALLS, NODE
from signaling.calls.records import CallRecords
from signaling.cluster.drain import DRAIN, drain
from signaling.protocol import closes
from signaling.protocol import messages as m
from signaling.sdk.line import Line, LineClosed
from signaling.ws import endpoint
from tests.conftest import MakeServer, Server, befriend, unique
from tests.test_cluster import _line, _on, _two_nodes


async def _refuses_newcomers(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/readyz") as response:
            assert response.status == 503
            assert await response.json() == {"status": "draining"}
        async with http.get(f"{server.url}/v1/ws") as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == str(endpoint.DRAIN_RETRY_S)
            problem = await response.json(content_type="application/problem+json")
            assert problem["code"] == "draining"


async def test_a_call_from_a_device_on_a_draining_node_is_placed_by_another_node(
    make_server: MakeServer,
) -> None:
    node_a, node_b = await _two_nodes(make_server)
    alice = await node_a.signup("alice")
    bob = _on(node_b, await node_a.signup("bob"))
    async with await _line(alice) as a, await _line(bob) as b:
        await node_a.app[CALLS].begin_drain()
        await a.send(m.Invite(handle="bob", ref="r1"))
        ringing = await a.expect(m.Ringing)
        assert ringing.ref == "r1"
        assert (await b.expect(m.Incoming)).call_id == ringing.call_id
        assert node_a.app[CALLS].live_call(ringing.call_id) is None
        assert node_b.app[CALLS].live_call(ringing.call_id) is not None
        await b.send(m.Accept(call_id=ringing.call_id))
        assert (await a.expect(m.Accepted)).call_id == ringing.call_id
        await b.expect(m.Accepted)


async def test_drain_hands_the_call_over_and_the_device_follows(make_server: MakeServer) -> None:
    node_a, node_b = await _two_nodes(make_server)
    alice = await node_a.signup("alice")
    bob = _on(node_b, await node_a.signup("bob"))
    await befriend(alice, bob)  # peer to peer: no relay between contacts
    async with Line(alice, servers=[node_a.url, node_b.url]) as a, await _line(bob) as b:
        await a.open()
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        draining = asyncio.create_task(drain(node_a.app))
        assert (await a.moved()).resumed
        await _refuses_newcomers(node_a)
        assert await asyncio.wait_for(draining, 10)
        assert node_a.app[CALLS].live_call(call_id) is None
        assert node_b.app[CALLS].live_call(call_id) is not None
        await a.send(m.Description(call_id=call_id, kind="offer", sdp="v=0 after"))
        assert (await b.expect(m.PeerDescription)).sdp == "v=0 after"
        await b.send(m.Description(call_id=call_id, kind="answer", sdp="v=0 answer"))
        assert (await a.expect(m.PeerDescription)).sdp == "v=0 answer"
        await b.send(m.Hangup(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "hangup"


async def test_alone_a_draining_node_lets_its_calls_end_then_sends_everyone_away(
    make_server: MakeServer,
) -> None:
    """No other node: calls cannot move, so they run on; devices in none are sent away at once,
    the others when their call ends; whoever does not leave is closed with 4003."""
    server = await make_server(resume_window_s=2)
    server.app[DRAIN].move_within_s = 0.5
    alice, bob, carol = [await server.signup(h) for h in ("alice", "bob", "carol")]
    await befriend(alice, bob)  # peer to peer: no relay between contacts
    async with await _line(alice) as a, await _line(bob) as b, await _line(carol) as c:
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        draining = asyncio.create_task(drain(server.app))
        # Carol is told, tries to come back, is refused (nowhere else to go), is closed.
        with pytest.raises(LineClosed) as closed:
            await c.receive(within=10)
        assert closed.value.code == closes.CLOSE_DRAINING
        assert c.welcome is not None
        assert [r.resume_token for r in c.reconnects] == [c.welcome.resume_token]
        await _refuses_newcomers(server)
        # The call runs on; nobody in it was sent away; new calls are refused.
        assert a.reconnects == [] and b.reconnects == []
        await a.send(m.Invite(handle="carol", ref="r9"))
        refused = await a.expect(m.Error)
        assert (refused.code, refused.ref) == ("draining", "r9")
        await a.send(m.Description(call_id=call_id, kind="offer", sdp="v=0 still"))
        assert (await b.expect(m.PeerDescription)).sdp == "v=0 still"
        await b.send(m.Hangup(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "hangup"
        assert (await b.expect(m.Ended)).reason == "hangup"
        assert await asyncio.wait_for(draining, 10)
        assert len(a.reconnects) == 1 and len(b.reconnects) == 1


async def test_a_third_node_learns_where_a_moved_call_went(
    make_server: MakeServer, store: Store
) -> None:
    """Alice on A calls bob, ringing on B and on C; A drains and stops. The call went to B or
    C; bob answers on the other one, whose node must send the answer to the new owner."""
    node_a, node_b, node_c = [
        await make_server(routing="redis", node_id=unique(f"node-{n}")) for n in "abc"
    ]
    alice = await node_a.signup("alice")
    bob_b = _on(node_b, await node_a.signup("bob"))
    assert bob_b.profile is not None and bob_b.profile.recovery_code is not None
    bob_c = node_c.client()
    await bob_c.recover("bob", bob_b.profile.recovery_code, device_name="laptop")
    servers = [node_a.url, node_b.url]
    async with (
        Line(alice, servers=servers) as a,
        await _line(bob_b) as on_b,
        await _line(bob_c) as on_c,
    ):
        await a.open()
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        assert (await on_b.expect(m.Incoming)).call_id == call_id
        assert (await on_c.expect(m.Incoming)).call_id == call_id
        draining = asyncio.create_task(drain(node_a.app))
        await a.moved()
        assert await asyncio.wait_for(draining, 10)
        await node_a.app[CALLS].router.close()  # A is gone: nothing relays through it any more
        owner = await CallRecords(store, "probe").owner(call_id)
        ids = node_b.app[NODE].id, node_c.app[NODE].id
        assert owner in ids
        answering = on_c if owner == ids[0] else on_b
        await answering.send(m.Accept(call_id=call_id))
        assert (await a.expect(m.Accepted)).call_id == call_id
        assert (await answering.expect(m.Accepted)).call_id == call_id
