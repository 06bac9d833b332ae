"""A screen shared while the call's signaling owner dies (SIGKILL): the survivor that adopts the
call's SFU room learns from the SFU who shares there (the call's record does not say), so the
sharer's ``unpublish`` still reaches the others. Real signaling processes, a real media node,
real aiortc participants (docs/protocol.md 11.15.1)."""

from __future__ import annotations

import pytest

from directory.store import Store
from media.embedded import EmbeddedMedia
from signaling.protocol import messages as m
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.media_nodes import until
from tests.redis_cluster import StoreTarget
from tests.test_cluster_processes import DETECTION_S, _client, _nodes, clients
from tests.test_sfu_takeover import MEDIA_S, Guest, _stored_with_everyone_published

pytestmark = pytest.mark.slow
__all__ = ["clients"]  # the fixture, shared with test_cluster_processes


def screen_frames(guest: Guest, sharer: str) -> int:
    received = None if guest.session is None else guest.session.screens.get(sharer)
    return 0 if received is None else received.video_frames_received


def state(sharer: Guest, viewer: Guest) -> dict[str, object]:
    """What to look at when the screen does not arrive."""
    assert sharer.session is not None and viewer.session is not None
    screen, streams = sharer.session._screen, viewer.session.streams.values()
    return {
        "sharer_screen_pc": None if screen is None else screen.connectionState,
        "viewer_revision": viewer.session.revision,
        "viewer_streams": [(s.participant, s.source, s.kind) for s in streams],
        "viewer_screens": {p: r.video_frames_received for p, r in viewer.session.screens.items()},
    }


async def test_a_screen_shared_before_a_takeover_is_unpublished_after_it(
    store: Store, store_target: StoreTarget, sfu: EmbeddedMedia, clients: list[Client]
) -> None:
    with _nodes(store_target, sfu, resume_s=60) as (node_a, node_b):
        await node_a.ready()
        await node_b.ready()
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
            await _stored_with_everyone_published(store, call_id, 3)
            ids = {p.person.handle: p.participant for p in carol.roster().values()}
            assert bob.session is not None and carol.session is not None
            await bob.session.share_screen()
            # The screen reaching carol is the point here, not how it flows: a loaded machine's
            # delay-based estimate may pause her video (11.15.3), so one decoded frame will do.
            try:
                await until(lambda: screen_frames(carol, ids["bob"]) >= 1, 2 * MEDIA_S, "screen")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {state(bob, carol)}") from None

            node_a.kill()  # the call's owner; bob and carol are on node B, which takes over
            assert host.task is not None
            host.task.cancel()  # alice's device lost its node (its media stays up)
            await until(
                lambda: not carol.roster()[ids["alice"]].connected, 3 * DETECTION_S,
                "carol sees alice reconnecting",
            )  # fmt: skip

            await bob.session.stop_sharing()
            await until(lambda: not carol.session.screens, 2 * MEDIA_S, "unpublished to carol")  # type: ignore[union-attr]
            assert carol.session.screens_seen[ids["bob"]] >= 1
        finally:
            for guest in (host, bob, carol):
                await guest.close()
                await guest.line.close()
