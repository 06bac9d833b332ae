"""Simulcast through the pure forwarder, stepped with a fake clock: layers learnt by RID, the
layer each subscriber gets (bandwidth, wanted height, pausing, probing), switches only at
keyframes, and one continuous stream per subscriber across switches and dropped padding."""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field

from media.continuity import read_vp8, vp8_fields
from media.forwarding import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, Forwarder, Kind, Leg, Source
from media.rtp import abs_send_time, build_remb, extension_value, parse_rtp, stamp_extension
from media.selection import estimates, paused_videos, select_layers, set_view
from media.simulcast_sdp import RID_URI
from tests.test_sfu_rtp import rtp

RIDS = ("q", "h", "f")
SSRC = {"q": 0x1000, "h": 0x2000, "f": 0x3000}
HEIGHT = {"q": 120, "h": 240, "f": 480}
#: packets per second of 1,200 bytes: ~115 kbit/s, ~480 kbit/s, ~1.4 Mbit/s
RATE = {"q": 12, "h": 50, "f": 150}
LEG_VIDEO = 0xC1


def keyframe_payload(picture: int, tl0: int, height: int) -> bytes:
    descriptor = bytes([0x90, 0xC0, 0x80 | (picture >> 8), picture & 0xFF, tl0])
    header = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", height * 4 // 3, height)
    return descriptor + header


def inter_payload(picture: int, tl0: int) -> bytes:
    return bytes([0x90, 0xC0, 0x80 | (picture >> 8), picture & 0xFF, tl0]) + b"\x01\x00\x00"


@dataclass
class Layer:
    rid: str
    seq: int
    ts: int
    picture: int
    tl0: int = 7
    key_next: bool = True

    def packet(self, now: float, size: int = 1200, rid_ext: bool = True) -> bytes:
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 3000) & 0xFFFFFFFF
        self.picture = (self.picture + 1) & 0x7FFF
        if self.key_next:
            payload = keyframe_payload(self.picture, self.tl0, HEIGHT[self.rid])
            self.key_next = False
        else:
            payload = inter_payload(self.picture, self.tl0)
        payload += bytes(max(0, size - 12 - 8 - len(payload)))
        ext = bytes([(10 << 4) | 0]) + self.rid.encode() + b"\x00\x00" if rid_ext else None
        return rtp(ssrc=SSRC[self.rid], seq=self.seq, ts=self.ts, pt=96, payload=payload, ext=ext)


@dataclass
class Call:
    f: Forwarder = field(default_factory=Forwarder)
    layers: dict[str, Layer] = field(default_factory=dict)
    now: float = 0.0
    got: list[bytes] = field(default_factory=list)
    video_leg: Leg = field(default_factory=lambda: Leg(Kind.VIDEO, LEG_VIDEO, 120))

    def __post_init__(self) -> None:
        self.f.create_room("r")
        for name in ("a", "c"):
            self.f.add_participant("r", name)
        self.f.publish("r", "a", Kind.AUDIO, 0xA0, 111, {AUDIO_LEVEL_URI: 1})
        self.f.publish("r", "a", Kind.VIDEO, 0, 96, {RID_URI: 10}, Source.CAMERA, RIDS)
        legs = [Leg(Kind.AUDIO, 0xC0, 109), self.video_leg]
        self.f.subscribe("r", "c", "a", "c<-a", legs)
        self.f.activate("c<-a", 0.0)
        self.layers = {
            rid: Layer(rid, 1000 * (i + 1), 10_000_000 * (i + 1), 100 * (i + 1))
            for i, rid in enumerate(RIDS)
        }

    def second(self, keyframes: tuple[str, ...] = ()) -> list[int]:
        """One second of all three layers (keyframes first where asked); selects layers
        every 0.1 s and answers PLIs with a keyframe. Returns the heights of the keyframes the
        subscriber got."""
        for rid in keyframes:
            self.layers[rid].key_next = True
        events = sorted((self.now + i / RATE[rid], rid) for rid in RIDS for i in range(RATE[rid]))
        heights = []
        tick = self.now
        for at, rid in events:
            while tick <= at:
                self.select(tick)
                tick += 0.1
            for _, packet in self.f.handle_rtp("r", "a", self.layers[rid].packet(at), at):
                self.got.append(packet)
                payload = packet[parse_rtp(packet).header_length :]
                if payload[5:8] == b"\x10\x02\x00":
                    heights.append(struct.unpack_from("<H", payload, 13)[0])
        self.now += 1.0
        return heights

    def select(self, now: float) -> None:
        for request in select_layers(self.f, now):
            rid = next(r for r, s in SSRC.items() if s == request.ssrc)
            self.layers[rid].key_next = True  # the publisher answers the PLI

    def remb(self, bps: int) -> None:
        self.f.handle_subscriber_rtcp("c<-a", build_remb(0xCC, bps, [LEG_VIDEO]), self.now)

    def current(self) -> int | None:
        target = self.f.rooms["r"].participants["a"].by_track[(Source.CAMERA, Kind.VIDEO)]
        state = target.targets["c<-a"].layered
        assert state is not None
        return state.switch.current


