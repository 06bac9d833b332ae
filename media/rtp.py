"""Allocation-light helpers on raw (already decrypted) RTP and RTCP bytes.

The forwarder touches every packet, so it reads the fixed header with one ``struct`` call and
never builds aiortc's ``RtpPacket`` objects. Malformed input raises ``MalformedPacket`` (a
``ValueError``) with a short stable reason; nothing here raises anything else on bad bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

RTP_VERSION = 2
RTP_FIXED_HEADER = 12
ONE_BYTE_PROFILE = 0xBEDE

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_RTPFB = 205
RTCP_PSFB = 206
RTPFB_NACK = 1
PSFB_PLI = 1
PSFB_FIR = 4
PSFB_AFB = 15  # application layer feedback: REMB (draft-alvestrand-rmcat-remb)
REMB_ID = b"REMB"

_FIXED = struct.Struct("!BBHII")
#: An extension block holding one 4-byte one-byte-header element: profile, length 1 word.
_ONE_BYTE_EXT_HEAD = struct.pack("!HH", ONE_BYTE_PROFILE, 1)
_EXT = struct.Struct("!HH")
_RTCP_HEAD = struct.Struct("!BBH")
_REPORT = struct.Struct("!IBBHIIII")
_SENDER_INFO = struct.Struct("!IQIII")


class MalformedPacket(ValueError):
    """Bytes that are not a well-formed RTP/RTCP packet; ``reason`` is a stable short code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demultiplexing on one port: RTCP packet types 192-223 sit in the second byte."""
    return len(data) >= 2 and 192 <= data[1] <= 223


class RtpView(NamedTuple):
    """The parsed fixed header plus offsets into the original bytes (no payload copy)."""

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrc_end: int  # where the CSRC list ends (= start of the extension block, if any)
    extension_profile: int  # 0 when there is no extension block
    extension_start: int  # first byte of the extension elements
    header_length: int  # first payload byte
    payload_end: int  # len(data) minus padding


def parse_rtp(data: bytes) -> RtpView:
    """Validate an RTP packet: version, lengths, CSRC count, extension length and padding."""
    length = len(data)
    if length < RTP_FIXED_HEADER:
        raise MalformedPacket("truncated")
    b0, b1, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise MalformedPacket("version")
    if 192 <= b1 <= 223:
        raise MalformedPacket("rtcp")
    offset = RTP_FIXED_HEADER + 4 * (b0 & 0x0F)
    csrc_end = offset
    profile = 0
    extension_start = offset
    if b0 & 0x10:
        if offset + 4 > length:
            raise MalformedPacket("extension")
        profile, words = _EXT.unpack_from(data, offset)
        extension_start = offset + 4
        offset = extension_start + 4 * words
    if offset > length:
        raise MalformedPacket("truncated")
    payload_end = length
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or offset + padding > length:
            raise MalformedPacket("padding")
        payload_end = length - padding
    return RtpView(
        bool(b1 & 0x80),
        b1 & 0x7F,
        sequence,
        timestamp,
        ssrc,
        csrc_end,
        profile,
        extension_start,
        offset,
        payload_end,
    )


def _one_byte_elements(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(id, value start, value end) for each RFC 8285 one-byte element; stops at id 15."""
    pos = start
    while pos < end:
        byte = data[pos]
        if byte == 0:  # padding between elements
            pos += 1
            continue
        ident = byte >> 4
        if ident == 15:
            return
        size = (byte & 0x0F) + 1
        value = pos + 1
        if value + size > end:
            raise MalformedPacket("extension")
        yield ident, value, value + size
        pos = value + size


def audio_level(data: bytes, view: RtpView, ext_id: int) -> tuple[bool, int] | None:
    """RFC 6464 (voice activity, level in -dBov 0..127) from a one-byte extension, if present."""
    if view.extension_profile != ONE_BYTE_PROFILE:
        return None
    for ident, start, _end in _one_byte_elements(data, view.extension_start, view.header_length):
        if ident == ext_id:
            byte = data[start]
            return bool(byte & 0x80), byte & 0x7F
    return None


