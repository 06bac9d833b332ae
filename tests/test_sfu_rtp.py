"""media.rtp on well-formed and hostile bytes: typed errors, never anything else."""

from __future__ import annotations

import contextlib
import os
import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from media.rtp import (
    MalformedPacket,
    Nack,
    PictureLoss,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    audio_level,
    build_nack,
    build_pli,
    build_receiver_report,
    is_rtcp,
    parse_rtcp,
    parse_rtp,
    rewrite_rtp,
    vp8_keyframe_start,
)


def rtp(
    ssrc: int = 0x11223344,
    seq: int = 1000,
    pt: int = 96,
    ts: int = 90_000,
    marker: bool = False,
    payload: bytes = b"\x10\x00\x9d\x01\x2a",
    ext: bytes | None = None,
    csrc: tuple[int, ...] = (),
    padding: int = 0,
) -> bytes:
    """A hand-built RTP packet; ``ext`` is the raw one-byte extension body (4-byte aligned)."""
    b0 = 0x80 | len(csrc) | (0x10 if ext is not None else 0) | (0x20 if padding else 0)
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrc)
    if ext is not None:
        out += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    out += payload
    if padding:
        out += b"\x00" * (padding - 1) + bytes([padding])
    return out


def test_parse_reads_the_fixed_header() -> None:
    view = parse_rtp(rtp(marker=True, csrc=(7, 8), ext=b"\x10\xff\x00\x00", padding=3))
    assert (view.ssrc, view.payload_type, view.sequence, view.timestamp, view.marker) == (
        0x11223344, 96, 1000, 90_000, True,
    )  # fmt: skip
    assert view.csrc_end == 20 and view.extension_profile == 0xBEDE
    assert view.header_length == 28 and view.payload_end == view.header_length + 5


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x80\x60\x00", "truncated"),
        (b"\x40" + bytes(11), "version"),
        (b"\x80\xc8" + bytes(10), "rtcp"),
        (b"\x8f\x60" + bytes(10), "truncated"),  # 15 CSRCs announced, none present
        (b"\x90\x60" + bytes(10), "extension"),  # extension bit, no extension header
        (b"\x90\x60" + bytes(10) + b"\xbe\xde\x00\x09", "truncated"),  # extension too long
        (b"\xa0\x60" + bytes(10) + b"\x05", "padding"),  # padding longer than the packet
        (b"\xa0\x60" + bytes(10) + b"\x00", "padding"),  # zero padding count
    ],
)
def test_malformed_rtp_is_a_typed_error(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as caught:
        parse_rtp(data)
    assert caught.value.reason == reason


@given(st.binary(max_size=64))
def test_random_bytes_never_escape_as_other_errors(data: bytes) -> None:
    try:
        view = parse_rtp(data)
    except MalformedPacket:
        return
    rewrite_rtp(data, view, 1, 100, {1: 2})
    with contextlib.suppress(MalformedPacket):
        audio_level(data, view, 1)
    vp8_keyframe_start(data, view)


@given(st.binary(max_size=80))
def test_random_rtcp_never_escapes_as_other_errors(data: bytes) -> None:
    with contextlib.suppress(MalformedPacket):
        parse_rtcp(data)


def _aiortc_map(uri_ids: dict[str, int]) -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    params = RTCRtpParameters(
        headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in uri_ids.items()]
    )
    extensions.configure(params)
    return extensions


def test_rewrite_remaps_extension_ids_and_aiortc_reads_it() -> None:
    level_uri = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
    mid_uri = "urn:ietf:params:rtp-hdrext:sdes:mid"
    packet = RtpPacket(payload_type=111, sequence_number=7, timestamp=960, ssrc=5)
    packet.extensions.audio_level = (True, 33)
    packet.extensions.mid = "0"
    packet.payload = b"opus!"
    data = packet.serialize(_aiortc_map({level_uri: 2, mid_uri: 1}))
    view = parse_rtp(data)
    assert audio_level(data, view, 2) == (True, 33)

    out = rewrite_rtp(data, view, ssrc=99, payload_type=109, extensions={2: 4})
    parsed = RtpPacket.parse(out, _aiortc_map({level_uri: 4, mid_uri: 1}))
    assert (parsed.ssrc, parsed.payload_type, parsed.sequence_number) == (99, 109, 7)
    assert parsed.extensions.audio_level == (True, 33)
    assert parsed.extensions.mid is None  # not mapped: stripped, never forwarded with a wrong id
    assert parsed.payload == b"opus!"

    stripped = rewrite_rtp(data, view, ssrc=99, payload_type=109)
    assert not stripped[0] & 0x10 and RtpPacket.parse(stripped).payload == b"opus!"


