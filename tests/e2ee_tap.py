"""What the SFU saw, from the test-only tap of tests/sfu_tap.py: the frames each publisher sent
(VP8 frames put back together from their RTP packets, Opus packets as they are), and what a
decoder makes of VP8 frames."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import av
from aiortc.codecs.vpx import Vp8Decoder, VpxPayloadDescriptor
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from tests import sfu_tap


@dataclass
class Sent:
    """One publisher's media as the SFU received it."""

    video: list[bytes] = field(default_factory=list)  # whole VP8 frames, in order
    layers: list[list[bytes]] = field(default_factory=list)  # per simulcast layer, as ``video``
    audio: list[bytes] = field(default_factory=list)  # Opus payloads, in order


def _vp8_frames(packets: list[RtpPacket]) -> list[bytes]:
    by_time: dict[int, dict[int, RtpPacket]] = defaultdict(dict)
    for packet in packets:
        by_time[packet.timestamp][packet.sequence_number] = packet
    frames = []
    for timestamp in sorted(by_time, key=lambda t: min(by_time[t])):
        parts = [by_time[timestamp][seq] for seq in sorted(by_time[timestamp])]
        seqs = [p.sequence_number for p in parts]
        complete = parts[-1].marker and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        if not complete:
            continue  # a packet lost before the tap: leave the frame out
        data = b""
        for index, packet in enumerate(parts):
            try:
                descriptor, rest = VpxPayloadDescriptor.parse(packet.payload)
            except ValueError:
                # A descriptor cut short (seen once from Chromium: `80 e0 df 5f 66`, no T/K
                # byte): the SFU reads what is there and a receiver drops it; so does this.
                break
            if index == 0 and not descriptor.partition_start:
                break
            data += rest
        else:
            frames.append(data)
    return frames


def read(path: Path) -> dict[str, Sent]:
    """participant → what it sent, from the tap's file (streams the SFU knows of only)."""
    video: dict[str, dict[int, list[RtpPacket]]] = defaultdict(lambda: defaultdict(list))
    sent: dict[str, Sent] = defaultdict(Sent)
    for record in sfu_tap.read(path):
        packet = RtpPacket.parse(record.packet)
        if record.kind == "v":
            video[record.publisher][packet.ssrc].append(packet)
        elif record.kind == "a" and packet.payload:
            sent[record.publisher].audio.append(packet.payload)
    for participant, streams in video.items():
        # A simulcast publisher sends one stream per layer (docs/protocol.md 11.15.3), each
        # its own sequence of frames: ``video`` is the one it sent most of (the full layer).
        packets = max(streams.values(), key=lambda s: sum(len(p.payload) for p in s))
        sent[participant].video = _vp8_frames([p for p in packets if p.payload])
        sent[participant].layers = [
            _vp8_frames([p for p in stream if p.payload]) for stream in streams.values()
        ]
    return dict(sent)


def vp8_pictures(frames: list[bytes]) -> list[bytes | None]:
    """What a VP8 decoder makes of each frame: the picture's luma plane, or None."""
    decoder, pictures = Vp8Decoder(), []
    for index, data in enumerate(frames):
        try:
            decoded = decoder.decode(JitterFrame(data, index * 3000))
        except av.FFmpegError:
            decoded = []
        pictures.append(bytes(decoded[-1].planes[0]) if decoded else None)  # type: ignore[attr-defined]
    return pictures


def difference(a: bytes, b: bytes, step: int = 31) -> float:
    """Mean absolute difference of two luma planes (0 the same picture, ~50+ unrelated)."""
    if len(a) != len(b):
        return 255.0
    samples = range(0, len(a), step)
    return sum(abs(a[i] - b[i]) for i in samples) / len(samples)
