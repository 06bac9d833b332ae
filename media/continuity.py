"""One continuous stream out of packets that are dropped or come from switching sources.

Pure helpers, no I/O, time passed in. Two users:

* **Padding-only packets are dropped** (a browser that negotiates no RTX sends its bandwidth
  probes as empty packets on the media SSRC, and aiortc's VP8 decoder takes an empty packet for
  a frame and fails for good). Dropping them leaves holes in the sequence numbers, which a
  receiver would NACK and wait for, so the packets after a hole are renumbered:
  ``SequenceRewriter``.
* **Simulcast layer switches**: each layer is its own RTP stream (SSRC, sequence numbers,
  timestamps, VP8 picture ids). When a subscriber moves from one layer to another at a
  keyframe, ``StreamRewriter`` re-bases all four so its decoder sees one stream (RFC 7741 for
  the VP8 payload descriptor's picture id and TL0PICIDX).
"""

from __future__ import annotations

from bisect import bisect_right, insort
from dataclasses import dataclass, field
from typing import NamedTuple

SEQ_MOD = 0x10000
TS_MOD = 0x1_0000_0000
#: Dropped sequence numbers further back than this are forgotten: a packet that old is late
#: enough to be useless to the receiver's jitter buffer anyway.
DROP_MEMORY = 1000


def seq_newer(a: int, b: int) -> bool:
    """RFC 1982 serial arithmetic on 16 bits: ``a`` comes after ``b``."""
    return 0 < (a - b) % SEQ_MOD < 0x8000


def _unwrap(seq: int, reference: int) -> int:
    """The extended (unwrapped) value of 16-bit ``seq`` nearest to extended ``reference``."""
    delta = (seq - reference) % SEQ_MOD
    if delta >= 0x8000:
        delta -= SEQ_MOD
    return reference + delta


@dataclass(slots=True)
class SequenceRewriter:
    """Input sequence numbers -> output ones, with dropped inputs squeezed out.

    ``output = input + offset - (number of dropped inputs before it)``, on extended (unwrapped)
    numbers so reordering around a drop and around a wrap both come out right. ``rebase`` makes
    the next input follow the last output (a switch to another source).
    """

    offset: int = 0
    highest_in: int | None = None  # extended
    before: int | None = None  # the last output of the previous source (after ``rebase``)
    first_in: int | None = None  # extended: the first input of the current source
    dropped: list[int] = field(default_factory=list)  # extended inputs, sorted

    def _extend(self, seq: int) -> int:
        if self.highest_in is None:
            if self.first_in is None:
                self.first_in = seq
            return seq
        return _unwrap(seq, self.highest_in)

    def _out(self, ext: int) -> int:
        """Extended output of extended input ``ext``."""
        return ext + self.offset - bisect_right(self.dropped, ext)

    def last_output(self) -> int | None:
        """The newest output sequence number so far (a dropped newest input counts as the
        output before it)."""
        if self.highest_in is None:
            return self.before
        return self._out(self.highest_in) % SEQ_MOD

    def drop(self, seq: int) -> None:
        """``seq`` will not be forwarded: later packets move up to fill its place."""
        ext = self._extend(seq)
        if self.highest_in is None or ext > self.highest_in:
            self.highest_in = ext
        index = bisect_right(self.dropped, ext)
        if not (index and self.dropped[index - 1] == ext):
            insort(self.dropped, ext)
        floor = self.highest_in - DROP_MEMORY
        while self.dropped and self.dropped[0] < floor:
            # Forgetting a drop must not move later outputs: fold it into the offset.
            self.dropped.pop(0)
            self.offset -= 1

    def forward(self, seq: int) -> int:
        """The output sequence number for input ``seq`` (which is being forwarded)."""
        ext = self._extend(seq)
        if self.highest_in is None or ext > self.highest_in:
            self.highest_in = ext
        return self._out(ext) % SEQ_MOD

    def rebase(self, seq: int) -> None:
        """Input ``seq`` (of a new source) is to follow the last output directly."""
        last = self.last_output()
        self.before = last
        self.dropped.clear()
        self.highest_in = None
        self.first_in = None
        self.offset = 0 if last is None else last + 1 - seq  # the first source passes through

    def backward(self, out: int) -> int | None:
        """The input sequence number that became output ``out`` (to NACK the source), or None
        when no forwarded input of the current source has that number."""
        if self.highest_in is None:
            return None
        newest = self._out(self.highest_in)
        ext_out = newest + ((out - newest + 0x8000) % SEQ_MOD - 0x8000)
        guess = ext_out - self.offset
        for _ in range(8):  # D() is monotone: the fixed point comes within a few steps
            candidate = ext_out - self.offset + bisect_right(self.dropped, guess)
            if candidate == guess:
                break
            guess = candidate
        if self._out(guess) != ext_out or guess in self.dropped or guess > self.highest_in:
            return None
        if self.before is not None and self.first_in is not None and guess < self.first_in:
            return None  # sent from the previous source
        return guess % SEQ_MOD


class Vp8Fields(NamedTuple):
    """Where the RFC 7741 descriptor keeps its picture id and TL0PICIDX (payload offsets)."""

    picture_id_at: int  # -1: absent
    picture_id_bits: int  # 7 or 15
    tl0_at: int  # -1: absent


NO_VP8_FIELDS = Vp8Fields(-1, 0, -1)


