"""Group calls over the real WebSocket and SFU control API, without media: ringing, privacy,
the roster, leaving, rejoining and lost devices."""

from __future__ import annotations

import json

from directory import operators
from directory.store import Store
from signaling.protocol import messages as m
from signaling.protocol.bodies import AccountUpdate, MissedCalls
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.conftest import MakeServer, Server
from tests.test_calls import _device, _line, _quiet
from tests.test_operator import _http


async def _start(host: Line, *handles: str) -> m.Joined:
    await host.send(m.GroupInvite(handles=list(handles), media="video", ref="g1"))
    joined = await host.expect(m.Joined)
    roster = await host.expect(m.Participants)
    assert [p.participant for p in roster.participants] == [joined.participant]
    return joined


def _names(roster: m.Participants) -> list[str | None]:
    return sorted(p.person.handle for p in roster.participants)


async def test_invitees_ring_on_every_device_and_joining_updates_everyone(server: Server) -> None:
    alice = await server.signup("alice", "Alice")
    bob_phone = await server.signup("bob")
    bob_laptop = await _device(server, bob_phone)
    carol = await server.signup("carol")
    async with (
        await _line(alice) as a,
        await _line(bob_phone) as b1,
        await _line(bob_laptop) as b2,
        await _line(carol) as c,
    ):
        joined = await _start(a, "bob", "Carol")
        assert (joined.ref, joined.host.handle, joined.media) == ("g1", "alice", "video")
        rings = [await line.expect(m.Incoming) for line in (b1, b2, c)]
        assert {r.call_id for r in rings} == {joined.call_id}
        assert all(r.group and r.caller.handle == "alice" for r in rings)

        await b2.send(m.Accept(call_id=joined.call_id))
        assert (await b1.expect(m.Ended)).reason == "answered_elsewhere"
        bob_joined = await b2.expect(m.Joined)
        assert bob_joined.participant != joined.participant
        for line in (a, b2):
            assert _names(await line.expect(m.Participants)) == ["alice", "bob"]

        await c.send(m.Decline(call_id=joined.call_id))
        assert (await c.expect(m.Ended)).reason == "declined"
        await _quiet(a)  # declining is nobody else's business


async def test_an_invitee_who_may_not_be_rung_looks_offline(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    carol = await server.signup("carol")
    await bob.block("alice")
    await carol.update(AccountUpdate(who_can_call="nobody"))
    async with await _line(alice) as a, await _line(bob) as b, await _line(carol) as c:
        await _start(a, "bob", "carol", "nobody_has_this")
        await _quiet(b)
        await _quiet(c)
        await _quiet(a)


async def test_invalid_handles_refuse_the_whole_invite(server: Server) -> None:
    alice = await server.signup("alice")
    async with await _line(alice) as a:
        await a.send(m.GroupInvite(handles=["bob", "x!"], ref="g2"))
        error = await a.expect(m.Error)
        assert error.code == "invalid_handle"
        await _quiet(a)


async def test_leave_rejoin_mute_and_the_last_one_out_ends_it(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = (await _start(a, "bob")).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        first = (await b.expect(m.Joined)).participant
        await b.expect(m.Participants)
        await a.expect(m.Participants)

        await b.send(m.Mute(call_id=call_id, audio_muted=True, video_muted=False))
        for line in (a, b):
            roster = await line.expect(m.Participants)
            muted = {p.person.handle: p.audio_muted for p in roster.participants}
            assert muted == {"alice": False, "bob": True}

        await b.send(m.Hangup(call_id=call_id))
        assert (await b.expect(m.Ended)).reason == "hangup"
        assert _names(await a.expect(m.Participants)) == ["alice"]

        await b.send(m.Accept(call_id=call_id))
        again = await b.expect(m.Joined)
        assert again.participant != first
        assert _names(await a.expect(m.Participants)) == ["alice", "bob"]

        await b.expect(m.Participants)  # its own second join, seen by bob too
        await a.send(m.Hangup(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "hangup"
        assert _names(await b.expect(m.Participants)) == ["bob"]
        await b.send(m.Hangup(call_id=call_id))
        assert (await b.expect(m.Ended)).reason == "hangup"
        await a.send(m.Accept(call_id=call_id))
        assert (await a.expect(m.Error)).code == "unknown_call"


async def test_a_lost_device_shows_reconnecting_then_leaves(make_server: MakeServer) -> None:
    server = await make_server(resume_window_s=1.0)
    alice = await server.signup("alice")
    bob: Client = await server.signup("bob")
    async with await _line(alice) as a:
        b = await _line(bob)
        call_id = (await _start(a, "bob")).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        await a.expect(m.Participants)
        await b.drop()
        reconnecting = await a.expect(m.Participants)
        state = {p.person.handle: p.connected for p in reconnecting.participants}
        assert state == {"alice": True, "bob": False}
        assert _names(await a.expect(m.Participants, within=5)) == ["alice"]
        await b.close()


async def test_strangers_cannot_join_or_publish(server: Server) -> None:
    alice = await server.signup("alice")
    eve = await server.signup("eve")
    async with await _line(alice) as a, await _line(eve) as e:
        call_id = (await _start(a, "bob")).call_id
        for message in (
            m.Accept(call_id=call_id),
            m.Publish(call_id=call_id, sdp="v=0\r\n"),
            m.Mute(call_id=call_id, audio_muted=True, video_muted=True),
        ):
            await e.send(message)
            assert (await e.expect(m.Error)).code == "unknown_call"
        await _quiet(a)


async def test_invitees_still_ringing_when_the_last_one_leaves_missed_it(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = (await _start(a, "bob")).call_id
        await b.expect(m.Incoming)
        await a.send(m.Hangup(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "hangup"
        assert (await b.expect(m.Ended)).reason == "missed"
    missed = await bob.request("GET", "/v1/calls/missed", MissedCalls)
    assert [call.caller_handle for call in missed.missed_calls] == ["alice"]


async def test_operators_see_group_calls_by_pseudonym_and_can_end_them(
    server: Server, store: Store
) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    op = await operators.create(store, "olga")
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = (await _start(a, "bob")).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        await b.expect(m.Joined)
        status, listing = await _http(server, "GET", "/v1/operator/calls", op)
        assert status == 200
        (view,) = listing["calls"]
        assert (view["id"], view["kind"], view["relay"]) == (call_id, "group", "sfu")
        assert view["participant_count"] == 2
        text = json.dumps(listing)
        for secret in ("alice", "bob", alice.profile.account_id, bob.profile.account_id):
            assert secret not in text

        reason = {"reason": "abuse report 42: ending the call"}
        status, revealed = await _http(
            server, "POST", f"/v1/operator/calls/{call_id}/reveal", op, reason
        )
        assert status == 200
        roles = {p["handle"]: p["role"] for p in revealed["participants"]}
        assert roles == {"alice": "host", "bob": "participant"}

        status, _ = await _http(server, "POST", f"/v1/operator/calls/{call_id}/end", op, reason)
        assert status == 204
        for line in (a, b):
            while not isinstance(message := await line.receive(within=5), m.Ended):
                assert isinstance(message, m.Participants)
            assert message.reason == "operator"
