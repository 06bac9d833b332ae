"""Calls through the SFU whose signaling owner is killed (SIGKILL) go on: a survivor takes them
over from the store and adopts their SFU room, which forwarded media all along. Real signaling
processes, a real media node, real aiortc participants; a group call and a hide-my-IP 1:1 call."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from directory.store import Store
from media.embedded import EmbeddedMedia
from signaling.calls import group as g
from signaling.calls.records import CallRecords
from signaling.protocol import messages as m
from signaling.protocol.bodies import AccountUpdate
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from signaling.sdk.sfu_session import SfuSession
from signaling.server import SHUTDOWN_GRACE_S
from tests.media_nodes import until, until_stored
from tests.redis_cluster import StoreTarget
from tests.test_cluster_processes import DETECTION_S, Node, _client, _nodes, clients

pytestmark = pytest.mark.slow
__all__ = ["clients"]  # the fixture, shared with test_cluster_processes

MEDIA_S = 30.0


class Guest:
    """A participant on a line: accepts the ring, then runs an SFU session in the background."""

    def __init__(self, line: Line) -> None:
        self.line = line
        self.session: SfuSession | None = None
        self.task: asyncio.Task[str] | None = None

    async def join(self, call_id: str) -> None:
        await self.line.send(m.Accept(call_id=call_id))
        while not isinstance(message := await self.line.receive(within=10), m.Joined):
            pass
        self.start(message.call_id, message.participant)

    def start(
        self, call_id: str, participant: str, participants: list[m.Participant] | None = None
    ) -> None:
        """``participants``: a relayed 1:1 call's, from ``accepted``."""
        self.session = SfuSession(
            self.line, call_id, participant=participant, video=False, emit=lambda _e: None
        )
        self.task = asyncio.create_task(self._run(self.session, participants))

    @staticmethod
    async def _run(session: SfuSession, participants: list[m.Participant] | None) -> str:
        if participants is not None:
            await session.introduce(participants)
        return await session.run(None)

    def audio(self) -> int:
        return 0 if self.session is None else self.session.total().audio_packets_received

    def audio_from(self, participant: str) -> int:
        assert self.session is not None
        received = self.session.received.get(participant)
        return 0 if received is None else received.audio_packets_received

    def roster(self) -> dict[str, m.Participant]:
        return {} if self.session is None else self.session.roster

    def handles(self) -> set[str | None]:
        return {p.person.handle for p in self.roster().values()}

    async def leave(self) -> str:
        assert self.session is not None and self.task is not None
        await self.line.send(m.Hangup(call_id=self.session.call_id))
        reason = await asyncio.wait_for(self.task, 10)
        await self.session.close()
        self.session = self.task = None
        return reason

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.session is not None:
            await self.session.close()


async def _stored_with_everyone_published(store: Store, call_id: str, count: int) -> str:
    """Wait until the record has every member published and names the room's media node."""
    records = CallRecords(store, "test-probe")
    async with asyncio.timeout(10):
        while True:
            stored = await records.load(call_id)
            call: Any = None if stored is None else stored.call
            published = (
                0
                if not isinstance(call, g.GroupCall)
                else sum(mb.published for mb in call.members.values())
            )
            if stored is not None and stored.media_node and published == count:
                return stored.owner
            await asyncio.sleep(0.05)


