"""Padding probes through the pure forwarder, stepped with a fake clock: a subscriber held on
the low layer whose RTX stream can carry padding gets padding (not a trial of a higher layer)
until its estimate grows to the next layer; the media stream stays continuous; a falling
estimate stops it."""

from __future__ import annotations

import pytest

from media.bundle import Numbering
from media.bundling import Bundle
from media.config import PADDING_PROBES_ENV, parse_args
from media.forwarding import ABS_SEND_TIME_URI, Forwarder, Kind, Leg, Source
from media.node import MediaNode, NodeLimits
from media.peer import new_peer_connection
from media.probing import PADDING_SIZE
from media.rtp import extension_value, parse_rtp
from media.selection import padding_due
from tests.test_sfu_simulcast import LEG_VIDEO, Call, assert_continuous

RTX_SSRC, RTX_PT, SEND_TIME_ID = 0xC3, 121, 3


def rtx_call() -> Call:
    leg = Leg(Kind.VIDEO, LEG_VIDEO, 120, {ABS_SEND_TIME_URI: SEND_TIME_ID}, RTX_SSRC, RTX_PT)
    return Call(f=Forwarder(padding_probes=True), video_leg=leg)


def pad(call: Call) -> list[bytes]:
    """The padding due over the next 0.1 s, in 10 ms pacing steps."""
    out = []
    for i in range(11):
        for sub_id, packet in padding_due(call.f, call.now + i * 0.01):
            assert sub_id == "c<-a"
            out.append(packet)
    return out


def receiver(estimate: float, received_bps: float) -> float:
    """A REMB receiver's next estimate: 8 % more a second, never over 1.5 x what arrives."""
    return min(estimate * 1.08, 1.5 * received_bps + 10_000)


def test_a_subscriber_held_low_climbs_to_the_top_layer_on_padding() -> None:
    call = rtx_call()
    estimate, padded, seconds = 300_000.0, [], 0
    call.remb(int(estimate))
    call.second()
    assert call.current() == 0
    while call.current() != 2 and seconds < 60:
        media = sum(len(p) for p in call.got)
        call.second()
        padding = []
        for _ in range(10):  # the pacer runs between the selector's ticks
            padding += pad(call)
        padded += padding
        received = (sum(len(p) for p in call.got) - media + sum(map(len, padding))) * 8
        estimate = receiver(estimate, received)
        call.remb(int(estimate))
        seconds += 1
    assert call.current() == 2, f"still on layer {call.current()} at {estimate:.0f} bit/s"
    assert padded and call.f.counters.probes == 0  # padding, no trial of a higher layer
    assert call.f.counters.padding_probes >= 1
    assert call.f.counters.probe_padding_packets == len(padded)
    for packet in padded:
        view = parse_rtp(packet)
        assert (view.ssrc, view.payload_type) == (RTX_SSRC, RTX_PT)
        assert view.payload_end == view.header_length and packet[-1] == PADDING_SIZE
        assert extension_value(packet, view, SEND_TIME_ID) is not None  # the estimator counts it
    sequences = [parse_rtp(p).sequence for p in padded]
    assert sequences == list(range(len(padded)))  # the RTX stream's own numbering
    assert_continuous(call.got)  # the media stream saw none of it
    assert pad(call) == []  # on the top layer: nothing more to probe for


def test_without_an_rtx_stream_nothing_is_padded() -> None:
    call = Call()
    for _ in range(5):
        call.remb(300_000)
        call.second()
        assert pad(call) == []
    assert call.f.counters.padding_probes == 0


def test_off_unless_asked_a_subscriber_with_an_rtx_stream_gets_trials_not_padding() -> None:
    call = Call(video_leg=rtx_call().video_leg)  # a node's default: --padding-probes off
    for _ in range(8):
        call.remb(300_000)
        call.second()
        assert pad(call) == []
    assert call.f.counters.padding_probes == 0 and call.f.counters.probes >= 1


def test_a_falling_estimate_stops_the_padding_and_it_waits_before_the_next() -> None:
    call = rtx_call()
    for _ in range(3):
        call.remb(300_000)
        call.second()
    assert pad(call)
    call.remb(200_000)  # the receiver saw its queue grow
    call.second()
    assert pad(call) == []
    padding = call.f.rooms["r"].paddings["c"]
    assert padding.failed == 1 and padding.next_at > call.now


async def test_a_bundled_video_section_routes_rtcp_about_its_rtx_stream() -> None:
    """With video paused, only padding arrives: Chromium's REMB and receiver reports then name
    the RTX SSRC alone, and must still reach the subscription (not be dropped as unknown)."""
    pc = new_peer_connection(bundle=True)
    try:
        bundle = Bundle("r", "c", pc, Numbering())
        senders = bundle.add("s1", "a", Source.CAMERA, (Kind.AUDIO, Kind.VIDEO))
        video, audio = senders[Kind.VIDEO], senders[Kind.AUDIO]
        assert bundle.by_ssrc[video._rtx_ssrc] == bundle.by_ssrc[video._ssrc] == "s1"
        assert audio._rtx_ssrc not in bundle.by_ssrc
        bundle.remove("s1")
        assert bundle.by_ssrc == {}
    finally:
        await pc.close()


async def test_the_node_pads_only_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PADDING_PROBES_ENV, raising=False)
    assert parse_args(["--secret", "s"]).padding_probes is False
    assert parse_args(["--secret", "s", "--padding-probes", "on"]).padding_probes is True
    monkeypatch.setenv(PADDING_PROBES_ENV, "on")
    assert parse_args(["--secret", "s"]).padding_probes is True
    for asked in (True, False):
        node = MediaNode(NodeLimits(padding_probes=asked))
        try:
            assert node.forwarder.padding_probes is asked
        finally:
            await node.close()
