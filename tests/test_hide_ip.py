"""Hide-my-IP over the real WebSocket: a sender cannot slip its addresses past the filter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from directory.lookup import wants_relay
from directory.records import RelayCalls
from directory.storage import keys
from directory.store import Store
from signaling.protocol import messages as m
from signaling.protocol.bodies import AccountUpdate
from signaling.sdk.client import Client, ClientError
from signaling.sdk.line import Line
from signaling.sdk.softphone import Softphone
from tests.conftest import MakeServer, Server, befriend
from tests.coturn import Coturn

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


# --- relayed by default between people who are not each other's contacts ------------------------


@pytest.mark.parametrize(
    ("caller", "callee", "caller_knows", "callee_knows", "relayed"),
    [
        ("strangers", "strangers", False, False, True),
        ("strangers", "strangers", True, False, True),  # only one side has the other
        ("strangers", "strangers", False, True, True),
        ("strangers", "strangers", True, True, False),  # mutual contacts: peer to peer
        ("always", "strangers", True, True, True),
        ("strangers", "always", True, True, True),
        ("never", "never", False, False, False),
        ("never", "strangers", False, False, True),  # the callee's choice still holds
        ("strangers", "never", True, False, False),
    ],
)
def test_who_is_relayed(
    caller: RelayCalls, callee: RelayCalls, caller_knows: bool, callee_knows: bool, relayed: bool
) -> None:
    assert (wants_relay(caller, caller_knows) or wants_relay(callee, callee_knows)) is relayed


async def _accepted_relay(server: Server, caller: Client, callee: Client) -> bool:
    """Whether a call from ``caller`` to ``callee``, answered, is relay-only for both sides."""
    assert callee.profile is not None
    async with await _open(caller) as a, await _open(callee) as b:
        await a.send(m.Invite(handle=callee.profile.handle))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        sides = {(await a.expect(m.Accepted)).relay_only, (await b.expect(m.Accepted)).relay_only}
        await a.send(m.Hangup(call_id=call_id))
        await a.expect(m.Ended)
        await b.expect(m.Ended)
    assert len(sides) == 1
    return sides.pop()


async def test_strangers_are_relayed_and_mutual_contacts_are_not(make_server: MakeServer) -> None:
    server = await make_server(turn_uris=("turn:127.0.0.1:3478",), turn_secret="s")
    alice, bob, carol = [await server.signup(h) for h in ("alice", "bob", "carol")]
    assert (await alice.me()).relay_calls == "strangers"
    assert await _accepted_relay(server, alice, bob) is True
    await alice.add_contact("bob")  # one way only: bob still relays for his own sake
    assert await _accepted_relay(server, alice, bob) is True
    await befriend(alice, carol)
    assert await _accepted_relay(server, alice, carol) is False
    assert await _accepted_relay(server, carol, alice) is False
    await carol.update(AccountUpdate(relay_calls="always"))
    assert await _accepted_relay(server, alice, carol) is True
    for person in (alice, bob):
        await person.update(AccountUpdate(relay_calls="never"))
    assert await _accepted_relay(server, bob, alice) is False


async def test_the_relay_setting_and_the_old_hide_ip_agree(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    me = await alice.update(AccountUpdate(hide_ip=True))
    assert (me.relay_calls, me.hide_ip) == ("always", True)
    me = await alice.update(AccountUpdate(hide_ip=False))
    assert (me.relay_calls, me.hide_ip) == ("strangers", False)
    me = await alice.update(AccountUpdate(relay_calls="never", hide_ip=False))
    assert (me.relay_calls, me.hide_ip) == ("never", False)
    with pytest.raises(ClientError) as disagree:
        await alice.update(AccountUpdate(relay_calls="strangers", hide_ip=True))
    assert (disagree.value.status, disagree.value.code) == (422, "invalid_value")
    # An account stored before relay_calls existed keeps what hide_ip said.
    assert alice.profile is not None
    key = keys.account(alice.profile.account_id)
    await store.redis.hdel(key, "relay_calls")
    await store.redis.hset(key, "hide_ip", "1")
    assert (await alice.me()).relay_calls == "always"
    await store.redis.hset(key, "hide_ip", "0")
    assert (await alice.me()).relay_calls == "strangers"


@pytest.mark.slow
async def test_a_real_call_between_strangers_carries_only_relay_candidates(
    make_server: MakeServer, coturn: Coturn
) -> None:
    server = await make_server(turn_uris=(coturn.uri,), turn_secret=coturn.secret)
    alice, bob, carol = [await server.signup(h) for h in ("alice", "bob", "carol")]
    await befriend(alice, carol)
    strangers = await _real_call(alice, bob)
    contacts = await _real_call(alice, carol)
    assert strangers.relay_only is True and contacts.relay_only is False
    for received in strangers.received:  # what each side got of the other
        kinds = [_candidate_type(line) for line in received if _candidate_type(line)]
        assert kinds and set(kinds) == {"relay"}, kinds
        assert all("raddr 0.0.0.0 rport 0" in line for line in received if "typ relay" in line)
    for received in contacts.received:
        assert "host" in {_candidate_type(line) for line in received}


@dataclass
class RealCall:
    relay_only: bool
    #: Every SDP line and candidate the caller, then the callee, received from the other.
    received: tuple[list[str], list[str]]


async def _real_call(caller_client: Client, callee_client: Client) -> RealCall:
    """Two aiortc softphones: the callee answers, the caller talks 2 s and hangs up."""
    assert callee_client.profile is not None
    accepted: list[dict[str, Any]] = []
    caller = Softphone(caller_client, emit=accepted.append)
    callee = Softphone(callee_client)
    await callee.line.open()
    try:
        answering = asyncio.create_task(callee.answer(duration_s=None))
        summary = await caller.call(callee_client.profile.handle, duration_s=2.0)
        answered = await asyncio.wait_for(answering, 15)
    finally:
        await caller.close()
        await callee.close()
    assert summary.outcome == answered.outcome == "connected", summary.as_event()
    [relay_only] = {e["relay_only"] for e in accepted if e["event"] == "accepted"}
    return RealCall(
        relay_only,
        tuple(_lines(phone.received_signaling) for phone in (caller, callee)),  # type: ignore[arg-type]
    )


def _lines(received: list[str]) -> list[str]:
    return [line for text in received for line in text.splitlines()]


def _candidate_type(line: str) -> str | None:
    fields = line.split(" ")
    return fields[7] if "candidate:" in line and fields[6:7] == ["typ"] else None
