"""The frame scanner in front of aiohttp's reader: every split of a stream of masked frames
passes, and an unmasked frame is refused exactly when its header arrives."""

from __future__ import annotations

import os
import struct

import pytest

from signaling.ws.masking import MaskCheck


def _frame(payload: bytes, *, masked: bool = True, opcode: int = 0x1, fin: bool = True) -> bytes:
    size = len(payload)
    bit = 0x80 if masked else 0
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes([first, bit | size])
    elif size < 65536:
        head = bytes([first, bit | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first, bit | 127]) + struct.pack("!Q", size)
    return head + (os.urandom(4) + payload if masked else payload)


STREAM = b"".join(
    (
        _frame(b'{"type":"ping"}'),
        _frame(b""),
        _frame(b"x" * 125),
        _frame(b"y" * 126),
        _frame(b"z" * 70_000),
        _frame(b"part", fin=False),
        _frame(b"ping", opcode=0x9),  # a control frame between fragments
        _frame(b"rest", opcode=0x0),
        _frame(b"\x03\xe8", opcode=0x8),
    )
)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, 64, 1000, 65_536, len(STREAM)])
def test_masked_frames_pass_however_the_bytes_are_split(size: int) -> None:
    check = MaskCheck()
    for start in range(0, len(STREAM), size):
        assert check.feed(STREAM[start : start + size])
    assert not check.refused


@pytest.mark.parametrize("split", [0, 1, 2, 3, 10, 200])
def test_an_unmasked_frame_is_refused_when_its_header_arrives(split: int) -> None:
    good = _frame(b"a" * 300)
    bad = _frame(b'{"type":"ping"}', masked=False)
    check = MaskCheck()
    stream = good + bad
    cut = len(good) + 1  # the mask bit is in the second byte of a header
    assert check.feed(stream[: cut - split] if split <= cut else b"")
    assert not check.feed(stream[cut - split :])
    assert check.refused
