"""Hostile datagrams mid-call: a real three-party call through the SFU process keeps flowing.

Every datagram of the corpus (tests/data/fuzz/datagrams/) goes to the SFU's one UDP port,
from a stranger's socket and from each participant's own socket (as a spoofed or on-path
sender would), and every participant must keep receiving both others' audio and video.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aioice.ice import CandidatePair
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from media.control import MediaControl
from media.forwarding import Kind
from media.peer import PlaceholderTrack
from media.ratecap import BURST_S
from media.shield import dtls_transports
from tests.hostile_datagrams import corpus
from tests.test_group_calls import _udp_ports_of
from tests.test_sfu_support import Peer, SfuProcess, new_pc, sfu_process, until

pytestmark = pytest.mark.slow

NAMES = ["ann", "bob", "cy"]


@pytest.fixture
async def sfu() -> AsyncIterator[SfuProcess]:
    # One worker process: the room's datagrams arrive where the rooms of a node with workers
    # run, and that worker's one UDP port is the node's only one.
    async with sfu_process("--workers", "1") as running:
        yield running


async def poll(
    fetch: Callable[[], Awaitable[dict[str, Any]]],
    ok: Callable[[dict[str, Any]], bool],
    what: str,
    limit_s: float = 20.0,
) -> dict[str, Any]:
    """Fetch until ``ok`` holds (no fixed sleeps); fail with ``what`` at the deadline."""
    deadline = time.monotonic() + limit_s
    while not ok(found := await fetch()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {found}")
        await asyncio.sleep(0.05)
    return found


def selected_pairs(pc: RTCPeerConnection) -> Iterator[CandidatePair]:
    for dtls in dtls_transports(pc):
        pair = dtls.transport._connection._nominated.get(1)
        if pair is not None:
            yield pair


def connections(peer: Peer) -> list[RTCPeerConnection]:
    assert peer.uplink is not None
    return [peer.uplink, *(down.pc for down in peer.downlinks.values())]


def snapshot(peers: list[Peer]) -> dict[tuple[str, str], tuple[int, int]]:
    return {(p.name, o): p.decoded(o) for p in peers for o in NAMES if o != p.name}


def flowing_since(peers: list[Peer], before: dict[tuple[str, str], tuple[int, int]]) -> bool:
    for (name, other), (audio, video) in before.items():
        peer = next(p for p in peers if p.name == name)
        now_audio, now_video = peer.decoded(other)
        if now_audio < audio + 25 or now_video < video + 5:
            return False
    return True


async def test_hostile_datagrams_to_every_sfu_port_do_not_stop_a_group_call(
    sfu: SfuProcess,
) -> None:
    datagrams = corpus()
    assert len(datagrams) >= 30
    async with MediaControl(sfu.url, sfu.secret) as control:
        room = f"room-{os.urandom(4).hex()}"
        await control.create_room(room)
        peers = [Peer(name, control, room) for name in NAMES]
        try:
            for peer in peers:
                await peer.publish()
            for peer in peers:
                for other in NAMES:
                    if other != peer.name:
                        await peer.subscribe(other)
            zero = {key: (0, 0) for key in snapshot(peers)}
            await until(lambda: flowing_since(peers, zero), what="media before")
            ports = _udp_ports_of(sfu.pid)
            assert len(ports) == 1  # 3 uplinks + 6 downlinks, all on the node's one UDP port

            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                stranger.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                for _name, data in datagrams:
                    for port in ports:
                        stranger.sendto(data, ("127.0.0.1", port))
            spoofed = 0
            for peer in peers:
                for pc in connections(peer):
                    for pair in selected_pairs(pc):
                        for _name, data in datagrams:
                            pair.protocol.transport.sendto(data, pair.remote_addr)
                            spoofed += 1
            assert spoofed >= 9 * len(datagrams)

            before = snapshot(peers)
            await until(lambda: flowing_since(peers, before), limit_s=20, what="media after")
            node = await control.stats()
            dropped = node["dropped"]
            for reason in ("foreign_source", "oversized", "srtp_auth", "not_media"):
                assert dropped[reason] > 0, (reason, dropped)
            assert node["legs_failed"] == 0
            stats = await control.room_stats(room)
            assert not any(p["media_failed"] for p in stats["participants"])
        finally:
            for peer in peers:
                await peer.close()
            await control.delete_room(room)


async def test_a_publisher_flooding_audio_is_capped_and_counted(sfu: SfuProcess) -> None:
    """An admitted participant sends 25 Mbit/s of "audio" for a second (forged RTP on its own
    authenticated leg): the SFU forwards at most the audio cap of it, and counts the rest."""
    async with MediaControl(sfu.url, sfu.secret) as control:
        room = f"room-{os.urandom(4).hex()}"
        await control.create_room(room)
        flooder = new_pc()
        # A track that never yields: every audio packet on this SSRC is ours, in sequence.
        transceiver = flooder.addTransceiver(PlaceholderTrack(Kind.AUDIO), direction="sendonly")
        await flooder.setLocalDescription(await flooder.createOffer())
        answer = await control.join(room, "mal", flooder.localDescription.sdp)
        await flooder.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        subscribers = [Peer(name, control, room) for name in ("ann", "bob")]
        try:
            for peer in subscribers:
                await peer.publish()
                await peer.subscribe("mal")
            await until(
                lambda: (
                    flooder.connectionState == "connected"
                    and all(p.downlinks["mal"].connected_at for p in subscribers)
                ),
                what="legs up",
            )
            ssrc = transceiver.sender._ssrc
            payload_type = SessionDescription.parse(answer).media[0].rtp.codecs[0].payloadType
            dtls = transceiver.sender.transport
            before = await control.room_stats(room)
            loop = asyncio.get_running_loop()
            start = loop.time()
            sequence = 0
            # 25 Mbit/s: 26 packets of 1,200 bytes every 10 ms, for one second.
            for batch in range(100):
                for _ in range(26):
                    packet = struct.pack("!BBHII", 0x80, payload_type, sequence, sequence * 960,
                                         ssrc) + bytes(1188)  # fmt: skip
                    await dtls._send_rtp(packet)
                    sequence += 1
                await asyncio.sleep(max(0.0, start + (batch + 1) / 100 - loop.time()))

            def delta(stats: dict[str, Any], key: str) -> int:
                return int(stats[key]) - int(before[key])

            stats = await poll(
                lambda: control.room_stats(room),
                lambda s: delta(s, "received_packets") >= sequence // 2,
                what="the flood at the SFU",
            )
            window = loop.time() - start  # the SFU cannot have forwarded outside it
            rate, burst = 512 * 125, 512 * 125 * BURST_S  # the default audio cap, in bytes
            assert delta(stats, "forwarded_bytes") <= 2 * (burst + rate * window), stats
            assert stats["dropped"]["rate_limited"] > sequence // 4, stats

            # Back at an ordinary rate, the same publisher is forwarded again.
            forwarded = stats["forwarded_packets"]
            for _ in range(50):
                packet = struct.pack("!BBHII", 0x80, payload_type, sequence, sequence * 960,
                                     ssrc) + bytes(100)  # fmt: skip
                await dtls._send_rtp(packet)
                sequence += 1
                await asyncio.sleep(0.02)
            await poll(
                lambda: control.room_stats(room),
                lambda s: s["forwarded_packets"] >= forwarded + 2 * 40,
                what="forwarding after the flood",
            )
        finally:
            for peer in subscribers:
                await peer.close()
            await flooder.close()
            await control.delete_room(room)
