"""What a decoder makes of frames: pictures from VP8, and whether Opus audio still carries the
bots' tone (ToneTrack repeats one 20 ms buffer, so real audio correlates with itself 960
samples later; decoded ciphertext is noise and does not)."""

from __future__ import annotations

import array
import math

import av
from aiortc.codecs.opus import OpusDecoder
from aiortc.codecs.vpx import Vp8Decoder
from aiortc.jitterbuffer import JitterFrame

from signaling.sdk.media import AUDIO_SAMPLES


def vp8_pictures(frames: list[bytes]) -> int:
    decoder, pictures = Vp8Decoder(), 0
    for index, data in enumerate(frames):
        try:
            pictures += len(decoder.decode(JitterFrame(data, index * 6000)))
        except av.FFmpegError:
            continue
    return pictures


def opus_periodicity(packets: list[bytes]) -> float:
    """Correlation of the decoded audio with itself one tone buffer later: ~1 for the tone."""
    decoder, samples = OpusDecoder(), array.array("h")
    for index, data in enumerate(packets):
        try:
            frames = decoder.decode(JitterFrame(data, index * AUDIO_SAMPLES))
        except av.FFmpegError:
            continue
        for frame in frames:
            samples.frombytes(bytes(frame.planes[0])[: frame.samples * 4])  # s16 stereo
    mono = samples[::2]
    head, tail = mono[:-AUDIO_SAMPLES], mono[AUDIO_SAMPLES:]
    energy = math.sqrt(sum(x * x for x in head) * sum(y * y for y in tail))
    return sum(x * y for x, y in zip(head, tail, strict=True)) / energy if energy else 0.0
