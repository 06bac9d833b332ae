"""The rewriting that keeps a forwarded stream continuous: padding drops and layer switches."""

from __future__ import annotations

import pytest

from media.continuity import (
    SequenceRewriter,
    StreamRewriter,
    read_vp8,
    vp8_fields,
    write_vp8,
)


def run(ops: list[tuple[str, int]]) -> list[int | None]:
    rw = SequenceRewriter()
    out: list[int | None] = []
    for op, seq in ops:
        if op == "drop":
            rw.drop(seq)
            out.append(None)
        elif op == "rebase":
            rw.rebase(seq)
            out.append(rw.forward(seq))
        else:
            out.append(rw.forward(seq))
    return out


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        # nothing dropped: numbers pass through
        ([("fwd", 10), ("fwd", 11), ("fwd", 12)], [10, 11, 12]),
        # a padding packet in the middle: the next one takes its number
        ([("fwd", 10), ("drop", 11), ("fwd", 12), ("fwd", 13)], [10, None, 11, 12]),
        # two drops in a row
        ([("fwd", 1), ("drop", 2), ("drop", 3), ("fwd", 4)], [1, None, None, 2]),
        # reordered: 12 arrives after 13 and after the drop of 11 -> still 11 and 12
        ([("fwd", 10), ("drop", 11), ("fwd", 13), ("fwd", 12)], [10, None, 12, 11]),
        # a packet older than a drop keeps its number
        ([("fwd", 10), ("drop", 12), ("fwd", 11), ("fwd", 13)], [10, None, 11, 12]),
        # drops across the 16-bit wrap
        ([("fwd", 65534), ("drop", 65535), ("fwd", 0), ("fwd", 1)], [65534, None, 65535, 0]),
        # a switch to a new source continues after the last output
        ([("fwd", 100), ("fwd", 101), ("rebase", 7000), ("fwd", 7001)], [100, 101, 102, 103]),
        # a switch right after a dropped packet continues after the last forwarded one
        ([("fwd", 100), ("drop", 101), ("rebase", 5), ("fwd", 6)], [100, None, 101, 102]),
        # a switch that wraps
        ([("fwd", 65535), ("rebase", 40), ("fwd", 41)], [65535, 0, 1]),
    ],
)
def test_sequence_rewriting(ops: list[tuple[str, int]], expected: list[int | None]) -> None:
    assert run(ops) == expected


def test_backward_maps_outputs_to_inputs_around_drops() -> None:
    rw = SequenceRewriter()
    rw.forward(65000)
    rw.rebase(5000)  # this source's 5000 becomes output 65001
    for seq in range(5000, 5010):
        if seq in (5003, 5004):
            rw.drop(seq)
        else:
            rw.forward(seq)
    forward = {rw.forward(s): s for s in range(5000, 5010) if s not in (5003, 5004)}
    for out, source in forward.items():
        assert rw.backward(out) == source
    assert rw.backward(200) is None  # never sent


def test_backward_refuses_outputs_of_the_previous_source() -> None:
    rw = SequenceRewriter()
    for seq in range(10, 20):
        rw.forward(seq)
    rw.rebase(900)
    rw.forward(900)
    assert rw.backward(20) == 900
    assert rw.backward(15) is None


def test_many_drops_are_forgotten_without_moving_later_numbers() -> None:
    rw = SequenceRewriter()
    out = []
    for seq in range(0, 5000):
        if seq % 2:
            rw.drop(seq)
        else:
            out.append(rw.forward(seq))
    assert out == list(range(2500))
    assert len(rw.dropped) <= 1001


def descriptor(picture: int | None, tl0: int | None, bits: int = 15, start: bool = True) -> bytes:
    """A VP8 payload descriptor (RFC 7741) plus a one-byte payload header."""
    x = picture is not None or tl0 is not None
    first = (0x80 if x else 0) | (0x10 if start else 0)
    out = bytearray([first])
    if x:
        out.append((0x80 if picture is not None else 0) | (0x40 if tl0 is not None else 0))
        if picture is not None:
            if bits == 15:
                out += bytes([0x80 | (picture >> 8), picture & 0xFF])
            else:
                out.append(picture & 0x7F)
        if tl0 is not None:
            out.append(tl0)
    return bytes(out) + b"\x00payload"