def vp8_fields(payload: bytes | bytearray) -> Vp8Fields:
    """Offsets of the picture id and TL0PICIDX in a VP8 payload descriptor (RFC 7741 4.2)."""
    if len(payload) < 2 or not payload[0] & 0x80:  # no X byte: neither field
        return NO_VP8_FIELDS
    ext = payload[1]
    pos = 2
    picture_at, bits, tl0_at = -1, 0, -1
    if ext & 0x80:  # I
        if pos >= len(payload):
            return NO_VP8_FIELDS
        picture_at = pos
        bits = 15 if payload[pos] & 0x80 else 7
        pos += 2 if bits == 15 else 1
    if ext & 0x40:  # L
        if pos >= len(payload):
            return NO_VP8_FIELDS
        tl0_at = pos
        pos += 1
    if pos > len(payload):
        return NO_VP8_FIELDS
    return Vp8Fields(picture_at, bits, tl0_at)


def read_vp8(payload: bytes | bytearray, fields: Vp8Fields) -> tuple[int | None, int | None]:
    picture = None
    if fields.picture_id_at >= 0:
        at = fields.picture_id_at
        if fields.picture_id_bits == 15:
            picture = ((payload[at] & 0x7F) << 8) | payload[at + 1]
        else:
            picture = payload[at] & 0x7F
    tl0 = payload[fields.tl0_at] if fields.tl0_at >= 0 else None
    return picture, tl0


def write_vp8(payload: bytearray, fields: Vp8Fields, picture: int | None, tl0: int | None) -> None:
    """Store a picture id and TL0PICIDX in place, keeping each field's size (7 or 15 bits)."""
    if picture is not None and fields.picture_id_at >= 0:
        at = fields.picture_id_at
        if fields.picture_id_bits == 15:
            payload[at] = 0x80 | ((picture >> 8) & 0x7F)
            payload[at + 1] = picture & 0xFF
        else:
            payload[at] = picture & 0x7F
    if tl0 is not None and fields.tl0_at >= 0:
        payload[fields.tl0_at] = tl0 & 0xFF


class Rewritten(NamedTuple):
    sequence: int
    timestamp: int
    payload: bytes  # the VP8 payload with its descriptor rewritten (the same bytes otherwise)


@dataclass(slots=True)
class StreamRewriter:
    """One subscriber's continuous video stream built from one source at a time.

    ``switch`` at the first packet (a keyframe) of the new source; ``rewrite`` every forwarded
    packet of the current source; ``skip`` a packet of it that is not forwarded (padding).
    The timestamp of the new source continues from the last one sent plus the wall time since,
    so the receiver's jitter buffer and frame pacing see no jump.
    """

    clock_rate: int = 90_000
    source: int | None = None  # the SSRC being forwarded
    seq: SequenceRewriter = field(default_factory=SequenceRewriter)
    ts_offset: int = 0
    last_ts: int | None = None  # output
    last_at: float = 0.0
    picture_offset: int = 0
    last_picture: int | None = None  # output, 15-bit space
    tl0_offset: int = 0
    last_tl0: int | None = None  # output
    switches: int = 0

    def switch(
        self, ssrc: int, sequence: int, timestamp: int, payload: bytes | bytearray, now: float
    ) -> None:
        """Make the packet (ssrc, sequence, timestamp, payload) the next one of the output."""
        self.seq.rebase(sequence)
        if self.last_ts is None:
            self.ts_offset = 0
        else:
            elapsed = max(1, round((now - self.last_at) * self.clock_rate))
            self.ts_offset = (self.last_ts + elapsed - timestamp) % TS_MOD
        picture, tl0 = read_vp8(payload, vp8_fields(payload))
        if picture is not None and self.last_picture is not None:
            self.picture_offset = (self.last_picture + 1 - picture) % 0x8000
        elif picture is not None:
            self.picture_offset = 0
        if tl0 is not None and self.last_tl0 is not None:
            self.tl0_offset = (self.last_tl0 + 1 - tl0) % 0x100
        elif tl0 is not None:
            self.tl0_offset = 0
        if self.source is not None:
            self.switches += 1
        self.source = ssrc

    def skip(self, sequence: int) -> None:
        self.seq.drop(sequence)

    def rewrite(
        self, sequence: int, timestamp: int, payload: bytes, now: float, vp8: bool = True
    ) -> Rewritten:
        out_seq = self.seq.forward(sequence)
        out_ts = (timestamp + self.ts_offset) % TS_MOD
        if self.last_ts is None or 0 < (out_ts - self.last_ts) % TS_MOD < TS_MOD // 2:
            self.last_ts, self.last_at = out_ts, now
        if not vp8 or (self.picture_offset == 0 and self.tl0_offset == 0):
            self._remember(payload, vp8)
            return Rewritten(out_seq, out_ts, payload)
        fields = vp8_fields(payload)
        picture, tl0 = read_vp8(payload, fields)
        if picture is None and tl0 is None:
            return Rewritten(out_seq, out_ts, payload)
        mask = 0x7FFF if fields.picture_id_bits == 15 else 0x7F
        new_picture = None if picture is None else (picture + self.picture_offset) & mask
        new_tl0 = None if tl0 is None else (tl0 + self.tl0_offset) & 0xFF
        self._note(new_picture, new_tl0)
        out = bytearray(payload)
        write_vp8(out, fields, new_picture, new_tl0)
        return Rewritten(out_seq, out_ts, bytes(out))

    def _remember(self, payload: bytes, vp8: bool) -> None:
        if vp8:
            self._note(*read_vp8(payload, vp8_fields(payload)))

    def _note(self, picture: int | None, tl0: int | None) -> None:
        if picture is not None and (
            self.last_picture is None or 0 < (picture - self.last_picture) % 0x8000 < 0x4000
        ):
            self.last_picture = picture
        if tl0 is not None and (self.last_tl0 is None or 0 < (tl0 - self.last_tl0) % 256 < 128):
            self.last_tl0 = tl0
