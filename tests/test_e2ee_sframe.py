"""SFrame (RFC 9605) against the RFC's own test vectors, and the frame rules of design §5."""

from __future__ import annotations

import pytest

from signaling.sdk.e2ee.sframe import (
    Drop,
    FrameDropped,
    FrameKey,
    ReplayWindow,
    decrypt_frame,
    derive_key_salt,
    encode_header,
    encrypt_frame,
    frame_kid,
    parse_header,
    prefix_length,
)

# RFC 9605 Appendix C.1 (a selection covering every KID and CTR length).
HEADERS = [
    (0x0, 0x0, "00"),
    (0x1, 0x0100000000000000, "1f0100000000000000"),
    (0x1, 0xFFFFFFFFFFFFFFFF, "1fffffffffffffffff"),
    (0xFF, 0x0, "80ff"),
    (0xFF, 0x1, "81ff"),
    (0xFF, 0xFF, "88ffff"),
    (0xFF, 0x100, "89ff0100"),
    (0xFF, 0xFFFFFFFFFFFFFFFF, "8fffffffffffffffffff"),
    (0x100, 0x0, "900100"),
    (0x100, 0xFF, "980100ff"),
    (0xFFFF, 0x10000, "9affff010000"),
    (0x10000, 0x0, "a0010000"),
    (0xFFFFFF, 0x1000000, "abffffff01000000"),
    (0x1000000, 0x100000000, "bc010000000100000000"),
    (0xFFFFFFFF, 0xFFFFFFFF, "bbffffffffffffffff"),
    (0x100000000, 0x10000000000, "cd0100000000010000000000"),
    (0xFFFFFFFFFF, 0x1, "c1ffffffffff"),
    (0x10000000000, 0x1000000000000, "de01000000000001000000000000"),
    (0xFFFFFFFFFFFF, 0xFFFFFFFFFFFFFF, "deffffffffffffffffffffffffff"),
    (0x1000000000000, 0x100000000000000, "ef010000000000000100000000000000"),
    (0xFFFFFFFFFFFFFF, 0x100, "e9ffffffffffffff0100"),
    (0x100000000000000, 0xFFFFFFFFFFFFFFFF, "ff0100000000000000ffffffffffffffff"),
    (0xFFFFFFFFFFFFFFFF, 0x0, "f0ffffffffffffffff"),
    (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, "ffffffffffffffffffffffffffffffffff"),
]


@pytest.mark.parametrize(("kid", "ctr", "header"), HEADERS)
def test_rfc9605_header_vectors(kid: int, ctr: int, header: str) -> None:
    raw = bytes.fromhex(header)
    assert encode_header(kid, ctr) == raw
    assert parse_header(raw + b"rest") == (kid, ctr, len(raw))


# RFC 9605 Appendix C.3, cipher_suite 0x0004.
C3 = {
    "kid": 0x123,
    "ctr": 0x4567,
    "base_key": "000102030405060708090a0b0c0d0e0f",
    "sframe_key": "d34f547f4ca4f9a7447006fe7fcbf768",
    "sframe_salt": "75234edefe07819026751816",
    "metadata": "4945544620534672616d65205747",
    "pt": "64726166742d696574662d736672616d652d656e63",
    "ct": "9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb",
}


def test_rfc9605_key_derivation_vector() -> None:
    key, salt = derive_key_salt(bytes.fromhex(C3["base_key"]), 0x123)
    assert (key.hex(), salt.hex()) == (C3["sframe_key"], C3["sframe_salt"])


def test_rfc9605_encryption_vector() -> None:
    base_key, metadata = bytes.fromhex(C3["base_key"]), bytes.fromhex(C3["metadata"])
    ct = bytes.fromhex(C3["ct"])
    assert FrameKey(base_key, 0x123).seal(0x4567, metadata, bytes.fromhex(C3["pt"])) == ct
    kid, ctr, end = parse_header(ct)
    assert (kid, ctr) == (0x123, 0x4567)
    opened = FrameKey(base_key, kid).open(ct[:end], ctr, metadata, ct[end:])
    assert opened == bytes.fromhex(C3["pt"])


VP8_KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(range(60))
VP8_DELTA = bytes([0x31, 0x05, 0x00]) + bytes(range(40))
OPUS = bytes([0x78]) + bytes(range(70))


