"""Hostile datagrams mid-call: a real three-party call through the SFU process keeps flowing.

Every datagram of the corpus (tests/data/fuzz/datagrams/) goes to every UDP port of the SFU,
from a stranger's socket and from each participant's own socket (as a spoofed or on-path
sender would), and every participant must keep receiving both others' audio and video.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from aioice.ice import CandidatePair
from aiortc import RTCPeerConnection

from media.control import MediaControl
from media.shield import dtls_transports
from tests.hostile_datagrams import corpus
from tests.test_group_calls import _udp_ports_of
from tests.test_sfu_support import Peer, SfuProcess, sfu_process, until

pytestmark = pytest.mark.slow

NAMES = ["ann", "bob", "cy"]


@pytest.fixture
async def sfu() -> AsyncIterator[SfuProcess]:
    async with sfu_process() as running:
        yield running


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
            assert len(ports) >= 9  # at least one per leg: 3 uplinks + 6 downlinks

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
