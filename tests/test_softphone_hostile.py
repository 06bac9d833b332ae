"""The softphone's receive path (SDK, CLI bots) under hostile datagrams: a 1:1 call between two
of its connections keeps carrying audio and video both ways, and the drops are counted."""

from __future__ import annotations

import re
import socket

import pytest
from aiortc import RTCPeerConnection

from media.server import allow_loopback_ice
from media.shield import Dropped
from signaling.sdk.media import PatternTrack, Received, ToneTrack, peer_connection
from tests.hostile_datagrams import corpus
from tests.test_sfu_hostile import selected_pairs
from tests.test_sfu_support import until

pytestmark = pytest.mark.slow

_CANDIDATE = re.compile(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ")


def candidate_addresses(pc: RTCPeerConnection) -> set[tuple[str, int]]:
    found = _CANDIDATE.findall(pc.localDescription.sdp)
    return {(host, int(port)) for host, port in found if ":" not in host}  # IPv4 only


def enough(received: Received, audio: int, video: int) -> bool:
    return received.audio_packets_received >= audio and received.video_frames_received >= video


async def test_hostile_datagrams_do_not_stop_a_softphone_call() -> None:
    allow_loopback_ice()
    dropped = {"caller": Dropped(), "callee": Dropped()}
    caller = peer_connection([], relay_only=False, dropped=dropped["caller"])
    callee = peer_connection([], relay_only=False, dropped=dropped["callee"])
    received = {"caller": Received(), "callee": Received()}
    try:
        for name, pc in (("caller", caller), ("callee", callee)):
            pc.on("track", received[name].consume)
            pc.addTrack(ToneTrack())
            pc.addTrack(PatternTrack())
        await caller.setLocalDescription(await caller.createOffer())
        await callee.setRemoteDescription(caller.localDescription)
        await callee.setLocalDescription(await callee.createAnswer())
        await caller.setRemoteDescription(callee.localDescription)
        await until(lambda: all(enough(r, 25, 5) for r in received.values()), what="media before")

        datagrams = corpus()
        addresses = candidate_addresses(caller) | candidate_addresses(callee)
        assert len(addresses) >= 2
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            for _name, data in datagrams:
                for address in addresses:
                    stranger.sendto(data, address)
        for pc in (caller, callee):
            pairs = list(selected_pairs(pc))
            assert pairs
            for pair in pairs:
                for _name, data in datagrams:
                    pair.protocol.transport.sendto(data, pair.remote_addr)

        before = {
            name: (r.audio_packets_received, r.video_frames_received)
            for name, r in received.items()
        }
        await until(
            lambda: all(
                enough(r, before[name][0] + 25, before[name][1] + 5) for name, r in received.items()
            ),
            limit_s=20,
            what="media after",
        )
        for name, counts in dropped.items():
            for reason in ("foreign_source", "oversized", "srtp_auth", "not_media"):
                assert getattr(counts, reason) > 0, (name, reason, counts)
        assert caller.connectionState == callee.connectionState == "connected"
    finally:
        for r in received.values():
            await r.stop()
        await caller.close()
        await callee.close()
