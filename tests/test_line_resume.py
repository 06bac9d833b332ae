"""A line that follows the network (the softphone's) comes back by itself when its connection
is lost, with the resume token, and tells its caller with the new ``welcome`` (docs/protocol.md
11.2, 11.5.10). The lab tests move devices between real networks (tests/test_netlab_move.py)."""

from __future__ import annotations

import socket

import pytest

from signaling.protocol import messages as m
from signaling.sdk.line import Line, LineClosed
from tests.conftest import Server, befriend

HOST = "candidate:1 1 udp 2122260223 10.0.0.1 9 typ host"


async def _answered(caller: Line, callee: Line) -> str:
    await caller.send(m.Invite(handle="bob", media="audio"))
    call_id = (await caller.expect(m.Ringing)).call_id
    await callee.expect(m.Incoming)
    await callee.send(m.Accept(call_id=call_id))
    await caller.expect(m.Accepted)
    await callee.expect(m.Accepted)
    return call_id


def _break(line: Line) -> None:
    """The connection dies under the line (no close frame), as on a network that went away."""
    ws = line._ws
    assert ws is not None
    ws.get_extra_info("socket").shutdown(socket.SHUT_RDWR)


async def test_a_lost_connection_comes_back_by_itself_with_the_call(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await befriend(alice, bob)
    async with Line(alice) as a, Line(bob, follows_network=True) as b:
        await a.open()
        first = await b.open()
        call_id = await _answered(a, b)
        _break(b)
        assert (await a.expect(m.PeerReconnecting)).call_id == call_id
        await a.send(m.Ice(call_id=call_id, candidate=HOST))
        welcome = await b.expect(m.Welcome, within=30)  # the line came back: its caller is told
        assert welcome.resumed and welcome.resume_token != first.resume_token
        assert (await b.expect(m.PeerIce)).candidate == HOST  # what was sent meanwhile
        assert (await a.expect(m.PeerResumed)).call_id == call_id
        assert b.losses == [1006]
        await b.send(m.Hangup(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "hangup"


async def test_a_line_that_does_not_follow_the_network_reports_the_loss(server: Server) -> None:
    bob = await server.signup("bob")
    async with Line(bob) as b:
        await b.open()
        _break(b)
        with pytest.raises(LineClosed):
            await b.receive(within=30)
        assert b.losses == []


async def test_a_probe_of_a_live_connection_keeps_it_and_its_pong_to_itself(
    server: Server,
) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await befriend(alice, bob)
    async with Line(alice) as a, Line(bob, follows_network=True) as b:
        await a.open()
        await b.open()
        b.probe()
        assert b._probe is not None
        await b._probe  # answered: nothing lost
        call_id = await _answered(a, b)  # the next message the caller sees is the call's
        assert b.losses == [] and call_id