def extension_value(data: bytes, view: RtpView, ext_id: int) -> bytes | None:
    """The value of one-byte extension element ``ext_id`` (RFC 8285), or None."""
    if view.extension_profile != ONE_BYTE_PROFILE:
        return None
    for ident, start, end in _one_byte_elements(data, view.extension_start, view.header_length):
        if ident == ext_id:
            return data[start:end]
    return None


def vp8_keyframe_start(data: bytes, view: RtpView) -> bool:
    """Whether this packet starts a VP8 keyframe (RFC 7741 descriptor, then the P bit).

    A subscriber that joins mid-stream gets video only from such a packet on, so its decoder
    never sees inter frames it cannot decode.
    """
    pos = view.header_length
    end = view.payload_end
    if pos >= end:
        return False
    first = data[pos]
    if not first & 0x10 or first & 0x07:  # S bit unset, or not partition 0
        return False
    pos += 1
    if first & 0x80:  # X: extended control bits
        if pos >= end:
            return False
        ext = data[pos]
        pos += 1
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if pos >= end:
                return False
            pos += 2 if data[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX byte
            pos += 1
    return pos < end and not data[pos] & 0x01


def remap_extensions(data: bytes, view: RtpView, mapping: Mapping[int, int]) -> bytes:
    """The extension block (with its 4-byte header) keeping only one-byte elements named in
    ``mapping`` (old id -> new id), padded to 32 bits; b"" when nothing is kept."""
    if view.extension_profile != ONE_BYTE_PROFILE or not mapping:
        return b""
    out = bytearray()
    for ident, start, end in _one_byte_elements(data, view.extension_start, view.header_length):
        new_id = mapping.get(ident)
        if new_id is not None:
            out.append((new_id << 4) | (end - start - 1))
            out += data[start:end]
    if not out:
        return b""
    out += b"\x00" * (-len(out) % 4)
    return _EXT.pack(ONE_BYTE_PROFILE, len(out) // 4) + bytes(out)


def stamp_extension(ext: bytes, ext_id: int, value: bytes) -> bytes:
    """``ext`` (an extension block as ``remap_extensions`` builds it) with element ``ext_id``'s
    value replaced by ``value`` of the same length; unchanged when it has no such element."""
    if not ext:
        return ext
    out = bytearray(ext)
    pos = 4
    while pos < len(out):
        byte = out[pos]
        if byte == 0:
            pos += 1
            continue
        ident, size = byte >> 4, (byte & 0x0F) + 1
        if ident == ext_id and size == len(value):
            out[pos + 1 : pos + 1 + size] = value
            return bytes(out)
        pos += 1 + size
    return ext


def abs_send_time(now: float) -> bytes:
    """The abs-send-time extension's value for ``now``: 24 bits, seconds in 6.18 fixed point."""
    return (int(now * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")


def rewrite_rtp(
    data: bytes,
    view: RtpView,
    ssrc: int,
    payload_type: int,
    extensions: Mapping[int, int] | None = None,
) -> bytes:
    """A copy with a new SSRC and payload type; header extensions remapped or stripped.

    The two legs negotiate extension ids separately, so ids are only meaningful after mapping;
    anything unmapped is dropped rather than forwarded with a wrong meaning.
    """
    ext = remap_extensions(data, view, extensions) if extensions else b""
    return build_rtp(data, view, ssrc, payload_type, ext, data[view.header_length :])


def build_rtp(
    data: bytes, view: RtpView, ssrc: int, payload_type: int, ext: bytes, payload: bytes
) -> bytes:
    """``rewrite_rtp`` with the extension block and payload prepared by the caller, who forwards
    one packet to many legs and builds those two once per packet, not once per leg."""
    b0 = (data[0] & 0xEF) | (0x10 if ext else 0)
    head = _FIXED.pack(
        b0, (0x80 if view.marker else 0) | payload_type, view.sequence, view.timestamp, ssrc
    )
    if view.csrc_end > RTP_FIXED_HEADER:
        head += data[RTP_FIXED_HEADER : view.csrc_end]
    return head + ext + payload


def build_padding(
    ssrc: int, payload_type: int, sequence: int, timestamp: int, send_time: bytes | None, size: int
) -> bytes:
    """A padding-only RTP packet (RFC 3550 5.1: P bit, ``size`` padding bytes, the last one
    counting them), with ``send_time`` (an ``abs_send_time_element``) when given."""
    ext = b""
    if send_time is not None:
        ext = _ONE_BYTE_EXT_HEAD + send_time
    b0 = 0xA0 | (0x10 if ext else 0)
    head = _FIXED.pack(b0, payload_type, sequence, timestamp, ssrc)
    tail = _PADDING.get(size)
    if tail is None:
        tail = _PADDING[size] = bytes(size - 1) + bytes([size])
    return head + ext + tail


_PADDING: dict[int, bytes] = {}  # by size: one padding block, not a new one per packet


def abs_send_time_element(ext_id: int, now: float) -> bytes:
    """One one-byte-header element (RFC 8285) carrying ``abs_send_time(now)``: 4 bytes."""
    return bytes([(ext_id << 4) | 2]) + abs_send_time(now)


# --- RTCP -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int  # of 256
    packets_lost: int
    highest_sequence: int
    jitter: int  # in RTP timestamp units
    lsr: int
    dlsr: int


@dataclass(slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(slots=True)
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(slots=True)
class PictureLoss:
    """PLI, or FIR (``full=True``): the sender of ``media_ssrc`` should send a keyframe."""

    sender_ssrc: int
    media_ssrc: int
    full: bool = False


@dataclass(slots=True)
class Nack:
    sender_ssrc: int
    media_ssrc: int
    lost: list[int]


@dataclass(slots=True)
class Remb:
    """Receiver Estimated Maximum Bitrate: what the receiver thinks the path can carry."""

    sender_ssrc: int
    bitrate_bps: int
    ssrcs: list[int]


@dataclass(slots=True)
class OtherRtcp:
    packet_type: int
    fmt: int


RtcpItem = SenderReport | ReceiverReport | PictureLoss | Nack | Remb | OtherRtcp


def _report_blocks(data: bytes, start: int, count: int, end: int) -> list[ReportBlock]:
    if start + 24 * count > end:
        raise MalformedPacket("rtcp_report")
    blocks = []
    for i in range(count):
        ssrc, fraction, lost_hi, lost_lo, highest, jitter, lsr, dlsr = _REPORT.unpack_from(
            data, start + 24 * i
        )
        lost = (lost_hi << 16) | lost_lo
        if lost & 0x800000:
            lost -= 1 << 24
        blocks.append(ReportBlock(ssrc, fraction, lost, highest, jitter, lsr, dlsr))
    return blocks


def parse_rtcp(data: bytes) -> list[RtcpItem]:
    """Walk a compound RTCP packet; each part is length-checked before it is read."""
    items: list[RtcpItem] = []
    pos = 0
    length = len(data)
    if length < 4:
        raise MalformedPacket("truncated")
    while pos < length:
        if pos + 4 > length:
            raise MalformedPacket("truncated")
        b0, packet_type, words = _RTCP_HEAD.unpack_from(data, pos)
        if b0 >> 6 != RTP_VERSION:
            raise MalformedPacket("version")
        end = pos + 4 * (words + 1)
        if end > length:
            raise MalformedPacket("truncated")
        fmt = b0 & 0x1F
        body = pos + 4
        if packet_type == RTCP_SR:
            if body + 24 > end:
                raise MalformedPacket("rtcp_sr")
            ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(data, body)
            blocks = _report_blocks(data, body + 24, fmt, end)
            items.append(SenderReport(ssrc, ntp, rtp_ts, packets, octets, blocks))
        elif packet_type == RTCP_RR:
            if body + 4 > end:
                raise MalformedPacket("rtcp_rr")
            (ssrc,) = struct.unpack_from("!I", data, body)
            items.append(ReceiverReport(ssrc, _report_blocks(data, body + 4, fmt, end)))
        elif packet_type in (RTCP_PSFB, RTCP_RTPFB):
            if body + 8 > end:
                raise MalformedPacket("rtcp_feedback")
            sender, media = struct.unpack_from("!II", data, body)
            fci = body + 8
            if packet_type == RTCP_PSFB and fmt == PSFB_PLI:
                items.append(PictureLoss(sender, media))
            elif packet_type == RTCP_PSFB and fmt == PSFB_FIR:
                # FIR names its targets in the FCI (8 bytes each), not in the media SSRC.
                for entry in range(fci, end - 7, 8):
                    (target,) = struct.unpack_from("!I", data, entry)
                    items.append(PictureLoss(sender, target, full=True))
            elif packet_type == RTCP_PSFB and fmt == PSFB_AFB and data[fci : fci + 4] == REMB_ID:
                items.append(_remb(data, sender, fci, end))
            elif packet_type == RTCP_RTPFB and fmt == RTPFB_NACK:
                lost: list[int] = []
                for entry in range(fci, end - 3, 4):
                    pid, blp = struct.unpack_from("!HH", data, entry)
                    lost.append(pid)
                    lost.extend((pid + bit + 1) & 0xFFFF for bit in range(16) if blp >> bit & 1)
                items.append(Nack(sender, media, lost))
            else:
                items.append(OtherRtcp(packet_type, fmt))
        else:
            items.append(OtherRtcp(packet_type, fmt))
        pos = end
    return items


def _remb(data: bytes, sender: int, fci: int, end: int) -> Remb:
    if fci + 8 > end:
        raise MalformedPacket("rtcp_remb")
    count, exp_mantissa = data[fci + 4], int.from_bytes(data[fci + 5 : fci + 8], "big")
    if fci + 8 + 4 * count > end:
        raise MalformedPacket("rtcp_remb")
    bitrate = (exp_mantissa & 0x3FFFF) << (exp_mantissa >> 18)
    ssrcs = list(struct.unpack_from(f"!{count}I", data, fci + 8))
    return Remb(sender, bitrate, ssrcs)


def build_remb(sender_ssrc: int, bitrate_bps: int, ssrcs: list[int]) -> bytes:
    """A REMB packet (6-bit exponent, 18-bit mantissa, rounded down)."""
    exp = 0
    while bitrate_bps >> exp > 0x3FFFF:
        exp += 1
    fci = REMB_ID + bytes([len(ssrcs)])
    fci += ((exp << 18) | (bitrate_bps >> exp)).to_bytes(3, "big")
    fci += b"".join(struct.pack("!I", s) for s in ssrcs)
    head = struct.pack("!BBHII", 0x80 | PSFB_AFB, RTCP_PSFB, 2 + len(fci) // 4, sender_ssrc, 0)
    return head + fci


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """RFC 4585 Picture Loss Indication: 12 bytes, no FCI."""
    return struct.pack("!BBHII", 0x80 | PSFB_PLI, RTCP_PSFB, 2, sender_ssrc, media_ssrc)


def build_nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    """RFC 4585 generic NACK: lost sequence numbers folded into (PID, BLP) pairs."""
    fci = bytearray()
    pending = sorted(set(lost))
    while pending:
        pid = pending.pop(0)
        blp = 0
        rest = []
        for seq in pending:
            bit = (seq - pid) - 1
            if 0 <= bit < 16:
                blp |= 1 << bit
            else:
                rest.append(seq)
        pending = rest
        fci += struct.pack("!HH", pid, blp)
    header = struct.pack("!BBHII", 0x80 | RTPFB_NACK, RTCP_RTPFB, 2 + len(fci) // 4, 0, 0)
    return header[:4] + struct.pack("!II", sender_ssrc, media_ssrc) + bytes(fci)


def build_receiver_report(sender_ssrc: int, blocks: list[ReportBlock]) -> bytes:
    out = bytearray(
        struct.pack("!BBHI", 0x80 | len(blocks), RTCP_RR, 1 + 6 * len(blocks), sender_ssrc)
    )
    for b in blocks:
        lost = b.packets_lost & 0xFFFFFF
        out += _REPORT.pack(
            b.ssrc, b.fraction_lost, lost >> 16, lost & 0xFFFF, b.highest_sequence,
            b.jitter, b.lsr, b.dlsr,
        )  # fmt: skip
    return bytes(out)
