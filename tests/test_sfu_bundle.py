"""One connection per participant (protocol 11.15): the SFU in its own process, driven through
MediaControl as signaling drives it, with real aiortc peers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from media.control import MediaControl, MediaControlError
from tests.test_sfu_support import BundlePeer, Peer, SfuProcess, sfu_process, until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def sfu() -> AsyncIterator[SfuProcess]:
    async with sfu_process() as running:
        yield running


@pytest.fixture
async def control(sfu: SfuProcess) -> AsyncIterator[MediaControl]:
    async with MediaControl(sfu.url, sfu.secret) as client:
        yield client


async def _bundled_room(control: MediaControl, names: list[str]) -> tuple[str, list[BundlePeer]]:
    room = f"room-{os.urandom(4).hex()}"
    await control.create_room(room)
    peers = [BundlePeer(name, control, room) for name in names]
    for peer in peers:
        await peer.publish()
    for peer in peers:
        for other in peers:
            if other is not peer:
                await control.subscribe(room, peer.name, other.name)
    for peer in peers:
        await peer.sync()
    return room, peers


def _decodes(peer: BundlePeer | Peer, publisher: str, audio: int = 10, video: int = 5) -> bool:
    got_audio, got_video = peer.decoded(publisher)
    return got_audio >= audio and got_video >= video


async def test_three_bundled_peers_decode_each_other_on_one_connection_each(
    control: MediaControl,
) -> None:
    room, peers = await _bundled_room(control, ["a", "b", "c"])
    try:
        for peer in peers:
            for other in peers:
                if other is not peer:
                    await until(
                        lambda p=peer, o=other: _decodes(p, o.name),  # type: ignore[misc]
                        30,
                        f"{peer.name} decodes {other.name}",
                    )
            # the SFU's streams name both others' audio and video, each on its own mid
            assert sorted(v for v in peer.streams.values()) == sorted(
                (o.name, "camera", kind)
                for o in peers
                if o is not peer
                for kind in ("audio", "video")
            )
        stats = await control.room_stats(room)
        for entry in stats["participants"]:
            assert entry["peer_connections"] == 1, entry
            assert entry["dtls_sessions"] == 1, entry
        # Receiver reports on the shared transport reach each subscription's handler (loss,
        # by our sending SSRC) and aiortc's senders (RTT from our sender reports' LSR).
        reported: list[dict[str, object]] = []

        async def reports() -> bool:
            reported[:] = (await control.room_stats(room))["participants"]
            return all("loss" in p and "rtt_ms" in p for p in reported)

        for _ in range(300):
            if await reports():
                break
            await asyncio.sleep(0.1)
        assert all("loss" in p and "rtt_ms" in p for p in reported), reported
        assert (await control.room_stats(room))["keyframe_requests_received"] >= 6
        assert (await control.stats())["bundles"] >= 3
    finally:
        for peer in peers:
            await peer.close()
        await control.delete_room(room)


async def test_a_leave_renegotiates_its_sections_away_and_the_rest_go_on(
    control: MediaControl,
) -> None:
    room, peers = await _bundled_room(control, ["a", "b", "c"])
    a, b, c = peers
    try:
        await until(lambda: _decodes(a, "c") and _decodes(a, "b"), 30, "a decodes b and c")
        await control.leave(room, "b")
        await b.close()
        before = a.revisions[-1]
        await a.sync()
        assert a.revisions[-1] == before + 1
        assert {p for p, _, _ in a.streams.values()} == {"c"}
        _, video = a.decoded("c")
        await until(lambda: a.decoded("c")[1] > video + 10, 30, "a keeps decoding c")
        # someone new: a gets a new offer adding d, on the same connection
        d = BundlePeer("d", control, room)
        await d.publish()
        await control.subscribe(room, "a", "d")
        await control.subscribe(room, "d", "a")
        await a.sync()
        await d.sync()
        await until(lambda: _decodes(a, "d") and _decodes(d, "a"), 30, "a and d decode each other")
        await d.close()
    finally:
        for peer in (a, c):
            await peer.close()
        await control.delete_room(room)


async def test_an_answer_for_another_revision_is_a_stale_offer(control: MediaControl) -> None:
    room, peers = await _bundled_room(control, ["a", "b"])
    a = peers[0]
    try:
        c = BundlePeer("c", control, room)
        await c.publish()
        await control.subscribe(room, "a", "c")
        offer = await control.offer(room, "a")
        assert offer is not None
        assert await control.offer(room, "a") == offer  # outstanding: the same again
        with pytest.raises(MediaControlError) as refused:
            await control.answer_offer(room, "a", offer.revision - 1, "v=0\r\n")
        assert refused.value.code == "stale_offer"
        await a.sync()  # answering the outstanding one works
        assert await control.offer(room, "a") is None
        await c.close()
    finally:
        for peer in peers:
            await peer.close()
        await control.delete_room(room)


async def test_a_mixed_room_old_mode_and_bundled_peers_decode_each_other(
    control: MediaControl,
) -> None:
    room = f"room-{os.urandom(4).hex()}"
    await control.create_room(room)
    old = Peer("old", control, room)
    new = BundlePeer("new", control, room)
    await old.publish()
    await new.publish()
    try:
        await old.subscribe("new")
        subscription, offer = await control.subscribe(room, "new", "old")
        assert offer is None and subscription
        await new.sync()
        await until(lambda: _decodes(old, "new") and _decodes(new, "old"), 30, "both decode")
        stats = {p["participant"]: p for p in (await control.room_stats(room))["participants"]}
        assert stats["new"]["peer_connections"] == 1
        assert stats["old"]["peer_connections"] == 2
    finally:
        await old.close()
        await new.close()
        await control.delete_room(room)


async def test_a_shared_screen_arrives_on_the_bundled_connection(control: MediaControl) -> None:
    room, peers = await _bundled_room(control, ["a", "b"])
    a = peers[0]
    sharer = Peer("s", control, room)
    try:
        await sharer.publish()
        await sharer.share_screen()
        await control.subscribe(room, "a", "s", "screen")
        await a.sync()
        assert ("s", "screen", "video") in a.streams.values()
        await until(lambda: a.decoded("s", "screen")[1] >= 5, 30, "a decodes s's screen")
        await sharer.stop_sharing()
        await a.sync()
        assert ("s", "screen", "video") not in a.streams.values()
    finally:
        await sharer.close()
        for peer in peers:
            await peer.close()
        await control.delete_room(room)
