"""1:1 calls by handle over the real WebSocket: ring rules, privacy, signaling relay."""

from __future__ import annotations

import asyncio

import pytest

from directory.storage import keys
from directory.store import Store
from signaling.protocol import messages as m
from signaling.protocol.bodies import AccountUpdate, DeviceEnrollment, MissedCalls
from signaling.protocol.records import Device
from signaling.sdk.client import Client, Profile, _b64, new_device_key
from signaling.sdk.line import Line, LineClosed
from tests.conftest import MakeServer, Server, befriend


async def _line(client: Client) -> Line:
    line = Line(client)
    await line.open()
    return line


async def _device(server: Server, owner: Client) -> Client:
    """A second device of the same account."""
    key, public = new_device_key()
    device: Device = await owner.request(
        "POST", "/v1/devices", Device, DeviceEnrollment(name="laptop", public_key=public)
    )
    assert owner.profile is not None
    other = server.client()
    other.profile = Profile(
        server=server.url,
        account_id=owner.profile.account_id,
        device_id=device.id,
        handle=owner.profile.handle,
        private_key=_b64(key.private_bytes_raw()),
    )
    return other


async def test_call_rings_every_device_and_one_answers(server: Server) -> None:
    alice = await server.signup("alice", "Alice")
    bob_phone = await server.signup("bob")
    await befriend(alice, bob_phone)  # peer to peer: no relay between contacts
    bob_laptop = await _device(server, bob_phone)
    async with await _line(alice) as a, await _line(bob_phone) as b1, await _line(bob_laptop) as b2:
        await a.send(m.Invite(handle="bob", media="video", ref="r1"))
        ringing = await a.expect(m.Ringing)
        assert ringing.ref == "r1"
        ring1 = await b1.expect(m.Incoming)
        ring2 = await b2.expect(m.Incoming)
        assert ring1.call_id == ring2.call_id == ringing.call_id
        assert (ring1.caller.handle, ring1.caller.display_name, ring1.media) == (
            "alice",
            "Alice",
            "video",
        )

        await b2.send(m.Accept(call_id=ringing.call_id))
        accepted = await a.expect(m.Accepted)
        assert (accepted.role, accepted.peer.handle, accepted.relay_only) == (
            "caller",
            "bob",
            False,
        )
        assert (await b2.expect(m.Accepted)).role == "callee"
        elsewhere = await b1.expect(m.Ended)
        assert elsewhere.reason == "answered_elsewhere"

        await a.send(m.Description(call_id=ringing.call_id, kind="offer", sdp="v=0 offer"))
        offer = await b2.expect(m.PeerDescription)
        assert (offer.kind, offer.sdp) == ("offer", "v=0 offer")
        await b2.send(
            m.Ice(call_id=ringing.call_id, candidate="candidate:1 1 udp 1 127.0.0.1 9 typ host")
        )
        assert (await a.expect(m.PeerIce)).candidate.endswith("typ host")

        await a.send(m.Hangup(call_id=ringing.call_id))
        assert (await a.expect(m.Ended)).reason == "hangup"
        assert (await b2.expect(m.Ended)).reason == "hangup"
        # The device that did not answer heard nothing of the media negotiation.
        with pytest.raises(asyncio.TimeoutError):
            await b1.receive(within=0.3)


async def _ring(caller: Line, *callees: Line, handle: str = "bob") -> str:
    await caller.send(m.Invite(handle=handle))
    call_id = (await caller.expect(m.Ringing)).call_id
    for callee in callees:
        assert (await callee.expect(m.Incoming)).call_id == call_id
    return call_id


async def _answered(caller: Line, callee: Line) -> str:
    """A call from ``caller`` to bob's ``callee`` line, answered there."""
    call_id = await _ring(caller, callee)
    await callee.send(m.Accept(call_id=call_id))
    await caller.expect(m.Accepted)
    await callee.expect(m.Accepted)
    return call_id


async def _quiet(line: Line) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await line.receive(within=0.3)


