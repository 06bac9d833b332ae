"""Per-publisher rate caps: a token bucket per published track, time passed in (pure).

An admitted participant could otherwise send 25 Mbit/s of "audio" and have it copied to every
subscriber. Each publication gets a bucket for its kind; a packet that does not fit is dropped
(and counted by the forwarder), not queued. Sizes are whole RTP packets (header included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Opus tops out at 510 kbit/s; a browser's VP8 camera at a few Mbit/s.
DEFAULT_AUDIO_KBPS = 512
DEFAULT_VIDEO_KBPS = 8_000
#: A bucket holds this much of its rate: a VP8 keyframe arrives as one burst of packets.
BURST_S = 0.5


@dataclass(frozen=True, slots=True)
class RateCaps:
    """Caps per kind, in kbit/s (1 kbit = 1,000 bits)."""

    audio_kbps: int = DEFAULT_AUDIO_KBPS
    video_kbps: int = DEFAULT_VIDEO_KBPS


class TokenBucket:
    """Bytes per second with a burst; ``take`` answers whether a packet may pass now."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, kbps: int, burst_s: float = BURST_S) -> None:
        self._rate = kbps * 125.0  # bytes per second
        self._burst = max(self._rate * burst_s, 1500.0)  # always room for one full packet
        self._tokens = self._burst
        self._at = -math.inf

    def take(self, size: int, now: float) -> bool:
        tokens = self._tokens
        if now > self._at:  # a clock that steps back refills nothing
            tokens += (now - self._at) * self._rate
            if tokens > self._burst:
                tokens = self._burst
            self._at = now
        if tokens < size:
            self._tokens = tokens
            return False
        self._tokens = tokens - size
        return True
