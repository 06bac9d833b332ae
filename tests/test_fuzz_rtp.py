"""RTP and RTCP parsing (media/rtp.py) as pure properties: what is built parses back to what was
built, and anything else, however mangled, parses within its documented bounds or raises
``MalformedPacket`` — never another exception, and never more work than the bytes allow.

tests/test_fuzz_datagrams.py throws random datagrams at every parser of the SFU; this module
starts from well-formed packets (every header feature: CSRCs, one-byte extensions, padding,
compound RTCP, NACK bitmasks, FIR entries) so that mutations reach the deep branches. The corpus
in ``tests/data/fuzz/rtp/`` (one packet a file, named for the edge it sits on) is replayed
through both parsers and the forwarding core. A longer run:
``CALLBOOK_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_rtp.py``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.rtp import (
    ONE_BYTE_PROFILE,
    MalformedPacket,
    Nack,
    PictureLoss,
    ReceiverReport,
    ReportBlock,
    RtcpItem,
    audio_level,
    build_nack,
    build_pli,
    build_receiver_report,
    parse_rtcp,
    parse_rtp,
    remap_extensions,
    rewrite_rtp,
)
from tests.test_fuzz_datagrams import check_forwarder, check_rtcp, check_rtp, forwarder

CORPUS_DIR = Path(__file__).parent / "data" / "fuzz" / "rtp"
CORPUS = sorted((p.name, p.read_bytes()) for p in CORPUS_DIR.iterdir())
EXAMPLES = int(os.environ.get("CALLBOOK_FUZZ_EXAMPLES", "100"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u32 = st.integers(0, 2**32 - 1)
#: RFC 5761: with the marker bit, payload types 64-95 would read as RTCP 192-223 (never used).
payload_types = st.integers(0, 127).filter(lambda pt: not 64 <= pt <= 95)
elements = st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=6)


@st.composite
def rtp_packets(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    """A well-formed RTP packet and what it holds."""
    csrcs = draw(st.lists(u32, max_size=15))
    ext = draw(st.none() | elements)
    padding = draw(st.integers(0, 255))
    fields = {
        "marker": draw(st.booleans()),
        "payload_type": draw(payload_types),
        "sequence": draw(st.integers(0, 0xFFFF)),
        "timestamp": draw(u32),
        "ssrc": draw(u32),
        "csrcs": csrcs,
        "elements": ext,
        "payload": draw(st.binary(max_size=300)),
    }
    b0 = 0x80 | len(csrcs) | (0x10 if ext is not None else 0) | (0x20 if padding else 0)
    b1 = (0x80 if fields["marker"] else 0) | int(fields["payload_type"])  # type: ignore[call-overload]
    data = struct.pack("!BBHII", b0, b1, fields["sequence"], fields["timestamp"], fields["ssrc"])
    data += b"".join(struct.pack("!I", c) for c in csrcs)
    if ext is not None:
        body = b"".join(bytes([ident << 4 | len(value) - 1]) + value for ident, value in ext)
        body += b"\x00" * (-len(body) % 4)
        data += struct.pack("!HH", ONE_BYTE_PROFILE, len(body) // 4) + body
    data += fields["payload"]  # type: ignore[operator]
    if padding:
        data += bytes(padding - 1) + bytes([padding])
    return data, fields


report_blocks = st.builds(
    ReportBlock,
    u32,
    st.integers(0, 255),
    st.integers(-(2**23), 2**23 - 1),
    u32,
    u32,
    u32,
    u32,
)
rtcp_parts = st.one_of(
    st.builds(lambda s, m: (build_pli(s, m), [PictureLoss(s, m)]), u32, u32),
    st.builds(
        lambda s, m, lost: (build_nack(s, m, lost), [Nack(s, m, sorted(set(lost)))]),
        u32, u32, st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40),
    ),
    st.builds(
        lambda s, blocks: (build_receiver_report(s, blocks), [ReceiverReport(s, blocks)]),
        u32, st.lists(report_blocks, max_size=31),
    ),
)  # fmt: skip


def mutations(packet: bytes) -> st.SearchStrategy[bytes]:
    """The packet with a byte changed, cut short, grown, or a slice repeated."""
    size = len(packet)
    return st.one_of(
        st.tuples(st.integers(0, size - 1), st.integers(0, 255)).map(
            lambda c: packet[: c[0]] + bytes([c[1]]) + packet[c[0] + 1 :]
        ),
        st.integers(0, size - 1).map(lambda n: packet[:n]),
        st.binary(min_size=1, max_size=64).map(lambda tail: packet + tail),
        st.tuples(st.integers(0, size), st.integers(0, size)).map(
            lambda c: packet[: max(c)] + packet[min(c) : max(c)] + packet[max(c) :]
        ),
    )


def bounded(data: bytes) -> list[RtcpItem] | None:
    """Parse RTCP; its output grows at most linearly with the input (no amplification, no
    loop that outlives the bytes)."""
    try:
        items = parse_rtcp(data)
    except MalformedPacket:
        return None
    assert len(items) <= len(data) // 4
    lost = sum(len(item.lost) for item in items if isinstance(item, Nack))
    assert lost <= 17 * (len(data) // 4)
    assert all(0 <= seq <= 0xFFFF for item in items if isinstance(item, Nack) for seq in item.lost)
    return items


@fuzz
@given(rtp_packets())
def test_rtp_parses_back_to_what_was_built(built: tuple[bytes, dict[str, object]]) -> None:
    data, fields = built
    view = parse_rtp(data)
    csrcs: list[int] = fields["csrcs"]  # type: ignore[assignment]
    assert (view.marker, view.payload_type, view.sequence, view.timestamp, view.ssrc) == (
        fields["marker"], fields["payload_type"], fields["sequence"], fields["timestamp"],
        fields["ssrc"],
    )  # fmt: skip
    assert view.csrc_end == 12 + 4 * len(csrcs)
    assert data[view.header_length : view.payload_end] == fields["payload"]
    ext: list[tuple[int, bytes]] | None = fields["elements"]  # type: ignore[assignment]
    first = {ident: value for ident, value in reversed(ext or [])}
    for ident in range(1, 15):
        level = audio_level(data, view, ident)
        if ident in first:
            byte = first[ident][0]
            assert level == (bool(byte & 0x80), byte & 0x7F)
        else:
            assert level is None

    forwarded = rewrite_rtp(data, view, 0xC0FFEE, 109, {1: 5, 2: 6})
    again = parse_rtp(forwarded)
    assert (again.ssrc, again.payload_type, again.sequence, again.marker) == (
        0xC0FFEE, 109, view.sequence, view.marker,
    )  # fmt: skip
    assert forwarded[12 : again.csrc_end] == data[12 : view.csrc_end]
    assert forwarded[again.header_length :] == data[view.header_length :]
    kept = [(ident, value) for ident, value in ext or [] if ident in (1, 2)]
    if kept:
        assert remap_extensions(data, view, {1: 5, 2: 6})
        assert audio_level(forwarded, again, 5 if kept[0][0] == 1 else 6) is not None
    else:
        assert again.extension_profile == 0


@fuzz
@given(st.data())
def test_mangled_rtp_is_parsed_within_bounds_or_refused(data: st.DataObject) -> None:
    packet, _ = data.draw(rtp_packets())
    check_rtp(data.draw(mutations(packet)))


@fuzz
@given(st.lists(rtcp_parts, min_size=1, max_size=5))
def test_compound_rtcp_parses_back_to_what_was_built(
    parts: list[tuple[bytes, list[RtcpItem]]],
) -> None:
    compound = b"".join(packet for packet, _ in parts)
    items = bounded(compound)
    expected = [item for _, built in parts for item in built]
    assert items is not None
    normalised = [
        Nack(i.sender_ssrc, i.media_ssrc, sorted(i.lost)) if isinstance(i, Nack) else i
        for i in items
    ]
    assert normalised == expected


@fuzz
@given(st.data())
def test_mangled_rtcp_is_parsed_within_bounds_or_refused(data: st.DataObject) -> None:
    parts = data.draw(st.lists(rtcp_parts, min_size=1, max_size=3))
    compound = b"".join(packet for packet, _ in parts)
    bounded(data.draw(mutations(compound)))


def test_the_corpus_covers_every_edge_it_names() -> None:
    names = {name for name, _ in CORPUS}
    for edge in ("rtp-csrc15-truncated", "rtp-padding-zero", "rtp-extension-past-end",
                 "rtcp-length-past-end", "rtcp-nack-wraps", "rtcp-zero-length-parts"):  # fmt: skip
        assert f"{edge}.bin" in names


@pytest.mark.parametrize(("name", "data"), CORPUS, ids=[name for name, _ in CORPUS])
def test_corpus(name: str, data: bytes) -> None:
    check_rtp(data)
    check_rtcp(data)
    bounded(data)
    check_forwarder(forwarder(), data)
