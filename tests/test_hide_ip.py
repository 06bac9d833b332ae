"""Hide-my-IP over the real WebSocket: a sender cannot slip its addresses past the filter."""

from __future__ import annotations

from signaling.client import Client
from signaling.phone.line import Line
from signaling.schemas import AccountUpdate
from signaling.ws import messages as m
from tests.conftest import MakeServer

HOST = "candidate:1 1 udp 2122260223 192.168.7.7 50000 typ host generation 0"
MDNS = "candidate:2 1 udp 2122260223 0b4d5f3e-aaaa-bbbb-cccc-ddddeeeeffff.local 50002 typ host"
RELAY = "candidate:3 1 udp 41885439 198.51.100.4 3478 typ relay raddr 203.0.113.9 rport 50001"
OWN = ("192.168.7.7", "203.0.113.9", "0b4d5f3e-aaaa-bbbb-cccc-ddddeeeeffff.local")


async def _relayed_call(make_server: MakeServer) -> tuple[Line, Line, str]:
    """Alice's line, Bob's line (hide-my-IP on) and their answered relay-only call."""
    server = await make_server(turn_uris=("turn:127.0.0.1:3478",), turn_secret="s")
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await bob.update(AccountUpdate(hide_ip=True))
    a, b = await _open(alice), await _open(bob)
    await a.send(m.Invite(handle="bob"))
    call_id = (await a.expect(m.Ringing)).call_id
    await b.expect(m.Incoming)
    await b.send(m.Accept(call_id=call_id))
    for line in (a, b):
        assert (await line.expect(m.Accepted)).relay_only is True
    return a, b, call_id


async def _open(client: Client) -> Line:
    line = Line(client)
    await line.open()
    return line


async def test_candidates_behind_bare_newlines_are_filtered(make_server: MakeServer) -> None:
    a, b, call_id = await _relayed_call(make_server)
    async with a, b:
        # CRLF up to the media line, then candidates joined by bare newlines.
        head = "v=0\r\no=- 7 2 IN IP4 192.168.7.7\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
        sdp = head + "\n".join(["c=IN IP4 203.0.113.9", f"a={HOST}", f"a={MDNS}", f"a={RELAY}", ""])
        await a.send(m.Description(call_id=call_id, kind="offer", sdp=sdp))
        offer = (await b.expect(m.PeerDescription)).sdp
        # The end-of-candidates marker after the offer: nothing else came in between.
        await a.send(m.Ice(call_id=call_id, candidate=""))
        assert (await b.expect(m.PeerIce)).candidate == ""
    assert [address for address in OWN if address in offer] == []
    assert "198.51.100.4 3478 typ relay raddr 0.0.0.0 rport 0" in offer


async def test_a_malformed_sdp_or_candidate_gets_invalid_sdp(make_server: MakeServer) -> None:
    a, b, call_id = await _relayed_call(make_server)
    async with a, b:
        hidden = f"v=0\r\no=- 7 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=mid:0\ra={HOST}\r\n"
        await a.send(m.Description(call_id=call_id, kind="offer", sdp=hidden))
        error = await a.expect(m.Error)
        assert (error.code, error.call_id) == ("invalid_sdp", call_id)
        await a.send(m.Ice(call_id=call_id, candidate=f"{RELAY}\r\na={HOST}"))
        assert (await a.expect(m.Error)).code == "invalid_sdp"
        await a.send(m.Ice(call_id=call_id, candidate=""))
        assert (await b.expect(m.PeerIce)).candidate == ""  # nothing of the refused ones
