"""Synthetic media and the aiortc peer connection of a softphone.

The tracks generate a tone and a moving test pattern, small enough that two bots and a browser
fit on a two-core machine. Received media is counted, not played.
"""

from __future__ import annotations

import asyncio
import fractions
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp
from av import AudioFrame, VideoFrame

from signaling.protocol import messages as m
from signaling.sdk.shield import Dropped, guard_peer_connection

AUDIO_RATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms
VIDEO_SIZE = (320, 240)
VIDEO_FPS = 15

#: Makes the audio track a call sends: a new one per connection (the default: ``ToneTrack``).
#: Any aiortc audio track will do, e.g. ``lambda: MediaPlayer("greeting.wav").audio``.
AudioSource = Callable[[], MediaStreamTrack]


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pts = 0
        self._start: float | None = None
        samples = bytearray()
        for i in range(AUDIO_SAMPLES):
            value = int(3000 * math.sin(2 * math.pi * 440 * i / AUDIO_RATE))
            samples += value.to_bytes(2, "little", signed=True)
        self._payload = bytes(samples)

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / AUDIO_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(self._payload)
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._pts += AUDIO_SAMPLES
        return frame


class PatternTrack(MediaStreamTrack):
    """A small YUV test pattern whose brightness moves, so every frame differs."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._count = 0
        self._start: float | None = None
        width, height = VIDEO_SIZE
        self._chroma = bytes([128]) * (width * height // 4)

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._count / VIDEO_FPS - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        width, height = VIDEO_SIZE
        frame = VideoFrame(width=width, height=height, format="yuv420p")
        frame.planes[0].update(bytes([(self._count * 4) % 256]) * (width * height))
        frame.planes[1].update(self._chroma)
        frame.planes[2].update(self._chroma)
        frame.pts = self._count * (90_000 // VIDEO_FPS)
        frame.time_base = fractions.Fraction(1, 90_000)
        self._count += 1
        return frame


@dataclass
class Received:
    audio_packets_received: int = 0
    video_frames_received: int = 0
    #: time.monotonic() when the first frame (audio or video) was decoded.
    first_frame_at: float | None = None
    #: Told when no frame has come for ``gap_s`` after media flowed, and when frames come
    #: again: aiortc has no ICE ``disconnected`` state (its ICE fails only after 30 s without
    #: answers), and this stands in for it.
    on_gap: Callable[[], None] | None = None
    on_back: Callable[[], None] | None = None
    gap_s: float = 2.5
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _gap: asyncio.TimerHandle | None = None
    _gapped: bool = False

    def consume(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._drain(track)))

    async def _drain(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                if track.kind == "audio":
                    self.audio_packets_received += 1
                else:
                    self.video_frames_received += 1
                self._frame()
        except MediaStreamError:
            return

    def _frame(self) -> None:
        if self.on_gap is None:
            return
        if self._gapped:
            self._gapped = False
            if self.on_back is not None:
                self.on_back()
        if self._gap is not None:
            self._gap.cancel()
        self._gap = asyncio.get_running_loop().call_later(self.gap_s, self._no_frames)

    def _no_frames(self) -> None:
        self._gapped = True
        if self.on_gap is not None:
            self.on_gap()

    async def stop(self) -> None:
        if self._gap is not None:
            self._gap.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def is_loopback_url(url: str) -> bool:
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def peer_connection(
    ice_servers: list[m.IceServer],
    relay_only: bool,
    dropped: Dropped | None = None,
    bundle: bool = False,
) -> RTCPeerConnection:
    """A connection whose sockets drop (and count in ``dropped``) datagrams that are not from
    its ICE pair, oversized or garbage, before aiortc's receive loop can choke on them.
    ``bundle``: max-bundle, so sections the SFU adds later share the one transport."""
    servers = [
        RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers
    ]
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    bundling = RTCBundlePolicy.MAX_BUNDLE if bundle else RTCBundlePolicy.BALANCED
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=servers, iceTransportPolicy=policy, bundlePolicy=bundling)
    )
    guard_peer_connection(pc, dropped if dropped is not None else Dropped())
    return pc


async def add_remote_candidate(pc: RTCPeerConnection, ice: m.PeerIce) -> None:
    if not ice.candidate.strip():
        return
    text = (
        ice.candidate.split(":", 1)[1] if ice.candidate.startswith("candidate:") else ice.candidate
    )
    candidate = candidate_from_sdp(text)
    candidate.sdpMid = ice.sdp_mid
    candidate.sdpMLineIndex = ice.sdp_mline_index
    if ice.sdp_mid is None and ice.sdp_mline_index is None:
        candidate.sdpMLineIndex = 0  # unlabelled: the first section, which bundles all media
    await pc.addIceCandidate(candidate)


def selected_pair(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """The types (host, srflx, prflx, relay) of the local and remote candidate ICE chose for
    media, or None before it chose. aiortc does not expose the pair: this reads aioice's
    nominated pair (both pinned, see pyproject.toml)."""
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        pair = ice._connection._nominated.get(1)
        if pair is not None:
            return pair.local_candidate.type, pair.remote_candidate.type
    return None


async def packets_sent(pc: RTCPeerConnection) -> int:
    report = await pc.getStats()
    return sum(getattr(s, "packetsSent", 0) for s in report.values() if s.type == "outbound-rtp")


#: Clock rate of the RTP timestamps aiortc measures jitter in (Opus audio).
_AUDIO_CLOCK_HZ = 48_000


async def quality_sample(
    pc: RTCPeerConnection, bytes_before: int, interval_s: float
) -> tuple[dict[str, float], int]:
    """RTT, jitter, loss and bitrate from the connection's stats, for a ``quality`` report;
    returns the fields and the bytes sent so far (for the next bitrate)."""
    report = await pc.getStats()
    rtt = jitter = 0.0
    received = lost = sent_bytes = 0
    for stats in report.values():
        if stats.type == "remote-inbound-rtp" and getattr(stats, "roundTripTime", None):
            rtt = max(rtt, float(stats.roundTripTime) * 1000)
        elif stats.type == "inbound-rtp":
            received += getattr(stats, "packetsReceived", 0) or 0
            lost += max(0, getattr(stats, "packetsLost", 0) or 0)
            if stats.kind == "audio":
                jitter = max(jitter, (getattr(stats, "jitter", 0) or 0) * 1000 / _AUDIO_CLOCK_HZ)
        elif stats.type == "outbound-rtp":
            sent_bytes += getattr(stats, "bytesSent", 0) or 0
    kbps = max(0, sent_bytes - bytes_before) * 8 / 1000 / max(interval_s, 0.001)
    fields = {
        "rtt_ms": min(rtt, 60_000.0),
        "jitter_ms": min(jitter, 60_000.0),
        "loss": lost / (received + lost) if received + lost else 0.0,
        "bitrate_kbps": min(kbps, 100_000.0),
    }
    return fields, sent_bytes
