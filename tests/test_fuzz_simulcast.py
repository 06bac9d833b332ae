"""Hostile packets against the simulcast path of the forwarder: RID extensions, VP8 payload
descriptors and RTCP (REMB) of any shape never raise, and what is forwarded stays a valid RTP
packet on the subscriber's SSRC (``CALLBOOK_FUZZ_EXAMPLES`` raises the count, as in
tests/test_fuzz_rtp.py)."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from media.forwarding import Forwarder, Kind, Leg, Source
from media.rtp import MalformedPacket, parse_rtp
from media.selection import select_layers, set_view
from media.simulcast_sdp import RID_URI
from tests.test_fuzz_rtp import fuzz

RIDS = ("q", "h", "f")
LEG = 0xC1


def layered() -> Forwarder:
    f = Forwarder()
    f.create_room("r")
    for name in ("a", "c"):
        f.add_participant("r", name)
    f.publish("r", "a", Kind.VIDEO, 0, 96, {RID_URI: 10}, Source.CAMERA, RIDS)
    f.subscribe("r", "c", "a", "c<-a", [Leg(Kind.VIDEO, LEG, 120)])
    f.activate("c<-a", 0.0)
    return f


def packet(ssrc: int, seq: int, rid: bytes, payload: bytes, marker: bool) -> bytes:
    body = bytes([(10 << 4) | (max(1, len(rid)) - 1)]) + (rid or b"q")
    body += b"\x00" * (-len(body) % 4)
    head = struct.pack("!BBHII", 0x90, (0x80 if marker else 0) | 96, seq, seq * 3000, ssrc)
    return head + struct.pack("!HH", 0xBEDE, len(body) // 4) + body + payload


@fuzz
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0x1000, 0x2000, 0x3000, 0x4000]),
            st.integers(0, 0xFFFF),
            st.sampled_from([b"q", b"h", b"f", b"x", b"", b"\xff" * 16, b"qq"]),
            st.binary(max_size=40),
            st.booleans(),
        ),
        max_size=40,
    ),
    st.sampled_from([None, 0, 120, 240, 4000]),
    st.binary(max_size=64),
)
def test_layered_forwarding_never_raises_and_forwards_valid_packets(
    packets: list[tuple[int, int, bytes, bytes, bool]], height: int | None, rtcp: bytes
) -> None:
    f = layered()
    set_view(f, "r", "c", "a", Source.CAMERA, height)
    now = 1.0
    for ssrc, seq, rid, payload, marker in packets:
        now += 0.01
        for sub, out in f.handle_rtp("r", "a", packet(ssrc, seq, rid, payload, marker), now):
            assert sub == "c<-a"
            try:
                view = parse_rtp(out)
            except MalformedPacket as exc:
                raise AssertionError(f"forwarded a malformed packet: {exc.reason}") from None
            assert view.ssrc == LEG and view.payload_type == 120
        select_layers(f, now)
    f.handle_subscriber_rtcp("c<-a", rtcp, now)
    f.handle_subscriber_rtcp("c<-a", b"\x8f\xce" + rtcp[2:], now)  # PSFB fmt 15: REMB-shaped
    select_layers(f, now + 1)