@pytest.mark.parametrize(
    ("codec", "frame", "prefix"),
    [
        ("vp8", VP8_KEY, 10),
        ("vp8", VP8_DELTA, 3),
        ("opus", OPUS, 1),
        ("vp8", bytes([0x10, 1, 2]), 3),  # shorter than its prefix: all of it
        ("vp8", b"", 0),
    ],
)
def test_prefix_rule(codec: str, frame: bytes, prefix: int) -> None:
    assert prefix_length(codec, frame) == prefix


@pytest.mark.parametrize(("codec", "frame"), [("vp8", VP8_KEY), ("vp8", VP8_DELTA), ("opus", OPUS)])
def test_frames_round_trip_with_their_prefix_in_clear(codec: str, frame: bytes) -> None:
    key = FrameKey(bytes(16), 3)
    wire = encrypt_frame(codec, key, 7, frame)
    cut = prefix_length(codec, frame)
    assert wire[:cut] == frame[:cut]
    assert frame[cut:] not in wire
    kid, ctr, got_cut, end = frame_kid(codec, wire)
    assert (kid, ctr, got_cut) == (3, 7, cut)
    assert decrypt_frame(FrameKey(bytes(16), 3), wire, ctr, got_cut, end) == frame


def _tampered(wire: bytes, index: int) -> bytes:
    return wire[:index] + bytes([wire[index] ^ 0x01]) + wire[index + 1 :]


@pytest.mark.parametrize(
    ("name", "mangle", "reason"),
    [
        ("prefix changed", lambda w: _tampered(w, 4), Drop.AUTH_FAILED),
        ("ciphertext changed", lambda w: _tampered(w, 20), Drop.AUTH_FAILED),
        ("tag changed", lambda w: _tampered(w, len(w) - 1), Drop.AUTH_FAILED),
        ("truncated into the tag", lambda w: w[:-5], Drop.AUTH_FAILED),
        ("truncated below a tag", lambda w: w[:20], Drop.MALFORMED),
        ("truncated inside the header", lambda w: w[:10] + bytes([0x9F]), Drop.MALFORMED),
    ],
)
def test_bad_frames_are_dropped_with_a_reason(name: str, mangle: object, reason: Drop) -> None:
    wire = encrypt_frame("vp8", FrameKey(bytes(16), 1), 300, VP8_KEY)
    bad = mangle(wire)  # type: ignore[operator]
    with pytest.raises(FrameDropped) as caught:
        kid, ctr, cut, end = frame_kid("vp8", bad)
        decrypt_frame(FrameKey(bytes(16), kid), bad, ctr, cut, end)
    assert caught.value.reason is reason, name


def test_a_wrong_key_fails_authentication() -> None:
    wire = encrypt_frame("opus", FrameKey(bytes(16), 1), 0, OPUS)
    kid, ctr, cut, end = frame_kid("opus", wire)
    with pytest.raises(FrameDropped) as caught:
        decrypt_frame(FrameKey(bytes([1]) * 16, kid), wire, ctr, cut, end)
    assert caught.value.reason is Drop.AUTH_FAILED


def test_replayed_frames_are_refused_and_forgeries_do_not_advance_the_window() -> None:
    sender, receiver = FrameKey(bytes(16), 0), FrameKey(bytes(16), 0)

    def receive(wire: bytes) -> Drop | None:
        _, ctr, cut, end = frame_kid("opus", wire)
        try:
            decrypt_frame(receiver, wire, ctr, cut, end)
        except FrameDropped as dropped:
            return dropped.reason
        return None

    first = encrypt_frame("opus", sender, 5, OPUS)
    assert receive(first) is None
    assert receive(first) is Drop.REPLAYED
    forged = _tampered(encrypt_frame("opus", sender, 1000, OPUS), 10)
    assert receive(forged) is Drop.AUTH_FAILED
    # The forgery at 1000 did not move the window: 6 is still fresh.
    assert receive(encrypt_frame("opus", sender, 6, OPUS)) is None


@pytest.mark.parametrize(
    ("seen", "ctr", "fresh"),
    [
        ([], 0, True),
        ([0], 0, False),
        ([5], 3, True),
        ([5, 3], 3, False),
        ([200], 73, True),  # 127 behind: still inside the window
        ([200], 72, False),  # 128 behind: too old
        ([0, 1000], 999, True),
        ([0, 1000], 0, False),
    ],
)
def test_replay_window(seen: list[int], ctr: int, fresh: bool) -> None:
    window = ReplayWindow()
    for value in seen:
        window.mark(value)
    assert window.fresh(ctr) is fresh
