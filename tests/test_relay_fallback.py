"""Relay fallback over the real WebSocket (protocol 11.9.1): a peer-to-peer call whose path
failed moves to TURN, or to the SFU without TURN, without ending; from then on it is relayed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from directory import operators
from directory.store import Store
from signaling.protocol import messages as m
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.conftest import MakeServer, Server, befriend

HOST = "candidate:1 1 udp 2122260223 192.168.7.7 50000 typ host generation 0"
RELAY = "candidate:3 1 udp 41885439 198.51.100.4 3478 typ relay raddr 203.0.113.9 rport 50001"


@asynccontextmanager
async def _contacts_call(server: Server) -> AsyncIterator[tuple[Line, Line, str]]:
    """Alice's and Bob's lines (each the other's contact) and their answered call."""
    alice, bob = await server.signup("alice"), await server.signup("bob")
    await befriend(alice, bob)
    async with Line(alice) as a, Line(bob) as b:
        await a.open()
        await b.open()
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        for line in (a, b):
            accepted = await line.expect(m.Accepted)
            assert (accepted.relay_only, accepted.sfu) == (False, False)
        yield a, b, call_id


async def _quiet(line: Line) -> None:
    """Nothing is on its way to ``line``: a ping's pong comes next."""
    await line.send(m.Ping())
    await line.expect(m.Pong)


async def _get(server: Server, path: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(server.url + path, headers=headers) as r:
        return await r.text()


async def test_a_failed_path_moves_to_turn_and_is_relayed_from_then_on(
    make_server: MakeServer, store: Store
) -> None:
    server = await make_server(turn_uris=("turn:127.0.0.1:3478",), turn_secret="s")
    op = await operators.create(store, "olga")
    async with _contacts_call(server) as (a, b, call_id):
        await b.send(m.Ice(call_id=call_id, candidate=HOST))
        assert (await a.expect(m.PeerIce)).candidate == HOST  # peer to peer: as sent
        await b.send(m.RelayFallback(call_id=call_id))
        for line in (a, b):
            assert await line.expect(m.Relayed) == m.Relayed(call_id=call_id)
        await a.send(m.RelayFallback(call_id=call_id))  # crossed the first: changes nothing
        await _quiet(a)
        await _quiet(b)
        await b.send(m.Ice(call_id=call_id, candidate=HOST))
        await b.send(m.Ice(call_id=call_id, candidate=RELAY))
        assert "raddr 0.0.0.0 rport 0" in (await a.expect(m.PeerIce)).candidate
        (live,) = json.loads(await _get(server, "/v1/operator/calls", op))["calls"]
        assert (live["relay"], live["fell_back"]) == ("turn", True)
        await a.send(m.Hangup(call_id=call_id))
        await a.expect(m.Ended)
        await b.expect(m.Ended)
    metrics = await _get(server, "/metrics")
    assert 'callbook_call_paths_total{fell_back="true",path="turn"} 1.0' in metrics


async def test_without_turn_a_failed_path_moves_to_the_sfu_with_both_devices_introduced(
    server: Server,
) -> None:
    async with _contacts_call(server) as (a, b, call_id):
        await a.send(m.RelayFallback(call_id=call_id))
        moved = [await line.expect(m.Relayed) for line in (a, b)]
        for relayed in moved:
            assert relayed.sfu and relayed.participants is not None
            ids = [p.participant for p in relayed.participants]
            assert len(set(ids)) == 2 and all(p.media_key for p in relayed.participants)
        assert [r.participant for r in moved] == ids  # caller first
        await b.send(m.Description(call_id=call_id, kind="offer", sdp="v=0"))
        assert (await b.expect(m.Error)).code == "use_sfu"


async def test_only_a_connected_call_falls_back(server: Server) -> None:
    alice: Client = await server.signup("alice")
    bob: Client = await server.signup("bob")
    await befriend(alice, bob)
    async with Line(alice) as a, Line(bob) as b:
        await a.open()
        await b.open()
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await a.send(m.RelayFallback(call_id=call_id))
        error = await a.expect(m.Error)
        assert (error.code, error.call_id) == ("not_in_call", call_id)
