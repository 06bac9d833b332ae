"""The pure forwarding core, stepped with a fake clock."""

from __future__ import annotations

import struct

import pytest

from media import errors
from media.forwarding import (
    AUDIO_LEVEL_URI,
    Forwarder,
    KeyframeRequest,
    Kind,
    Leg,
    NackRequest,
    Source,
)
from media.rtp import build_pli, parse_rtcp, parse_rtp
from media.speaker import ActiveSpeaker
from tests.test_sfu_rtp import rtp

A_AUDIO, A_VIDEO, B_AUDIO, B_VIDEO = 0xA0, 0xA1, 0xB0, 0xB1
KEY = b"\x10\x00\x9d\x01\x2a"  # VP8 descriptor S=1, then a keyframe byte
INTER = b"\x10\x01\x00"


def legs(base: int) -> list[Leg]:
    return [
        Leg(Kind.AUDIO, base, 109, {AUDIO_LEVEL_URI: 3}),
        Leg(Kind.VIDEO, base + 1, 120),
    ]


def room_of_two() -> Forwarder:
    """a and b in room r, both publishing; c subscribes to a (sub 'c<-a'), active at t=0."""
    f = Forwarder()
    f.create_room("r")
    for name, audio, video in (("a", A_AUDIO, A_VIDEO), ("b", B_AUDIO, B_VIDEO), ("c", 0, 0)):
        f.add_participant("r", name)
        if audio:
            f.publish("r", name, Kind.AUDIO, audio, 111, {AUDIO_LEVEL_URI: 1})
            f.publish("r", name, Kind.VIDEO, video, 96)
    f.subscribe("r", "c", "a", "c<-a", legs(0xC0))
    return f


def test_packets_go_to_active_subscriptions_with_their_ssrc_and_pt() -> None:
    f = room_of_two()
    assert f.handle_rtp("r", "a", rtp(ssrc=A_AUDIO, pt=111), 0.0) == []  # not yet active
    assert f.activate("c<-a", 0.0) == [KeyframeRequest("r", "a", A_VIDEO)]
    [(sub, packet)] = f.handle_rtp("r", "a", rtp(ssrc=A_AUDIO, pt=111, seq=5), 0.01)
    view = parse_rtp(packet)
    assert (sub, view.ssrc, view.payload_type, view.sequence) == ("c<-a", 0xC0, 109, 5)
    assert f.handle_rtp("r", "b", rtp(ssrc=B_AUDIO, pt=111), 0.02) == []  # nobody subscribed
    assert f.counters.forwarded_packets == 1


@pytest.mark.parametrize(
    ("room", "sender", "data", "reason"),
    [
        ("nope", "a", rtp(ssrc=A_AUDIO, pt=111), "not_admitted"),
        ("r", "mallory", rtp(ssrc=A_AUDIO, pt=111), "not_admitted"),
        ("r", "a", b"\x80\x6f\x00", "malformed"),
        ("r", "a", b"garbage-garbage-garbage", "malformed"),
        ("r", "a", rtp(ssrc=0xDEAD, pt=111), "unknown_ssrc"),
        ("r", "b", rtp(ssrc=A_AUDIO, pt=111), "unknown_ssrc"),  # b cannot inject a's stream
        ("r", "a", rtp(ssrc=A_AUDIO, pt=0), "unknown_payload_type"),
    ],
)
def test_drops_are_counted_by_reason(room: str, sender: str, data: bytes, reason: str) -> None:
    f = room_of_two()
    f.activate("c<-a", 0.0)
    assert f.handle_rtp(room, sender, data, 0.1) == []
    assert f.counters.dropped == {reason: 1}


