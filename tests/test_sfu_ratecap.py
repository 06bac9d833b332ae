"""Per-publisher rate caps: the token bucket and the forwarding core, stepped with a fake clock."""

from __future__ import annotations

import pytest

from media.forwarding import Forwarder, Kind
from media.ratecap import BURST_S, RateCaps, TokenBucket
from tests.test_sfu_forwarding import A_AUDIO, A_VIDEO, KEY, legs
from tests.test_sfu_rtp import rtp


@pytest.mark.parametrize(
    ("kbps", "packets", "passed"),
    [
        # 8 kbit/s = 1,000 B/s, burst max(500, 1,500) = 1,500 B
        (8, [(1500, 0.0), (1, 0.0)], [True, False]),  # a full bucket, then empty
        (8, [(1000, 0.0), (500, 0.0), (500, 0.4), (500, 0.5)], [True, True, False, True]),
        (8, [(1500, 0.0), (1500, 10.0), (1500, 10.0)], [True, True, False]),  # refill caps
        (8, [(1500, 5.0), (1000, 4.0)], [True, False]),  # the clock stepping back adds nothing
        (8, [(1501, 0.0)], [False]),  # larger than the whole burst: never
        # 512 kbit/s = 64,000 B/s, burst 32,000 B: 26 full packets at once, not 27
        (512, [(1200, 0.0)] * 27, [True] * 26 + [False]),
    ],
)
def test_token_bucket(kbps: int, packets: list[tuple[int, float]], passed: list[bool]) -> None:
    bucket = TokenBucket(kbps)
    assert [bucket.take(size, now) for size, now in packets] == passed


def flooded(kind: Kind, send_kbps: int, caps: RateCaps, seconds: float = 2.0) -> Forwarder:
    """Publisher a sends ``send_kbps`` of 1,000-byte packets of ``kind`` to subscriber c."""
    f = Forwarder(caps=caps)
    f.create_room("r")
    f.add_participant("r", "a")
    f.add_participant("r", "c")
    f.publish("r", "a", Kind.AUDIO, A_AUDIO, 111)
    f.publish("r", "a", Kind.VIDEO, A_VIDEO, 96)
    f.subscribe("r", "c", "a", "c<-a", legs(0xC0))
    f.activate("c<-a", 0.0)
    ssrc, pt = (A_AUDIO, 111) if kind is Kind.AUDIO else (A_VIDEO, 96)
    payload = KEY + bytes(1000 - 12 - len(KEY))
    per_s = send_kbps * 125 // 1000
    for i in range(int(per_s * seconds)):
        f.handle_rtp("r", "a", rtp(ssrc=ssrc, pt=pt, seq=i & 0xFFFF, payload=payload), i / per_s)
    return f


@pytest.mark.parametrize(
    ("kind", "send_kbps", "limited"),
    [
        (Kind.AUDIO, 64, False),  # ordinary Opus
        (Kind.AUDIO, 500, False),  # Opus at its maximum
        (Kind.AUDIO, 25_000, True),  # the attack: 25 Mbit/s of "audio"
        (Kind.VIDEO, 2_500, False),  # a camera
        (Kind.VIDEO, 25_000, True),
    ],
)
def test_each_publisher_track_is_capped_by_kind(kind: Kind, send_kbps: int, limited: bool) -> None:
    caps = RateCaps()
    seconds = 2.0
    f = flooded(kind, send_kbps, caps, seconds)
    cap = caps.audio_kbps if kind is Kind.AUDIO else caps.video_kbps
    forwarded = f.counters.forwarded_bytes
    assert forwarded <= cap * 125 * (seconds + BURST_S)
    dropped = f.counters.dropped["rate_limited"]
    assert (dropped > 0) is limited
    assert f.rooms["r"].counters.dropped["rate_limited"] == dropped
    if limited:  # what passes is the cap, not a trickle
        assert forwarded >= cap * 125 * seconds * 0.9


def test_audio_cap_is_far_below_video_and_configurable() -> None:
    assert RateCaps().audio_kbps * 10 <= RateCaps().video_kbps
    f = flooded(Kind.AUDIO, 500, RateCaps(audio_kbps=64, video_kbps=1000))
    assert f.counters.dropped["rate_limited"] > 0
