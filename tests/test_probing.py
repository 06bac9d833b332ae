"""Padding probes (media/probing.py): when a subscriber pads, how fast, when it stops and backs
off, and how the padding is paced; stepped with a fake clock."""

from __future__ import annotations

import pytest

from media.probing import (
    BACKOFF_S,
    HEADROOM,
    MAX_BACKOFF_S,
    MAX_PADDING_BPS,
    MAX_PROBE_S,
    MAX_STEP_S,
    PADDING_SIZE,
    RAMP,
    PaddingProbe,
)
from media.rtp import (
    abs_send_time,
    abs_send_time_element,
    build_padding,
    extension_value,
    parse_rtp,
)

K = 1000


@pytest.mark.parametrize(
    ("estimate", "sending", "target", "loss", "congested", "sub_id", "rate"),
    [
        # held on the low layer, room to grow: pad a little above the estimate
        (300 * K, 200 * K, 700 * K, 0.0, False, "s", 300 * K * RAMP - 200 * K),
        # close to the target: pad only up to the target plus headroom
        (700 * K, 600 * K, 620 * K, 0.0, False, "s", 620 * K * HEADROOM - 600 * K),
        # never more than the maximum padding rate
        (5_000 * K, 100 * K, 9_000 * K, 0.0, False, "s", MAX_PADDING_BPS),
        # the estimate already covers the target: the allocation moves up by itself
        (900 * K, 200 * K, 700 * K, 0.0, False, "s", 0.0),
        # nothing more wanted (top layer, or capped by its view)
        (300 * K, 200 * K, None, 0.0, False, "s", 0.0),
        # no RTX stream negotiated: nowhere to pad
        (300 * K, 200 * K, 700 * K, 0.0, False, None, 0.0),
        # no estimate yet
        (None, 200 * K, 700 * K, 0.0, False, "s", 0.0),
        # losing packets, or the REMB fell lately: not now
        (300 * K, 200 * K, 700 * K, 0.05, False, "s", 0.0),
        (300 * K, 200 * K, 700 * K, 0.0, True, "s", 0.0),
    ],
)
def test_when_and_how_fast_a_subscriber_pads(
    estimate: float | None,
    sending: float,
    target: float | None,
    loss: float,
    congested: bool,
    sub_id: str | None,
    rate: float,
) -> None:
    probe = PaddingProbe()
    got = probe.plan(10.0, estimate, sending, target, loss, congested, sub_id)
    assert got == pytest.approx(rate)
    assert probe.sub_id == (sub_id if rate else None)
    assert probe.started == (1 if rate else 0)


def test_padding_follows_the_estimate_up_and_stops_when_it_reaches_the_target() -> None:
    probe = PaddingProbe()
    estimate, now, rates = 300 * K, 0.0, []
    while (rate := probe.plan(now, estimate, 200 * K, 700 * K, 0.0, False, "s")) > 0:
        rates.append(rate)
        estimate *= 1.08  # the receiver's estimate grows with what arrives
        now += 1.0
    assert rates == sorted(rates) and len(rates) > 5
    assert estimate >= 700 * K * HEADROOM
    assert probe.started == 1 and probe.failed == 0 and probe.backoff_s == BACKOFF_S


@pytest.mark.parametrize(("loss", "congested"), [(0.05, False), (0.0, True)])
def test_a_link_that_pushes_back_stops_the_probe_and_backs_off_doubling(
    loss: float, congested: bool
) -> None:
    probe = PaddingProbe()
    now, waits = 0.0, []
    for _ in range(6):
        assert probe.plan(now, 300 * K, 200 * K, 700 * K, 0.0, False, "s") > 0
        now += 0.1
        assert probe.plan(now, 300 * K, 200 * K, 700 * K, loss, congested, "s") == 0.0
        waits.append(probe.next_at - now)
        # nothing during the back-off, even when the link looks fine again
        assert probe.plan(probe.next_at - 0.01, 300 * K, 200 * K, 700 * K, 0.0, False, "s") == 0
        now = probe.next_at
    assert waits == pytest.approx([2.0, 4.0, 8.0, 16.0, MAX_BACKOFF_S, MAX_BACKOFF_S])
    assert waits[0] == BACKOFF_S and probe.failed == 6


def test_a_probe_whose_estimate_never_reaches_the_target_ends() -> None:
    probe = PaddingProbe()
    assert probe.plan(0.0, 300 * K, 200 * K, 700 * K, 0.0, False, "s") > 0
    assert probe.plan(MAX_PROBE_S - 1, 300 * K, 200 * K, 700 * K, 0.0, False, "s") > 0
    assert probe.plan(MAX_PROBE_S + 1, 300 * K, 200 * K, 700 * K, 0.0, False, "s") == 0
    assert probe.failed == 1 and probe.next_at > MAX_PROBE_S + 1


def test_padding_is_paced_and_a_late_wake_up_sends_no_burst() -> None:
    probe = PaddingProbe()
    probe.plan(0.0, 1_000 * K, 500 * K, 2_000 * K, 0.0, False, "s")
    rate = probe.rate_bps
    assert probe.take(0.0) == 0  # the first step only starts the clock
    sent = sum(probe.take(i * 0.01) for i in range(1, 101))  # one second in 10 ms steps
    assert sent * PADDING_SIZE * 8 == pytest.approx(rate, rel=0.01)
    assert probe.take(5.0) == int(rate * MAX_STEP_S / 8 / PADDING_SIZE)  # not 4 s worth
    assert [probe.next_sequence() for _ in range(3)] == [0, 1, 2]


def test_a_padding_packet_is_padding_only_with_our_send_time() -> None:
    packet = build_padding(0xC2, 121, 7, 90_000, abs_send_time_element(3, 12.5), PADDING_SIZE)
    view = parse_rtp(packet)
    assert (view.ssrc, view.payload_type, view.sequence) == (0xC2, 121, 7)
    assert packet[0] & 0x20 and packet[-1] == PADDING_SIZE
    assert view.payload_end == view.header_length  # nothing but padding
    assert extension_value(packet, view, 3) == abs_send_time(12.5)
    assert len(packet) == 12 + 8 + PADDING_SIZE