async def test_a_group_call_outlives_its_signaling_owner(
    store: Store, store_target: StoreTarget, sfu: EmbeddedMedia, clients: list[Client]
) -> None:
    """Alice's node runs the call and dies; bob and carol (on node B) talk on, mute, leave and
    rejoin, with roster updates from B, and their media never stops."""
    with _nodes(store_target, sfu, resume_s=60) as (node_a, node_b):
        await asyncio.gather(node_a.ready(), node_b.ready())
        alice = _client(clients, node_a.url)
        await alice.signup("alice")
        bob_client, carol_client = _client(clients, node_b.url), _client(clients, node_b.url)
        await bob_client.signup("bob")
        await carol_client.signup("carol")
        host, bob, carol = Guest(Line(alice)), Guest(Line(bob_client)), Guest(Line(carol_client))
        try:
            for guest in (host, bob, carol):
                await guest.line.open()
            await host.line.send(m.GroupInvite(handles=["bob", "carol"]))
            joined = await host.line.expect(m.Joined, within=10)
            host.start(joined.call_id, joined.participant)
            call_id = joined.call_id
            for guest in (bob, carol):
                assert (await guest.line.expect(m.Incoming, within=10)).call_id == call_id
                await guest.join(call_id)
            everyone = (host, bob, carol)
            await until(
                lambda: all(g.session and g.session.participants_received(False) == 2
                            for g in everyone),
                MEDIA_S, "media between all three",
            )  # fmt: skip
            owner = await _stored_with_everyone_published(store, call_id, 3)
            assert owner == node_a.node_id
            ids = {p.person.handle: p.participant for p in bob.roster().values()}

            node_a.kill()
            # Alice's device lost its signaling node and stops talking to it; its media
            # connections to the SFU stay up (closing them would be a media failure, which the
            # SFU reports and signaling answers with media_failed).
            assert host.task is not None
            host.task.cancel()
            # B takes the call over; alice's device, on the dead node, is reconnecting.
            await until(
                lambda: not bob.roster()[ids["alice"]].connected, 3 * DETECTION_S,
                "bob sees alice reconnecting",
            )  # fmt: skip
            assert await CallRecords(store, "test-probe").owner(call_id) == node_b.node_id
            # Media keeps flowing between bob and carol through the same room.
            before = bob.audio_from(ids["carol"]), carol.audio_from(ids["bob"])
            await until(
                lambda: bob.audio_from(ids["carol"]) > before[0] + 50
                and carol.audio_from(ids["bob"]) > before[1] + 50,
                MEDIA_S, "media between bob and carol after the takeover",
            )  # fmt: skip
            # The call still answers: mute shows in bob's roster ...
            await carol.line.send(m.Mute(call_id=call_id, audio_muted=True, video_muted=False))
            await until(lambda: bob.roster()[ids["carol"]].audio_muted, 10, "carol shows muted")
            # ... carol leaves (bob sees her go) and rejoins, and media flows to her again.
            assert await carol.leave() == "hangup"
            await until(lambda: bob.handles() == {"alice", "bob"}, 10, "carol gone")
            await carol.join(call_id)
            await until(lambda: bob.handles() == {"alice", "bob", "carol"}, 10, "carol back")
            rejoined = {p.person.handle: p.participant for p in bob.roster().values()}["carol"]
            await until(
                lambda: bob.audio_from(rejoined) > 0 and carol.audio_from(ids["bob"]) > 0,
                MEDIA_S, "media to and from carol after rejoining",
            )  # fmt: skip
            assert await bob.leave() == "hangup"
        finally:
            for guest in (host, bob, carol):
                await guest.close()
                await guest.line.close()


async def test_a_relayed_one_to_one_call_outlives_its_signaling_owner(
    store: Store, store_target: StoreTarget, sfu: EmbeddedMedia, clients: list[Client]
) -> None:
    """Alice (on node A, the owner) calls bob, who hides his IP, through the SFU; A dies. Bob's
    node takes the call over, alice's media never stops, she resumes on B and hangs up there."""
    with _nodes(store_target, sfu, resume_s=60) as (node_a, node_b):
        await asyncio.gather(node_a.ready(), node_b.ready())
        alice = _client(clients, node_a.url)
        await alice.signup("alice")
        bob_client = _client(clients, node_b.url)
        await bob_client.signup("bob")
        await bob_client.update(AccountUpdate(hide_ip=True))
        caller, callee = Guest(Line(alice)), Guest(Line(bob_client))
        moved: Line | None = None
        try:
            for guest in (caller, callee):
                await guest.line.open()
            await caller.line.send(m.Invite(handle="bob"))
            call_id = (await caller.line.expect(m.Ringing, within=10)).call_id
            assert (await callee.line.expect(m.Incoming, within=10)).call_id == call_id
            await callee.line.send(m.Accept(call_id=call_id))
            for guest in (caller, callee):
                accepted = await guest.line.expect(m.Accepted, within=10)
                assert accepted.sfu and accepted.participant is not None
                guest.start(call_id, accepted.participant, accepted.participants)
            await until(lambda: caller.audio() > 0 and callee.audio() > 0, MEDIA_S, "media")
            records = CallRecords(store, "test-probe")

            async def stored_with_its_room() -> bool:
                stored = await records.load(call_id)
                return stored is not None and stored.media_node is not None

            await until_stored(stored_with_its_room, 10, "the record names the media node")
            welcome = caller.line.welcome
            node_a.kill()
            await until(lambda: caller.task is not None and caller.task.done(), 10, "A closed")
            # Alice's media goes on to the SFU without signaling: bob keeps receiving it.
            before = callee.audio()
            await until(lambda: callee.audio() > before + 50, MEDIA_S, "media after the kill")

            async def taken_over() -> bool:
                return await records.owner(call_id) == node_b.node_id

            await until_stored(taken_over, 3 * DETECTION_S, "B takes the call over")
            moved = Line(_client(clients, node_b.url, alice))
            moved.welcome = welcome
            assert (await moved.open(resume=True)).resumed
            await moved.send(m.Hangup(call_id=call_id))
            assert callee.task is not None
            assert await asyncio.wait_for(callee.task, 10) == "hangup"
            callee.task = None
        finally:
            for guest in (caller, callee):
                await guest.close()
                await guest.line.close()
            if moved is not None:
                await moved.close()