@pytest.mark.parametrize(
    ("picture", "tl0", "bits"),
    [(0x1234, 7, 15), (0x7FFF, 255, 15), (100, None, 7), (None, 9, 15), (None, None, 15)],
)
def test_vp8_fields_read_and_write_back(picture: int | None, tl0: int | None, bits: int) -> None:
    payload = bytearray(descriptor(picture, tl0, bits))
    fields = vp8_fields(payload)
    assert read_vp8(payload, fields) == (picture, tl0)
    write_vp8(payload, fields, None if picture is None else 5, None if tl0 is None else 6)
    assert read_vp8(payload, fields) == (
        None if picture is None else 5,
        None if tl0 is None else 6,
    )
    assert payload.endswith(b"\x00payload")


@pytest.mark.parametrize("payload", [b"", b"\x80", b"\x80\x80", b"\x80\xc0\x81"])
def test_vp8_fields_of_truncated_descriptors_are_absent(payload: bytes) -> None:
    fields = vp8_fields(payload)
    assert read_vp8(payload, fields) in ((None, None),) or fields.picture_id_at < len(payload)


def test_a_switch_continues_sequence_timestamp_picture_id_and_tl0() -> None:
    rw = StreamRewriter()
    low = descriptor(300, 20)
    rw.switch(111, 1000, 90_000, low, now=10.0)
    a = rw.rewrite(1000, 90_000, low, now=10.0)
    b = rw.rewrite(1001, 93_000, descriptor(301, 21), now=10.033)
    assert (a.sequence, a.timestamp, read_vp8(a.payload, vp8_fields(a.payload))) == (
        1000, 90_000, (300, 20),
    )  # fmt: skip
    assert (b.sequence, b.timestamp) == (1001, 93_000)
    # the high layer: another SSRC, numbers and ids far away; 0.1 s later
    high = descriptor(9000, 200)
    rw.switch(222, 50_000, 4_000_000_000, high, now=10.133)
    c = rw.rewrite(50_000, 4_000_000_000, high, now=10.133)
    d = rw.rewrite(50_001, 4_000_003_000, descriptor(9001, 201), now=10.166)
    assert c.sequence == 1002 and d.sequence == 1003
    assert c.timestamp == 93_000 + 9000  # 0.1 s of 90 kHz after the last one sent
    assert (d.timestamp - c.timestamp) % (1 << 32) == 3000
    assert read_vp8(c.payload, vp8_fields(c.payload)) == (302, 22)
    assert read_vp8(d.payload, vp8_fields(d.payload)) == (303, 23)
    assert c.payload.endswith(b"\x00payload") and rw.switches == 1


def test_picture_ids_wrap_in_their_own_width() -> None:
    rw = StreamRewriter()
    rw.switch(1, 0, 0, descriptor(0x7FFE, 255), now=0.0)
    rw.rewrite(0, 0, descriptor(0x7FFE, 255), now=0.0)
    rw.switch(2, 10, 0, descriptor(5, 3), now=0.1)
    out = rw.rewrite(10, 0, descriptor(5, 3), now=0.1)
    assert read_vp8(out.payload, vp8_fields(out.payload)) == (0x7FFF, 0)
    nxt = rw.rewrite(11, 3000, descriptor(6, 3), now=0.13)
    assert read_vp8(nxt.payload, vp8_fields(nxt.payload)) == (0, 0)


def test_skipped_padding_inside_a_layer_leaves_no_hole() -> None:
    rw = StreamRewriter()
    rw.switch(1, 10, 0, descriptor(1, 1), now=0.0)
    assert rw.rewrite(10, 0, descriptor(1, 1), now=0.0).sequence == 10
    rw.skip(11)
    assert rw.rewrite(12, 3000, descriptor(2, 1), now=0.03).sequence == 11