def assert_continuous(packets: list[bytes]) -> None:
    views = [parse_rtp(p) for p in packets]
    assert {v.ssrc for v in views} == {LEG_VIDEO}
    for before, after in itertools.pairwise(views):
        assert after.sequence == (before.sequence + 1) & 0xFFFF
        assert 0 <= (after.timestamp - before.timestamp) % (1 << 32) < 90_000
    pictures = [
        read_vp8(p[v.header_length :], vp8_fields(p[v.header_length :]))[0]
        for p, v in zip(packets, views, strict=True)
    ]
    for before, after in itertools.pairwise(pictures):
        assert after is not None and before is not None
        assert (after - before) % 0x8000 in (0, 1)


def test_layers_are_learnt_by_rid_and_unknown_ssrcs_still_dropped() -> None:
    call = Call()
    call.f.handle_rtp("r", "a", call.layers["q"].packet(0.0), 0.0)
    call.f.handle_rtp("r", "a", call.layers["h"].packet(0.0, rid_ext=False), 0.0)
    participant = call.f.rooms["r"].participants["a"]
    assert SSRC["q"] in participant.by_ssrc and SSRC["h"] not in participant.by_ssrc
    assert call.f.counters.dropped == {"unknown_ssrc": 1}


def test_without_an_estimate_the_subscriber_gets_the_top_layer_from_its_keyframe() -> None:
    call = Call()
    heights = call.second()
    assert heights and heights[0] == 480 and call.current() == 2
    assert_continuous(call.got)
    assert estimates(call.f, call.now) == []


def test_a_300_kbit_subscriber_moves_down_to_the_low_layer_at_its_keyframe_and_stays() -> None:
    call = Call()
    call.second()
    assert call.current() == 2
    call.remb(300_000)
    heights = call.second()
    assert heights and heights[-1] == 120 and call.current() == 0
    for _ in range(2):
        call.remb(300_000)
        call.second()
    assert call.current() == 0
    assert_continuous(call.got)
    assert call.f.counters.layer_switches == 1
    assert estimates(call.f, call.now) == [300_000]


def test_a_small_tile_gets_the_small_layer_with_bandwidth_to_spare() -> None:
    call = Call()
    set_view(call.f, "r", "c", "a", Source.CAMERA, 240)
    call.remb(10_000_000)
    heights = call.second()
    assert heights[0] == 240 and call.current() == 1
    set_view(call.f, "r", "c", "a", Source.CAMERA, None)
    call.remb(10_000_000)
    assert call.second()[-1] == 480 and call.current() == 2
    assert_continuous(call.got)


def test_video_pauses_when_not_even_the_low_layer_fits_and_for_a_hidden_tab() -> None:
    call = Call()
    call.remb(60_000)  # a budget for video (REMB counts no audio): the low layer takes 75 k+
    call.second()
    assert call.got == [] and paused_videos(call.f) == 1
    call.remb(5_000_000)
    call.second()
    assert call.got and call.current() is not None and paused_videos(call.f) == 0
    set_view(call.f, "r", "c", "a", Source.CAMERA, 0)
    before = len(call.got)
    call.remb(5_000_000)
    call.second()
    assert len(call.got) == before and paused_videos(call.f) == 1


def test_a_remb_is_a_budget_for_video_alone() -> None:
    """The receiver's REMB counts only packets with abs-send-time (video): the audio beside it
    is not taken off again, or a subscriber whose REMB just covers the low layer would be
    paused (at 300 kbit/s, two people's low layers could never both flow)."""
    call = Call()
    for _ in range(3):
        call.remb(130_000)  # the low layer takes ~115 k; the subscribed audio comes on top
        call.second()
    assert call.current() == 0 and paused_videos(call.f) == 0


def test_padding_on_the_current_layer_is_dropped_without_a_hole() -> None:
    call = Call()
    set_view(call.f, "r", "c", "a", Source.CAMERA, 120)
    call.second()
    q = call.layers["q"]
    q.seq += 1
    probe = rtp(ssrc=SSRC["q"], seq=q.seq, pt=96, payload=b"", padding=100)
    assert call.f.handle_rtp("r", "a", probe, call.now) == []
    call.second()
    assert_continuous(call.got)
    assert call.f.counters.padding_only == 1


