"""The SFU in its own process, driven through MediaControl, with real aiortc peers."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import AsyncIterator

import pytest

from media.control import MediaControl
from tests.test_sfu_support import Peer, SfuProcess, sfu_process, until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def sfu() -> AsyncIterator[SfuProcess]:
    async with sfu_process() as running:
        yield running


@pytest.fixture
async def control(sfu: SfuProcess) -> AsyncIterator[MediaControl]:
    async with MediaControl(sfu.url, sfu.secret) as client:
        yield client


async def _room(control: MediaControl, names: list[str]) -> tuple[str, list[Peer]]:
    room = f"room-{os.urandom(4).hex()}"
    await control.create_room(room)
    peers = [Peer(name, control, room) for name in names]
    for peer in peers:
        await peer.publish()
    return room, peers


async def _close(control: MediaControl, room: str, peers: list[Peer]) -> None:
    for peer in peers:
        await peer.close()
    await control.delete_room(room)


def _decodes(peer: Peer, publisher: str, audio: int = 10, video: int = 5) -> bool:
    got_audio, got_video = peer.decoded(publisher)
    return got_audio >= audio and got_video >= video


async def test_three_peers_each_decode_both_others(control: MediaControl) -> None:
    names = ["ann", "bob", "cy"]
    room, peers = await _room(control, names)
    try:
        for peer in peers:
            for other in names:
                if other != peer.name:
                    await peer.subscribe(other)
        for peer in peers:
            for other in names:
                if other != peer.name:
                    await until(
                        lambda p=peer, o=other: _decodes(p, o), what=f"{peer.name}<-{other}"
                    )
        stats = await control.room_stats(room)
        assert {p["participant"] for p in stats["participants"]} == set(names)
        for entry in stats["participants"]:
            assert entry["publishing"] == {"audio": True, "video": True, "screen": False}
            assert entry["packets_in"] > 0
        assert stats["forwarded_packets"] > 0 and stats["keyframe_requests"] >= 3
        assert stats["subscriptions"] == 6
        speaker: list[str | None] = [None]

        async def poll_speaker() -> None:
            speaker[0] = (await control.room_stats(room))["active_speaker"]

        deadline = time.monotonic() + 10
        while speaker[0] is None and time.monotonic() < deadline:
            await poll_speaker()
            await asyncio.sleep(0.1)
        assert speaker[0] in names
        node = await control.stats()
        assert node["forwarded_packets"] > 0 and node["rooms"] >= 1
    finally:
        await _close(control, room, peers)


async def test_leave_and_rejoin(control: MediaControl) -> None:
    room, peers = await _room(control, ["dee", "eve"])
    dee, eve = peers
    try:
        await eve.subscribe("dee")
        await until(lambda: _decodes(eve, "dee"), what="eve<-dee")
        await control.leave(room, "dee")
        stats = await control.room_stats(room)
        assert [p["participant"] for p in stats["participants"]] == ["eve"]
        assert stats["subscriptions"] == 0
        await eve.drop_downlink("dee")
        await dee.close()

        await dee.publish()
        await eve.subscribe("dee")
        await until(lambda: _decodes(eve, "dee"), what="eve<-dee after rejoin")
        await dee.subscribe("eve")
        await until(lambda: _decodes(dee, "eve"), what="dee<-eve after rejoin")
    finally:
        await _close(control, room, peers)


async def test_late_joiner_decodes_video_quickly(control: MediaControl) -> None:
    room, peers = await _room(control, ["fay", "gus"])
    _fay, gus = peers
    try:
        await gus.subscribe("fay")
        await until(lambda: _decodes(gus, "fay", video=20), what="gus<-fay")
        before = (await control.room_stats(room))["keyframe_requests"]
        late = Peer("hal", control, room)
        peers.append(late)
        await late.publish()
        down = await late.subscribe("fay")
        await until(lambda: down.received.video_frames_received > 0, what="first frame")
        assert down.connected_at is not None
        elapsed = time.monotonic() - down.connected_at
        print(f"late joiner: first decoded video frame {elapsed:.3f} s after connecting")
        # aiortc's encoder sends a keyframe unprompted only every ~100 s: the PLI did this.
        assert elapsed < 1.0
        assert (await control.room_stats(room))["keyframe_requests"] > before
    finally:
        await _close(control, room, peers)


def _ice_port(sdp: str) -> int:
    match = re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", sdp)
    assert match, sdp
    return int(match.group(1))


async def test_udp_junk_at_the_ice_port_is_dropped_and_counted(control: MediaControl) -> None:
    room, peers = await _room(control, ["ida", "jon"])
    _ida, jon = peers
    try:
        down = await jon.subscribe("ida")
        await until(lambda: _decodes(jon, "ida"), what="jon<-ida")
        assert down.pc.remoteDescription is not None
        port = _ice_port(down.pc.remoteDescription.sdp)
        junk = [
            b"",
            b"\x00",
            b"\xff" * 1200,
            os.urandom(300),
            b"\x80\x60" + os.urandom(100),  # RTP-shaped: fails SRTP authentication
            b"\x16\xfe\xfd" + os.urandom(60),  # DTLS-shaped garbage
            b"\x00\x01\x00\x00" + os.urandom(16),  # STUN-shaped, no integrity
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(20):
                for datagram in junk:
                    sock.sendto(datagram, ("127.0.0.1", port))
        before = jon.decoded("ida")[1]
        await until(lambda: jon.decoded("ida")[1] > before + 10, what="media flowing after junk")
        node = await control.stats()
        assert node["dropped"]["not_media"] > 0
        assert (await control.room_stats(room))["forwarded_packets"] > 0
    finally:
        await _close(control, room, peers)


async def test_a_shared_screen_is_a_second_video_track_forwarded_beside_the_camera(
    control: MediaControl,
) -> None:
    room, peers = await _room(control, ["sam", "tim"])
    sam, tim = peers
    try:
        await tim.subscribe("sam")
        await until(lambda: _decodes(tim, "sam"), what="tim<-sam camera")
        await sam.share_screen()
        screen = await tim.subscribe("sam", "screen")
        await until(lambda: screen.received.video_frames_received >= 5, what="tim<-sam screen")
        camera_before = tim.decoded("sam")
        await until(lambda: _decodes(tim, "sam", *(n + 5 for n in camera_before)), what="camera")
        stats = await control.room_stats(room)
        entry = next(p for p in stats["participants"] if p["participant"] == "sam")
        assert entry["publishing"] == {"audio": True, "video": True, "screen": True}
        assert stats["subscriptions"] == 2

        await sam.stop_sharing()
        stats = await control.room_stats(room)
        entry = next(p for p in stats["participants"] if p["participant"] == "sam")
        assert entry["publishing"]["screen"] is False and stats["subscriptions"] == 1
        camera_after = tim.decoded("sam")
        await until(lambda: _decodes(tim, "sam", *(n + 5 for n in camera_after)), what="camera")
    finally:
        await _close(control, room, peers)


async def test_a_screen_closed_by_its_sharer_before_unpublish_is_no_media_failure(
    control: MediaControl,
) -> None:
    room, peers = await _room(control, ["uma", "vic"])
    uma, vic = peers
    try:
        await uma.share_screen()
        screen = await vic.subscribe("uma", "screen")
        await until(lambda: screen.received.video_frames_received >= 3, what="vic<-uma screen")
        assert uma.screen is not None
        await uma.screen.close()  # the browser closes first; its unpublish comes later

        async def unshared() -> bool:
            stats = await control.room_stats(room)
            entry = next(p for p in stats["participants"] if p["participant"] == "uma")
            return not entry["publishing"]["screen"] and stats["subscriptions"] == 0

        deadline = time.monotonic() + 15
        while not await unshared():
            assert time.monotonic() < deadline, "the screen was not unpublished"
            await asyncio.sleep(0.1)
        stats = await control.room_stats(room)
        assert not any(p["media_failed"] for p in stats["participants"]), stats
        await control.unpublish_screen(room, "uma")  # the late unpublish changes nothing
    finally:
        await _close(control, room, peers)