def test_padding_only_probes_are_dropped_and_the_sequence_stays_contiguous() -> None:
    f = room_of_two()
    f.activate("c<-a", 0.0)
    f.handle_rtp("r", "a", rtp(ssrc=A_VIDEO, seq=8, payload=KEY), 0.1)
    probe = rtp(ssrc=A_VIDEO, seq=9, payload=b"", padding=200)
    assert f.handle_rtp("r", "a", probe, 0.1) == []  # never reaches a decoder
    [(_, packet)] = f.handle_rtp("r", "a", rtp(ssrc=A_VIDEO, seq=10, payload=INTER), 0.1)
    assert parse_rtp(packet).sequence == 9  # no hole where the probe was
    assert f.counters.padding_only == 1 and not f.counters.dropped
    # a NACK of the renumbered packet reaches the publisher as its own number
    nack = struct.pack("!BBHIIHH", 0x81, 205, 3, 1, 0xC1, 12, 0)  # 12: not sent yet: no source
    nack += struct.pack("!HH", 9, 0)
    nack = nack[:2] + struct.pack("!H", len(nack) // 4 - 1) + nack[4:]
    f.subscriptions["c<-a"].legs  # noqa: B018 (the leg SSRC the NACK names is 0xC1)
    feedback = f.handle_subscriber_rtcp("c<-a", nack, 0.2)
    assert len(feedback.retransmit) == 1  # 9 (the renumbered 10) is in the leg cache
    assert parse_rtp(feedback.retransmit[0]).sequence == 9


def test_video_starts_at_a_keyframe() -> None:
    f = room_of_two()
    f.activate("c<-a", 0.0)
    sent = [
        len(f.handle_rtp("r", "a", rtp(ssrc=A_VIDEO, seq=s, payload=p), 0.1))
        for s, p in ((1, INTER), (2, INTER), (3, KEY), (4, INTER), (5, INTER))
    ]
    assert sent == [0, 0, 1, 1, 1]
    assert f.counters.held_for_keyframe == 2


# (time, event) -> number of PLIs to send to the publisher at that step
KEYFRAME_STEPS: list[tuple[float, str, int]] = [
    (0.00, "activate", 1),  # a new subscription asks at once
    (0.10, "pli", 0),  # inside 0.5 s: coalesced, remembered
    (0.20, "fir", 0),
    (0.30, "tick", 0),
    (0.50, "tick", 1),  # the remembered request goes out once the interval has passed
    (0.60, "tick", 0),
    (1.20, "pli", 1),
    (1.21, "pli", 0),
    (1.22, "pli", 0),
    (1.80, "tick", 1),
    (2.50, "tick", 0),  # nothing pending
]


def test_keyframe_requests_are_rate_limited_per_track() -> None:
    f = room_of_two()
    f.handle_rtp("r", "a", rtp(ssrc=A_VIDEO, payload=KEY), 0.0)  # no leg is waiting for one
    for now, event, expected in KEYFRAME_STEPS:
        if event == "activate":
            out = f.activate("c<-a", now)
            f.handle_rtp("r", "a", rtp(ssrc=A_VIDEO, seq=2, payload=KEY), now)
        elif event == "tick":
            out = f.due_keyframe_requests(now)
        else:
            fmt, fci = (1, b"") if event == "pli" else (4, struct.pack("!IBxxx", 0xC1, 1))
            feedback = struct.pack("!BBHII", 0x80 | fmt, 206, 2 + len(fci) // 4, 7, 0xC1) + fci
            if event == "fir":
                feedback = struct.pack("!BBHII", 0x84, 206, 4, 7, 0) + fci
            out = f.handle_subscriber_rtcp("c<-a", feedback, now).keyframes
        assert len(out) == expected, (now, event)
        assert all(r == KeyframeRequest("r", "a", A_VIDEO) for r in out)


def test_many_joiners_cause_one_pli() -> None:
    f = room_of_two()
    for i in range(8):
        f.add_participant("r", f"j{i}")
        f.subscribe("r", f"j{i}", "a", f"j{i}<-a", legs(0x100 + 2 * i))
    sent = sum(len(f.activate(f"j{i}<-a", 0.01 * i)) for i in range(8))
    assert sent == 1 and f.counters.keyframe_requests_coalesced == 7


def test_pli_for_an_audio_leg_or_unknown_ssrc_is_ignored() -> None:
    f = room_of_two()
    f.activate("c<-a", 0.0)
    assert f.handle_subscriber_rtcp("c<-a", build_pli(7, 0xC0), 5.0).keyframes == []
    assert f.handle_subscriber_rtcp("c<-a", build_pli(7, 0x999), 5.0).keyframes == []
    assert f.handle_subscriber_rtcp("nope", build_pli(7, 0xC1), 5.0).keyframes == []
    assert f.handle_subscriber_rtcp("c<-a", b"\x81\xce", 5.0).keyframes == []
    assert f.counters.dropped == {"unknown_subscription": 1, "malformed": 1}


def test_nacks_are_answered_from_the_leg_cache() -> None:
    f = room_of_two()
    f.activate("c<-a", 0.0)
    for seq in range(100, 110):
        f.handle_rtp("r", "a", rtp(ssrc=A_AUDIO, pt=111, seq=seq), 0.1)
    nack = struct.pack("!BBHII", 0x81, 205, 3, 7, 0xC0) + struct.pack("!HH", 101, 0b11)
    retransmit = f.handle_subscriber_rtcp("c<-a", nack, 0.2).retransmit
    assert [parse_rtp(p).sequence for p in retransmit] == [101, 102, 103]
    assert all(parse_rtp(p).ssrc == 0xC0 for p in retransmit)
    old = struct.pack("!BBHII", 0x81, 205, 3, 7, 0xC0) + struct.pack("!HH", 5, 0)
    feedback = f.handle_subscriber_rtcp("c<-a", old, 0.2)
    assert feedback.retransmit == []
    assert feedback.upstream_nacks == [NackRequest("r", "a", A_AUDIO, [5])]


def test_receiver_reports_from_subscribers_feed_leg_quality() -> None:
    f = room_of_two()
    f.activate("c<-a", 0.0)
    rr = bytes.fromhex("81c90007") + struct.pack("!I", 7)
    rr += struct.pack("!IBBHIIII", 0xC1, 64, 0, 1, 10, 900, 0, 0)
    f.handle_subscriber_rtcp("c<-a", rr, 1.0)
    target = f.participant("r", "a").by_track[(Source.CAMERA, Kind.VIDEO)].targets["c<-a"]
    assert target.fraction_lost == 0.25 and target.jitter_ms == 10.0


def test_receiver_report_to_the_publisher_counts_losses() -> None:
    f = room_of_two()
    for i, seq in enumerate([10, 11, 12, 14, 15]):  # 13 missing
        f.handle_rtp("r", "a", rtp(ssrc=A_AUDIO, pt=111, seq=seq, ts=960 * i), 0.02 * i)
    f.handle_publisher_rtcp("r", "a", bytes.fromhex("80c80006") + struct.pack(
        "!IQIII", A_AUDIO, 0x0001_0002_0003_0004, 0, 5, 500
    ), 0.1)  # fmt: skip
    report = f.receiver_report("r", "a", 42, 0.6)
    assert report is not None
    [rr] = parse_rtcp(report)
    [block] = rr.reports  # type: ignore[union-attr]
    assert (block.ssrc, block.highest_sequence, block.packets_lost) == (A_AUDIO, 15, 1)
    assert block.fraction_lost == 256 // 6 and block.lsr == 0x0002_0003
    assert block.dlsr == pytest.approx(0.5 * 65536, abs=2)


def test_membership_and_caps() -> None:
    f = Forwarder(max_rooms=1)
    assert f.create_room("r", max_participants=2) is True
    assert f.create_room("r") is False  # idempotent
    with pytest.raises(errors.TooManyRooms):
        f.create_room("s")
    f.add_participant("r", "a")
    with pytest.raises(errors.ParticipantExists):
        f.add_participant("r", "a")
    f.add_participant("r", "b")
    with pytest.raises(errors.RoomFull):
        f.add_participant("r", "c")
    with pytest.raises(errors.ParticipantNotFound):
        f.subscribe("r", "a", "zed", "x", [])
    with pytest.raises(errors.RoomNotFound):
        f.add_participant("nope", "a")
    f.subscribe("r", "a", "b", "a<-b", legs(1))
    f.subscribe("r", "b", "a", "b<-a", legs(3))
    assert sorted(f.remove_participant("r", "a")) == ["a<-b", "b<-a"]
    assert f.subscriptions == {} and list(f.room("r").participants) == ["b"]
    assert f.delete_room("r") == [] and f.rooms == {}


def test_publish_after_subscribing_attaches_to_active_subscriptions() -> None:
    f = Forwarder()
    f.create_room("r")
    f.add_participant("r", "a")
    f.add_participant("r", "b")
    f.subscribe("r", "b", "a", "b<-a", legs(0x10))
    f.activate("b<-a", 0.0)
    f.publish("r", "a", Kind.AUDIO, 5, 111)
    assert len(f.handle_rtp("r", "a", rtp(ssrc=5, pt=111), 0.1)) == 1


def _level(level: int) -> bytes:
    return struct.pack("!BB", (1 << 4) | 0, 0x80 | level) + b"\x00\x00"


def test_active_speaker_follows_audio_levels_from_packets() -> None:
    f = room_of_two()
    for i in range(40):
        now = 0.02 * i
        f.handle_rtp("r", "a", rtp(ssrc=A_AUDIO, pt=111, seq=i, ext=_level(20)), now)
        f.handle_rtp("r", "b", rtp(ssrc=B_AUDIO, pt=111, seq=i, ext=_level(90)), now)
    assert f.active_speaker("r", 0.8) == "a"


# (time, {participant: level dBov}) observed, then the decision asked at that time
SPEAKER_STEPS: list[tuple[float, dict[str, int], str | None]] = [
    (0.0, {}, None),
    (0.5, {"a": 30, "b": 127}, None),  # decided at 0.0: still nobody until the next second
    (1.0, {"a": 30, "b": 127}, "a"),
    (1.5, {"a": 127, "b": 20}, "a"),  # b is louder, but only 0.5 s since the last decision
    (2.0, {"a": 127, "b": 20}, "b"),
    (2.1, {"a": 20, "b": 20}, "b"),
    (3.1, {"a": 22, "b": 22}, "b"),  # equally loud: no flapping
    (6.0, {}, None),  # long silence
]


def test_active_speaker_changes_at_most_once_a_second() -> None:
    speaker = ActiveSpeaker()
    for now, levels, expected in SPEAKER_STEPS:
        for k in range(10):  # a burst of packets just before ``now``
            for name, level in levels.items():
                speaker.observe(name, level, now - 0.02 * (10 - k))
        assert speaker.decide(now) == expected, now


A_SCREEN = 0xA5
SCREEN_LEG = [Leg(Kind.VIDEO, 0xD1, 120)]


def room_with_a_screen() -> Forwarder:
    """room_of_two, and a also shares its screen; c subscribes to it as 'c<-a:screen'."""
    f = room_of_two()
    f.publish("r", "a", Kind.VIDEO, A_SCREEN, 96, source=Source.SCREEN)
    f.subscribe("r", "c", "a", "c<-a:screen", SCREEN_LEG, Source.SCREEN)
    return f


def test_a_shared_screen_is_a_second_video_track_on_its_own_subscription() -> None:
    f = room_with_a_screen()
    f.activate("c<-a", 0.0)
    assert f.activate("c<-a:screen", 0.0) == [KeyframeRequest("r", "a", A_SCREEN, Source.SCREEN)]
    [(sub, packet)] = f.handle_rtp("r", "a", rtp(ssrc=A_SCREEN, payload=KEY), 0.1)
    assert (sub, parse_rtp(packet).ssrc) == ("c<-a:screen", 0xD1)
    # The camera goes on to the camera's subscription only.
    [(sub, packet)] = f.handle_rtp("r", "a", rtp(ssrc=A_VIDEO, payload=KEY), 0.1)
    assert (sub, parse_rtp(packet).ssrc) == ("c<-a", 0xC1)


def test_keyframe_requests_for_the_screen_go_to_the_screen() -> None:
    f = room_with_a_screen()
    f.activate("c<-a:screen", 0.0)
    out = f.handle_subscriber_rtcp("c<-a:screen", build_pli(7, 0xD1), 1.0).keyframes
    assert out == [KeyframeRequest("r", "a", A_SCREEN, Source.SCREEN)]
    report = f.receiver_report("r", "a", 42, 1.0, Source.SCREEN)
    assert report is None  # nothing received from the screen yet
    f.handle_rtp("r", "a", rtp(ssrc=A_SCREEN, payload=KEY), 1.1)
    f.handle_rtp("r", "a", rtp(ssrc=A_AUDIO, pt=111), 1.1)
    [rr] = parse_rtcp(f.receiver_report("r", "a", 42, 1.2, Source.SCREEN) or b"")
    assert [b.ssrc for b in rr.reports] == [A_SCREEN]  # type: ignore[union-attr]


def test_unpublishing_the_screen_ends_its_subscriptions_and_keeps_the_camera() -> None:
    f = room_with_a_screen()
    f.activate("c<-a", 0.0)
    f.activate("c<-a:screen", 0.0)
    assert f.unpublish("r", "a", Source.SCREEN) == ["c<-a:screen"]
    assert f.handle_rtp("r", "a", rtp(ssrc=A_SCREEN, payload=KEY), 0.1) == []
    assert f.counters.dropped == {"unknown_ssrc": 1}
    assert len(f.handle_rtp("r", "a", rtp(ssrc=A_VIDEO, payload=KEY), 0.1)) == 1
    with pytest.raises(errors.NotPublished):
        f.subscribe("r", "c", "a", "again", SCREEN_LEG, Source.SCREEN)


def test_a_screen_cannot_take_the_cameras_ssrc() -> None:
    f = room_of_two()
    with pytest.raises(errors.InvalidSdp):
        f.publish("r", "a", Kind.VIDEO, A_VIDEO, 96, source=Source.SCREEN)
    assert f.participant("r", "a").sends(Source.SCREEN) == []
