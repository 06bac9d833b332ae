"""Group calls over the real WebSocket (issue 17, items 7 and 10): the host adds people to a
running call (``group_add``), only the host may, the same privacy rules apply as for
``group_invite``, and a participant's shared screen (``mute``'s ``screen``) reaches everyone."""

from __future__ import annotations

from signaling.calls.machine import RING_TIMEOUT_S
from signaling.protocol import messages as m
from signaling.sdk.line import Line
from tests.conftest import Server
from tests.test_calls import _line, _quiet
from tests.test_group_protocol import _names, _start


async def _roster_of(line: Line, names: list[str]) -> None:
    """Skip earlier rosters still queued on ``line`` until one lists ``names``."""
    while _names(await line.expect(m.Participants)) != names:
        pass


async def test_the_host_adds_someone_to_a_running_call_who_then_joins(server: Server) -> None:
    alice = await server.signup("alice", "Alice")
    bob = await server.signup("bob")
    carol = await server.signup("carol")
    async with await _line(alice) as a, await _line(bob) as b, await _line(carol) as c:
        joined = await _start(a, "bob")
        assert joined.ring_timeout_s == RING_TIMEOUT_S
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=joined.call_id))
        await b.expect(m.Joined)
        assert _names(await a.expect(m.Participants)) == ["alice", "bob"]
        await _quiet(c)  # not invited yet

        await a.send(m.GroupAdd(call_id=joined.call_id, handles=["Carol", "bob"]))
        ring = await c.expect(m.Incoming)
        assert (ring.call_id, ring.group, ring.caller.handle) == (joined.call_id, True, "alice")
        await c.send(m.Accept(call_id=joined.call_id))
        assert (await c.expect(m.Joined)).call_id == joined.call_id
        for line in (a, b, c):
            await _roster_of(line, ["alice", "bob", "carol"])
        await _quiet(b)  # bob, already in the call, is not rung again


async def test_only_the_host_adds_and_people_it_may_not_ring_are_left_out(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    carol = await server.signup("carol")
    dave = await server.signup("dave")
    await dave.block("alice")
    async with (
        await _line(alice) as a,
        await _line(bob) as b,
        await _line(carol) as c,
        await _line(dave) as d,
    ):
        joined = await _start(a, "bob")
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=joined.call_id))
        await b.expect(m.Joined)
        await a.expect(m.Participants)
        await b.expect(m.Participants)

        await b.send(m.GroupAdd(call_id=joined.call_id, handles=["carol"]))
        error = await b.expect(m.Error)
        assert (error.code, error.call_id) == ("not_host", joined.call_id)
        await c.send(m.GroupAdd(call_id=joined.call_id, handles=["carol"]))
        assert (await c.expect(m.Error)).code == "unknown_call"  # not in the call at all
        await _quiet(c)

        # Dave blocks Alice: he is never rung, and Alice hears exactly what she hears for a
        # handle no one has — nothing.
        await a.send(m.GroupAdd(call_id=joined.call_id, handles=["dave", "nobody_has_this"]))
        await _quiet(d)
        await _quiet(a)
        await a.send(m.GroupAdd(call_id=joined.call_id, handles=["x!"]))
        error = await a.expect(m.Error)
        assert (error.code, error.call_id) == ("invalid_handle", joined.call_id)


async def test_a_shared_screen_is_in_everyones_roster(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        joined = await _start(a, "bob")
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=joined.call_id))
        await b.expect(m.Joined)
        await a.expect(m.Participants)
        await b.expect(m.Participants)

        await a.send(
            m.Mute(call_id=joined.call_id, audio_muted=False, video_muted=False, screen=True)
        )
        for line in (a, b):
            roster = await line.expect(m.Participants)
            sharing = {p.person.handle: p.screen for p in roster.participants}
            assert sharing == {"alice": True, "bob": False}
        await a.send(m.Mute(call_id=joined.call_id, audio_muted=False, video_muted=False))
        roster = await b.expect(m.Participants)
        assert not any(p.screen for p in roster.participants)