async def test_decline_ends_for_the_caller_and_stops_ringing_elsewhere(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    laptop = await _device(server, bob)
    async with await _line(alice) as a, await _line(bob) as b1, await _line(laptop) as b2:
        call_id = await _ring(a, b1, b2)
        await b1.send(m.Decline(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "declined"
        assert (await b2.expect(m.Ended)).reason == "declined_elsewhere"
        assert (await b1.expect(m.Ended)).reason == "declined"


async def test_decline_as_busy(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _ring(a, b)
        await b.send(m.Decline(call_id=call_id, busy=True))
        assert (await a.expect(m.Ended)).reason == "busy"


async def test_cancel_is_a_missed_call_for_the_callee(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _ring(a, b)
        await a.send(m.Hangup(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "cancelled"
        assert (await b.expect(m.Ended)).reason == "missed"
    missed = await _missed(bob)
    assert [c.caller_handle for c in missed.missed_calls] == ["alice"]


async def _missed(client: Client) -> MissedCalls:
    """Asked right after ``ended`` ``missed``: the record must already be there."""
    missed: MissedCalls = await client.request("GET", "/v1/calls/missed", MissedCalls)
    return missed


async def test_unanswered_call_times_out(make_server: MakeServer) -> None:
    server = await make_server(ring_timeout_s=0.5)
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        await _ring(a, b)
        assert (await a.expect(m.Ended)).reason == "no_answer"
        assert (await b.expect(m.Ended)).reason == "missed"
    assert len((await _missed(bob)).missed_calls) == 1


async def _transcript(caller: Line, handle: str, ring_timeout_s: float) -> list[str]:
    """What the caller sees, ids dropped, with times counted in ring timeouts."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await caller.send(m.Invite(handle=handle, ref="x"))
    seen = []
    while True:
        message = await caller.receive(within=10)
        elapsed = round((loop.time() - start) / ring_timeout_s)
        label = message.reason if isinstance(message, m.Ended) else type(message).__name__
        seen.append(f"{label}@{elapsed}")
        if isinstance(message, m.Ended):
            return seen


async def test_hidden_callees_look_exactly_like_an_offline_one(make_server: MakeServer) -> None:
    server = await make_server(ring_timeout_s=0.6)
    caller = await server.signup("caller")
    offline = await server.signup("offline")
    blocker = await server.signup("blocker")
    await blocker.block("caller")
    picky = await server.signup("picky")
    await picky.update(AccountUpdate(who_can_call="contacts"))
    hidden = await server.signup("hidden")
    await hidden.update(AccountUpdate(discoverable="nobody"))
    refusing = await server.signup("refusing")
    await refusing.update(AccountUpdate(who_can_call="nobody"))
    callees = [blocker, picky, hidden, refusing]
    lines = [await _line(c) for c in callees]  # all online: they could ring, yet must not
    async with await _line(caller) as a:
        expected = await _transcript(a, "offline", 0.6)
        assert expected == ["Ringing@0", "no_answer@1"]
        for handle in ("blocker", "picky", "hidden", "refusing", "never_registered"):
            assert await _transcript(a, handle, 0.6) == expected, handle
    for line in lines:
        await _quiet(line)  # nobody was rung
        await line.close()
    assert offline.profile is not None


async def test_call_waiting_and_switching(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    carol = await server.signup("carol")
    async with await _line(alice) as a, await _line(bob) as b, await _line(carol) as c:
        first = await _ring(a, b)
        await b.send(m.Accept(call_id=first))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)

        await c.send(m.Invite(handle="bob"))
        second = (await c.expect(m.Ringing)).call_id
        waiting = await b.expect(m.Incoming)
        assert (waiting.call_id, waiting.busy) == (second, True)

        await b.send(m.Accept(call_id=second))
        # Answering the waiting call hangs up the current one.
        assert (await a.expect(m.Ended)).reason == "hangup"
        got = {type(x): x for x in [await b.receive(within=5), await b.receive(within=5)]}
        assert got[m.Accepted].call_id == second  # type: ignore[attr-defined]
        assert got[m.Ended].call_id == first  # type: ignore[attr-defined]
        assert (await c.expect(m.Accepted)).call_id == second


async def test_a_bad_accept_does_not_end_the_current_call(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        await _answered(a, b)
        await b.send(m.Accept(call_id="0" * 32))
        assert (await b.expect(m.Error)).code == "unknown_call"
        await _quiet(a)  # the call goes on


async def test_a_device_coming_online_while_its_account_is_called_rings(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    laptop = await _device(server, bob)
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _ring(a, b)
        async with await _line(laptop) as late:
            assert (await late.expect(m.Incoming)).call_id == call_id
            await late.send(m.Accept(call_id=call_id))
            assert (await late.expect(m.Accepted)).call_id == call_id
            assert (await b.expect(m.Ended)).reason == "answered_elsewhere"
            await a.expect(m.Accepted)


async def test_revoking_a_device_closes_its_connection_and_ends_its_call(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    laptop = await _device(server, bob)
    async with await _line(alice) as a, await _line(laptop) as b:
        await _answered(a, b)
        assert laptop.profile is not None
        await bob.request("DELETE", f"/v1/devices/{laptop.profile.device_id}")
        assert (await a.expect(m.Ended)).reason == "peer_lost"
        with pytest.raises(LineClosed) as closed:
            while True:
                await b.receive(within=5)
        assert closed.value.code == 4001


async def test_glare_leaves_exactly_one_call(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        await asyncio.gather(a.send(m.Invite(handle="bob")), b.send(m.Invite(handle="alice")))
        seen: dict[str, list[m.ServerMessage]] = {"a": [], "b": []}
        for name, line in (("a", a), ("b", b)):
            while True:
                try:
                    seen[name].append(await line.receive(within=0.5))
                except TimeoutError:
                    break
        ended = {x.call_id for x in seen["a"] + seen["b"] if isinstance(x, m.Ended)}
        rung = {x.call_id for x in seen["a"] + seen["b"] if isinstance(x, m.Ringing)}
        assert len(rung) == 2 and len(ended) == 1
        [survivor] = rung - ended
        assert survivor == min(rung)
        assert all(x.reason == "glare" for x in seen["a"] + seen["b"] if isinstance(x, m.Ended))
        # The survivor still rings on its callee and can be answered.
        incoming = [x for x in seen["a"] + seen["b"] if isinstance(x, m.Incoming)]
        answerer = (
            a if any(x.call_id == survivor for x in seen["a"] if isinstance(x, m.Incoming)) else b
        )
        assert survivor in {x.call_id for x in incoming}
        await answerer.send(m.Accept(call_id=survivor))
        assert (await answerer.expect(m.Accepted)).call_id == survivor


HOST = "candidate:1 1 udp 2122260223 192.168.7.7 50000 typ host generation 0"
SRFLX = "candidate:2 1 udp 1686052607 203.0.113.9 50001 typ srflx raddr 192.168.7.7 rport 50000"
RELAY = "candidate:3 1 udp 41885439 198.51.100.4 3478 typ relay raddr 203.0.113.9 rport 50001"


async def test_hide_my_ip_forwards_only_scrubbed_relay_candidates(make_server: MakeServer) -> None:
    server = await make_server(turn_uris=("turn:127.0.0.1:3478",), turn_secret="s")
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await bob.update(AccountUpdate(hide_ip=True))
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _ring(a, b)
        await b.send(m.Accept(call_id=call_id))
        assert (await a.expect(m.Accepted)).relay_only is True
        assert (await b.expect(m.Accepted)).relay_only is True
        sdp = (
            "v=0\r\no=- 1 1 IN IP4 192.168.7.7\r\nc=IN IP4 192.168.7.7\r\n"
            f"a={HOST}\r\na={SRFLX}\r\na={RELAY}\r\n"
        )
        await a.send(m.Description(call_id=call_id, kind="offer", sdp=sdp))
        for candidate in (HOST, SRFLX, RELAY, ""):
            await a.send(m.Ice(call_id=call_id, candidate=candidate))
        offer = await b.expect(m.PeerDescription)
        received = [(await b.expect(m.PeerIce)).candidate for _ in range(2)]
        await _quiet(b)
    for text in (offer.sdp, *received):
        assert "192.168.7.7" not in text and "203.0.113.9" not in text
    assert "198.51.100.4 3478 typ relay" in offer.sdp
    assert received[0].startswith("candidate:3") and received[1] == ""


async def test_hide_my_ip_without_turn_goes_through_the_sfu_and_refuses_peer_sdp(
    server: Server,
) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await bob.update(AccountUpdate(hide_ip=True))
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _ring(a, b)
        await b.send(m.Accept(call_id=call_id))
        for side in (a, b):
            accepted = await side.expect(m.Accepted)
            assert (accepted.relay_only, accepted.sfu) == (True, True)
        await a.send(m.Description(call_id=call_id, kind="offer", sdp="v=0\r\n"))
        assert (await a.expect(m.Error)).code == "use_sfu"
        await _quiet(b)


async def test_a_call_between_contacts_is_peer_to_peer_even_with_an_sfu(server: Server) -> None:
    alice = await server.signup("alice")
    await server.signup("bob")
    carol = await server.signup("carol")
    await befriend(alice, carol)
    async with await _line(alice) as a, await _line(carol) as c:
        call_id = await _ring(a, c, handle="carol")
        await c.send(m.Accept(call_id=call_id))
        assert (await a.expect(m.Accepted)).sfu is False


async def test_between_contacts_candidates_pass_unchanged(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await befriend(alice, bob)
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _answered(a, b)
        for candidate in (HOST, SRFLX):
            await a.send(m.Ice(call_id=call_id, candidate=candidate))
        assert [(await b.expect(m.PeerIce)).candidate for _ in range(2)] == [HOST, SRFLX]


async def test_a_dropped_device_resumes_and_gets_what_it_missed(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await befriend(alice, bob)
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _answered(a, b)
        await b.drop()
        assert (await a.expect(m.PeerReconnecting)).call_id == call_id
        for n in range(3):
            await a.send(
                m.Ice(call_id=call_id, candidate=f"candidate:{n} 1 udp 1 10.0.0.{n} 9 typ host")
            )
        welcome = await b.open(resume=True)
        assert welcome.resumed is True
        got = [(await b.expect(m.PeerIce)).candidate for _ in range(3)]
        assert [c.split()[4] for c in got] == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
        assert (await a.expect(m.PeerResumed)).call_id == call_id
        await b.send(m.Hangup(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "hangup"


async def test_a_device_that_does_not_come_back_ends_the_call(make_server: MakeServer) -> None:
    server = await make_server(resume_window_s=0.5)
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _answered(a, b)
        await b.drop()
        await a.expect(m.PeerReconnecting)
        ended = await a.expect(m.Ended)
        assert (ended.call_id, ended.reason) == (call_id, "peer_lost")
        # Coming back too late gives a fresh session, not the call.
        assert (await b.open(resume=True)).resumed is False
        await _quiet(b)


async def test_ice_restart_offer_reaches_the_peer_marked_as_restart(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await befriend(alice, bob)
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _answered(a, b)
        await b.send(
            m.Description(call_id=call_id, kind="offer", sdp="v=0 new-ufrag", restart=True)
        )
        restart = await a.expect(m.PeerDescription)
        assert (restart.kind, restart.restart, restart.sdp) == ("offer", True, "v=0 new-ufrag")
        await a.send(m.Description(call_id=call_id, kind="answer", sdp="v=0 answer"))
        assert (await b.expect(m.PeerDescription)).kind == "answer"


async def test_a_device_that_misses_too_much_ends_its_call_cleanly(
    make_server: MakeServer,
) -> None:
    server = await make_server(resume_queue_max=10)
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await befriend(alice, bob)
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _answered(a, b)
        await b.drop()
        await a.expect(m.PeerReconnecting)
        for n in range(11):  # one more than the resume queue holds
            await a.send(
                m.Ice(call_id=call_id, candidate=f"candidate:{n} 1 udp 1 10.0.0.1 9 typ host")
            )
        ended = await a.expect(m.Ended)
        assert (ended.call_id, ended.reason) == (call_id, "peer_lost")


async def test_calling_back_during_a_connected_call_is_call_waiting_not_glare(
    server: Server,
) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    bob_laptop = await _device(server, bob)
    async with await _line(alice) as a, await _line(bob) as b, await _line(bob_laptop) as b2:
        first = await _ring(a, b, b2)
        await b.send(m.Accept(call_id=first))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        assert (await b2.expect(m.Ended)).reason == "answered_elsewhere"
        await b2.send(m.Invite(handle="alice"))
        second = (await b2.expect(m.Ringing)).call_id
        waiting = await a.expect(m.Incoming)
        assert (waiting.call_id, waiting.busy) == (second, True)
        await _quiet(b)  # the connected call is untouched


async def test_recovery_that_revokes_other_devices_closes_them(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    assert bob.profile is not None and bob.profile.recovery_code
    async with await _line(alice) as a, await _line(bob) as b:
        await _answered(a, b)
        await server.client().recover("bob", bob.profile.recovery_code, revoke_others=True)
        assert (await a.expect(m.Ended)).reason == "peer_lost"
        with pytest.raises(LineClosed) as closed:
            while True:
                await b.receive(within=5)
        assert closed.value.code == 4001


async def test_a_call_ringing_out_on_an_erased_account_leaves_nothing(
    make_server: MakeServer, store: Store
) -> None:
    server = await make_server(ring_timeout_s=0.5)
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    bob_id = (await bob.me()).id
    async with await _line(alice) as a:
        await a.send(m.Invite(handle="bob"))
        await a.expect(m.Ringing)
        await bob.erase()
        assert (await a.expect(m.Ended)).reason == "no_answer"
    await asyncio.sleep(0.2)
    assert await store.redis.exists(keys.missed_calls(bob_id)) == 0
    assert await store.redis.smembers(keys.missed_by((await alice.me()).id)) == set()


async def test_invites_survive_a_store_that_lost_its_scripts(server: Server, store: Store) -> None:
    """A restarted or failed-over store answers NOSCRIPT; the invite reloads and goes on."""
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        await _ring(a, b)
        await store.redis.script_flush()
        await _ring(a, b)