async def test_a_draining_owner_hands_its_group_call_over_with_the_room(
    store: Store, store_target: StoreTarget, sfu: EmbeddedMedia, clients: list[Client]
) -> None:
    """SIGTERM on alice's node A, which runs the group call: the call moves to B with its room,
    alice's line follows ``reconnect`` to B, and all three talk on: media, mute, roster."""
    env = {"CALLBOOK_DRAIN_GRACE_S": "20"}
    node_a = Node("drain-a", store_target, sfu, 30, env)
    node_b = Node("drain-b", store_target, sfu, 30, env)
    try:
        await asyncio.gather(node_a.ready(), node_b.ready())
        servers = [node_a.url, node_b.url]
        alice = _client(clients, node_a.url)
        await alice.signup("alice")
        bob_client, carol_client = _client(clients, node_b.url), _client(clients, node_b.url)
        await bob_client.signup("bob")
        await carol_client.signup("carol")
        host = Guest(Line(alice, servers=servers))
        bob, carol = Guest(Line(bob_client)), Guest(Line(carol_client))
        try:
            for guest in (host, bob, carol):
                await guest.line.open()
            await host.line.send(m.GroupInvite(handles=["bob", "carol"]))
            joined = await host.line.expect(m.Joined, within=10)
            call_id = joined.call_id
            host.start(call_id, joined.participant)
            for guest in (bob, carol):
                assert (await guest.line.expect(m.Incoming, within=10)).call_id == call_id
                await guest.join(call_id)
            everyone = (host, bob, carol)
            await until(
                lambda: all(g.session and g.session.participants_received(False) == 2
                            for g in everyone),
                MEDIA_S, "media between all three",
            )  # fmt: skip
            await _stored_with_everyone_published(store, call_id, 3)
            ids = {p.person.handle: p.participant for p in bob.roster().values()}

            node_a.process.send_signal(signal.SIGTERM)
            assert (await host.line.moved(within=15)).resumed
            exit_code = await asyncio.to_thread(node_a.process.wait, 20 + SHUTDOWN_GRACE_S + 5)
            assert exit_code == 0
            assert await CallRecords(store, "test-probe").owner(call_id) == node_b.node_id
            before = [bob.audio_from(ids["alice"]), host.audio_from(ids["bob"])]
            await until(
                lambda: bob.audio_from(ids["alice"]) > before[0] + 50
                and host.audio_from(ids["bob"]) > before[1] + 50,
                MEDIA_S, "media to and from alice after the drain",
            )  # fmt: skip
            await host.line.send(m.Mute(call_id=call_id, audio_muted=True, video_muted=False))
            await until(lambda: bob.roster()[ids["alice"]].audio_muted, 10, "alice shows muted")
            assert all(p.connected for p in bob.roster().values())  # nobody was ever lost
            assert await carol.leave() == "hangup"
            await until(lambda: host.handles() == {"alice", "bob"}, 10, "alice sees carol go")
        finally:
            for guest in (host, bob, carol):
                await guest.close()
                await guest.line.close()
    finally:
        node_a.stop()
        node_b.stop()