def test_a_nack_reaches_the_publisher_with_the_layer_ssrc_and_its_own_number() -> None:
    call = Call()
    call.remb(300_000)
    call.second()
    call.remb(300_000)
    call.second()
    last = parse_rtp(call.got[-1]).sequence
    nack = struct.pack("!BBHIIHH", 0x81, 205, 3, 0xCC, LEG_VIDEO, (last + 5) & 0xFFFF, 0)
    nack += b""
    feedback = call.f.handle_subscriber_rtcp("c<-a", nack, call.now)
    assert feedback.upstream_nacks == []  # never sent: nothing to ask for
    gone = (last - 1) & 0xFFFF  # the cache holds it: answered here
    nack = struct.pack("!BBHIIHH", 0x81, 205, 3, 0xCC, LEG_VIDEO, gone, 0)
    assert len(call.f.handle_subscriber_rtcp("c<-a", nack, call.now).retransmit) == 1
    # a number the cache lost: asked upstream as layer q's own sequence number
    cache = call.f.rooms["r"].participants["a"].by_track[(Source.CAMERA, Kind.VIDEO)]
    cache.targets["c<-a"].cache.put(gone, b"\x80\x00" + bytes(10))  # overwritten slot
    [request] = call.f.handle_subscriber_rtcp("c<-a", nack, call.now).upstream_nacks
    assert request.ssrc == SSRC["q"] and request.lost == [(call.layers["q"].seq - 1) & 0xFFFF]


def test_a_subscriber_held_low_probes_one_layer_up_and_falls_back_when_it_does_not_fit() -> None:
    call = Call()
    probed: set[int | None] = set()
    prober = None
    for _ in range(12):  # simulated seconds
        call.remb(300_000)
        call.second()
        prober = call.f.rooms["r"].probers["c"]
        probed.add(call.current()) if prober.probing(call.now) else None
        if prober.failed:
            break
    assert prober is not None and prober.failed == 1 and prober.succeeded == 0
    assert probed == {1}  # tried the middle layer
    assert call.f.counters.probes == 1
    call.remb(300_000)
    call.second()
    assert call.current() == 0  # the estimate never followed: back on the low layer
    assert prober.next_at - call.now > 3.0  # and the next try waits longer
    assert_continuous(call.got)


def test_a_probe_that_the_estimate_follows_keeps_the_higher_layer() -> None:
    call = Call()
    for _ in range(12):
        # the receiver's estimate grows with what the probe sends
        call.remb(900_000 if call.f.counters.probes else 300_000)
        call.second()
        if call.f.rooms["r"].probers["c"].succeeded:
            break
    assert call.current() == 1
    call.remb(900_000)
    call.second()
    assert call.current() == 1  # kept after the probe (the top layer needs 1.5 Mbit/s)
    assert_continuous(call.got)


def test_forwarded_layers_carry_the_sfus_own_send_time() -> None:
    f = Forwarder()
    f.create_room("r")
    for name in ("a", "c"):
        f.add_participant("r", name)
    f.publish("r", "a", Kind.VIDEO, 0, 96, {RID_URI: 10, ABS_SEND_TIME_URI: 2}, Source.CAMERA, RIDS)
    f.subscribe("r", "c", "a", "c<-a", [Leg(Kind.VIDEO, LEG_VIDEO, 120, {ABS_SEND_TIME_URI: 5})])
    f.activate("c<-a", 0.0)
    set_view(f, "r", "c", "a", Source.CAMERA, 120)
    publisher_time = b"\x12\x34\x56"
    ext = bytes([(10 << 4) | 0]) + b"q" + bytes([(2 << 4) | 2]) + publisher_time + b"\x00\x00"
    payload = keyframe_payload(1, 1, 120)
    packet = rtp(ssrc=SSRC["q"], seq=1, pt=96, payload=payload, ext=ext)
    f.handle_rtp("r", "a", packet, 1.0)  # learns the layer
    select_layers(f, 1.0)
    [(_, out)] = f.handle_rtp(
        "r", "a", rtp(ssrc=SSRC["q"], seq=2, pt=96, payload=payload, ext=ext), 2.5
    )
    view = parse_rtp(out)
    assert extension_value(out, view, 5) == abs_send_time(2.5) != publisher_time
    assert stamp_extension(b"", 5, b"abc") == b""