def test_rewrite_keeps_marker_csrcs_and_padding() -> None:
    data = rtp(marker=True, csrc=(1, 2), padding=4)
    out = rewrite_rtp(data, parse_rtp(data), 77, 100)
    parsed = RtpPacket.parse(out)
    assert parsed.marker == 1 and parsed.csrc == [1, 2] and parsed.ssrc == 77
    assert parsed.payload == b"\x10\x00\x9d\x01\x2a"


@pytest.mark.parametrize(
    ("payload", "keyframe"),
    [
        (b"\x10\x00", True),  # S=1, PID=0, P bit 0
        (b"\x10\x01", False),  # inter frame
        (b"\x00\x00", False),  # not the start of a partition
        (b"\x11\x00", False),  # partition 1
        (b"\x90\x80\x05\x00", True),  # X, I with a 7-bit picture id
        (b"\x90\x80\x85\x01\x00", True),  # 15-bit picture id
        (b"\x90\xe0\x85\x01\x03\x40\x00", True),  # picture id, TL0PICIDX, TID
        (b"\x90\xe0\x85\x01\x03\x40\x01", False),
        (b"\x90", False),  # truncated descriptor
        (b"\x10", False),
        (b"", False),
    ],
)
def test_vp8_keyframe_start(payload: bytes, keyframe: bool) -> None:
    data = rtp(payload=payload)
    assert vp8_keyframe_start(data, parse_rtp(data)) is keyframe


def test_rtcp_compound_pli_fir_nack_rr_sr() -> None:
    sr = RtcpPacket.parse(
        bytes.fromhex("81c8000c") + struct.pack("!IQIII", 1, 2**40, 3, 4, 5)
        + struct.pack("!IBBHIIII", 9, 64, 0, 3, 500, 7, 8, 9)
    )[0]  # fmt: skip
    assert sr.ssrc == 1  # aiortc agrees on the layout we build
    data = (
        bytes(sr)
        + build_receiver_report(2, [ReportBlock(9, 10, -2, 11, 12, 13, 14)])
        + build_pli(3, 9)
        + struct.pack("!BBHII", 0x84, 206, 4, 3, 0) + struct.pack("!IBxxx", 9, 1)  # FIR
        + struct.pack("!BBHII", 0x81, 205, 3, 3, 9) + struct.pack("!HH", 100, 0b101)  # NACK
        + bytes.fromhex("81ca0001") + b"\x00\x00\x00\x01"  # SDES, ignored
    )  # fmt: skip
    assert is_rtcp(data)
    items = parse_rtcp(data)
    assert isinstance(items[0], SenderReport) and items[0].reports[0].packets_lost == 3
    assert isinstance(items[1], ReceiverReport)
    assert items[1].reports == [ReportBlock(9, 10, -2, 11, 12, 13, 14)]
    assert items[2] == PictureLoss(3, 9)
    assert items[3] == PictureLoss(3, 9, full=True)
    assert items[4] == Nack(3, 9, [100, 101, 103])
    aiortc_view = RtcpPacket.parse(data)
    assert len(aiortc_view) == 6


@pytest.mark.parametrize(
    "lost",
    [[100], [100, 101, 116], [100, 117], [65535, 0, 3], [5, 1, 5, 300]],
)
def test_built_nacks_round_trip(lost: list[int]) -> None:
    [nack] = parse_rtcp(build_nack(7, 9, lost))
    assert isinstance(nack, Nack) and (nack.sender_ssrc, nack.media_ssrc) == (7, 9)
    assert sorted(nack.lost) == sorted({s & 0xFFFF for s in lost})
    [theirs] = RtcpPacket.parse(build_nack(7, 9, lost))
    assert sorted(theirs.lost) == sorted(set(lost))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x81\xc9",
        b"\x81\xc9\x00\x07" + bytes(8),  # length beyond the datagram
        b"\x41\xc9\x00\x01" + bytes(4),  # version 1
        b"\x81\xc9\x00\x01" + bytes(4),  # RR announcing one block, none present
        b"\x81\xce\x00\x01" + bytes(4),  # feedback without media SSRC
        build_pli(1, 2) + b"\x80",  # trailing garbage
    ],
)
def test_malformed_rtcp_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_rtcp(data)


def test_random_junk_is_rejected() -> None:
    for _ in range(200):
        junk = os.urandom(40)
        with contextlib.suppress(MalformedPacket):
            parse_rtp(junk)
