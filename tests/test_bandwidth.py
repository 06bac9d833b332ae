"""Per-subscriber bandwidth estimates from REMB and receiver-report losses; REMB wire format."""

from __future__ import annotations

import pytest

from media.bandwidth import (
    CONGESTION_HOLD_S,
    FLOOR_BPS,
    LOSS_STALE_S,
    REMB_STALE_S,
    RISING_WITHIN_S,
    SubscriberEstimate,
    usable,
)
from media.rtp import MalformedPacket, Remb, build_remb, parse_rtcp


@pytest.mark.parametrize("bitrate", [0, 1, 262_143, 262_144, 300_000, 2_500_000, 10**9])
def test_remb_round_trip(bitrate: int) -> None:
    (item,) = parse_rtcp(build_remb(7, bitrate, [1, 2, 3]))
    assert isinstance(item, Remb)
    assert item.sender_ssrc == 7 and item.ssrcs == [1, 2, 3]
    assert bitrate * 0.999 <= item.bitrate_bps <= bitrate  # 18-bit mantissa, rounded down


def test_remb_inside_a_compound_packet_with_a_receiver_report() -> None:
    rr = bytes([0x80, 201, 0, 1]) + (5).to_bytes(4, "big")
    items = parse_rtcp(rr + build_remb(5, 123_456, [9]))
    assert isinstance(items[1], Remb) and items[1].bitrate_bps == 123_456


@pytest.mark.parametrize("cut", [16, 19, 23])
def test_truncated_remb_is_malformed(cut: int) -> None:
    packet = bytearray(build_remb(1, 500_000, [1, 2]))
    del packet[cut:]
    packet[2:4] = ((len(packet) + 3) // 4 - 1).to_bytes(2, "big")
    packet += b"\x00" * (-len(packet) % 4)
    with pytest.raises(MalformedPacket):
        parse_rtcp(bytes(packet))


def test_estimate_sums_rembs_about_separate_transports() -> None:
    est = SubscriberEstimate()
    assert est.value(0.0) is None
    est.remb([1, 2], 300_000, 0.0)  # one transport per publisher: streams 1, 2 ...
    est.remb([3, 4], 200_000, 1.0)  # ... and 3, 4
    assert est.value(1.0) == 500_000
    assert est.value(REMB_STALE_S + 0.5) == 200_000  # the first went quiet
    est.forget(3)
    assert est.value(1.0) == 300_000
    est.remb([1, 2], 0, 2.0)
    assert est.value(2.0) == FLOOR_BPS


def test_a_remb_about_streams_another_covered_replaces_it() -> None:
    est = SubscriberEstimate()
    est.remb([1, 2], 300_000, 0.0)  # one transport carrying two streams ...
    est.remb([1, 2, 5], 900_000, 1.0)  # ... now three: one estimate, not two
    assert est.value(1.0) == 900_000
    est.remb([5], 400_000, 2.0)
    assert est.value(2.0) == 400_000


def test_heavy_loss_caps_below_what_was_received_and_low_loss_lifts_the_cap() -> None:
    est = SubscriberEstimate()
    est.remb([7], 2_000_000, 0.0)
    est.loss(7, 0.30, receiving_bps=1_000_000)
    assert est.value(0.0) == pytest.approx(850_000)
    assert est.worst_loss() == 0.30
    # a stream that stopped reporting (a paused video) does not hold probing back for ever
    assert est.worst_loss(LOSS_STALE_S - 0.1) == 0.30 and est.worst_loss(LOSS_STALE_S + 0.1) == 0
    est.loss(7, 0.05, receiving_bps=800_000)  # between the thresholds: hold
    assert est.value(0.0) == pytest.approx(850_000)
    for _ in range(3):
        est.loss(7, 0.0, receiving_bps=800_000)
    assert est.value(0.0) == pytest.approx(850_000 * 1.08**3)
    for _ in range(20):
        est.loss(7, 0.0, receiving_bps=800_000)
    assert est.value(0.0) == 2_000_000  # the cap grew past REMB and is gone


@pytest.mark.parametrize(
    ("estimate", "sending", "congested", "rising", "expected"),
    [
        (None, 500_000, False, False, None),
        (800_000, 500_000, False, False, 800_000),  # room to spare: the estimate
        (480_000, 500_000, False, False, 500_000),  # about what it gets: keep that
        (300_000, 500_000, False, True, 500_000),  # lagging behind a step up, still rising
        (200_000, 500_000, False, True, 200_000),  # rising, but far too low to be a lag
        (300_000, 500_000, False, False, 300_000),  # stuck below what it is sent
        (480_000, 500_000, True, True, 480_000),  # it fell lately: as it is
        (100_000, 0, False, False, 100_000),  # nothing sent: as it is
    ],
)
def test_usable(
    estimate: float | None, sending: float, congested: bool, rising: bool, expected: float | None
) -> None:
    assert usable(estimate, sending, congested, rising) == expected


def test_a_falling_remb_is_congestion_for_a_while_and_a_rising_one_is_rising() -> None:
    est = SubscriberEstimate()
    est.remb([1], 1_000_000, 0.0)
    assert not est.congested(0.0) and not est.rising(0.0)
    est.remb([1], 1_050_000, 1.0)
    assert est.rising(1.0) and not est.rising(1.0 + RISING_WITHIN_S)
    est.remb([1], 900_000, 2.0)  # overuse: the receiver cut its estimate
    assert est.congested(2.0) and est.congested(2.0 + CONGESTION_HOLD_S - 0.1)
    assert not est.congested(2.0 + CONGESTION_HOLD_S)
    est.remb([2], 100_000, 3.0)  # another transport's first report: no fall
    assert est.fell_at == 2.0
