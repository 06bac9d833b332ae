"""SFrame (RFC 9605), cipher suite AES_128_GCM_SHA256_128, with the browsers' unencrypted prefix.

A frame on the wire is ``prefix || header || ciphertext || tag``: the prefix (the start of the
VP8 payload header, or the Opus TOC byte) stays in clear so the SFU can still tell keyframes, and
it is authenticated as RFC 9605's metadata (AAD = header || prefix). Pure: no I/O, no clock.
"""

from __future__ import annotations

from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SUITE = 0x0004
KEY_LEN = 16
NONCE_LEN = 12
TAG_LEN = 16
REPLAY_WINDOW = 128
_MAX_U64 = (1 << 64) - 1

#: Bytes left in clear at the start of a frame (design §5): VP8 keyframe, VP8 delta, Opus.
VP8_KEYFRAME_PREFIX = 10
VP8_DELTA_PREFIX = 3
OPUS_PREFIX = 1


class Drop(StrEnum):
    """Why a received frame was dropped; the counters are named after these."""

    UNKNOWN_KEY = "unknown_key"
    AUTH_FAILED = "auth_failed"
    REPLAYED = "replayed"
    MALFORMED = "malformed"


class FrameDropped(Exception):
    def __init__(self, reason: Drop) -> None:
        super().__init__(reason.value)
        self.reason = reason


def _min_bytes(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def encode_header(kid: int, ctr: int) -> bytes:
    """RFC 9605 §4.3: config byte X|K|Y|C, then the long KID and CTR in as few bytes as fit."""
    if not (0 <= kid <= _MAX_U64 and 0 <= ctr <= _MAX_U64):
        raise ValueError("kid and ctr are 64-bit unsigned")
    config = 0
    tail = b""
    if kid < 8:
        config |= kid << 4
    else:
        long_kid = _min_bytes(kid)
        config |= 0x80 | (len(long_kid) - 1) << 4
        tail += long_kid
    if ctr < 8:
        config |= ctr
    else:
        long_ctr = _min_bytes(ctr)
        config |= 0x08 | (len(long_ctr) - 1)
        tail += long_ctr
    return bytes([config]) + tail


def parse_header(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """(kid, ctr, offset just past the header); ``FrameDropped(MALFORMED)`` if it is cut short."""
    if offset >= len(data):
        raise FrameDropped(Drop.MALFORMED)
    config = data[offset]
    pos = offset + 1
    kid = (config >> 4) & 0x07
    if config & 0x80:
        end = pos + kid + 1
        if end > len(data):
            raise FrameDropped(Drop.MALFORMED)
        kid = int.from_bytes(data[pos:end], "big")
        pos = end
    ctr = config & 0x07
    if config & 0x08:
        end = pos + ctr + 1
        if end > len(data):
            raise FrameDropped(Drop.MALFORMED)
        ctr = int.from_bytes(data[pos:end], "big")
        pos = end
    return kid, ctr, pos


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def _expand(secret: bytes, info: bytes, length: int) -> bytes:
    # One HKDF-Expand block is 32 bytes: enough for a 16-byte key and a 12-byte salt.
    return _hmac_sha256(secret, info + b"\x01")[:length]


def derive_key_salt(base_key: bytes, kid: int) -> tuple[bytes, bytes]:
    """RFC 9605 §4.4.2: sframe_key and sframe_salt of ``base_key`` under ``kid``."""
    secret = _hmac_sha256(b"", base_key)  # HKDF-Extract with an empty salt
    suffix = kid.to_bytes(8, "big") + SUITE.to_bytes(2, "big")
    key = _expand(secret, b"SFrame 1.0 Secret key " + suffix, KEY_LEN)
    salt = _expand(secret, b"SFrame 1.0 Secret salt " + suffix, NONCE_LEN)
    return key, salt


class ReplayWindow:
    """The last ``REPLAY_WINDOW`` counters seen under one key, as a bit mask below the highest."""

    __slots__ = ("_highest", "_seen")

    def __init__(self) -> None:
        self._highest = -1
        self._seen = 0

    def fresh(self, ctr: int) -> bool:
        if ctr > self._highest:
            return True
        behind = self._highest - ctr
        return behind < REPLAY_WINDOW and not (self._seen >> behind) & 1

    def mark(self, ctr: int) -> None:
        if ctr > self._highest:
            shift = ctr - self._highest
            self._seen = ((self._seen << shift) | 1) & ((1 << REPLAY_WINDOW) - 1)
            self._highest = ctr
        else:
            self._seen |= 1 << (self._highest - ctr)


class FrameKey:
    """One sender's base key under one KID, ready to seal and open frames."""

    __slots__ = ("_aead", "_salt", "kid", "window")

    def __init__(self, base_key: bytes, kid: int) -> None:
        if len(base_key) != KEY_LEN:
            raise ValueError("a base key is 16 bytes")
        key, salt = derive_key_salt(base_key, kid)
        self.kid = kid
        self._aead = AESGCM(key)
        self._salt = int.from_bytes(salt, "big")
        self.window = ReplayWindow()

    def _nonce(self, ctr: int) -> bytes:
        return (self._salt ^ ctr).to_bytes(NONCE_LEN, "big")

    def seal(self, ctr: int, metadata: bytes, plaintext: bytes) -> bytes:
        """RFC 9605 encrypt: ``header || ciphertext || tag``."""
        header = encode_header(self.kid, ctr)
        return header + self._aead.encrypt(self._nonce(ctr), plaintext, header + metadata)

    def open(self, header: bytes, ctr: int, metadata: bytes, sealed: bytes) -> bytes:
        """RFC 9605 decrypt of a parsed frame; marks ``ctr`` seen only once the tag checks."""
        if len(sealed) < TAG_LEN:
            raise FrameDropped(Drop.MALFORMED)
        if not self.window.fresh(ctr):
            raise FrameDropped(Drop.REPLAYED)
        try:
            plaintext = self._aead.decrypt(self._nonce(ctr), sealed, header + metadata)
        except InvalidTag:
            raise FrameDropped(Drop.AUTH_FAILED) from None
        self.window.mark(ctr)
        return plaintext


def prefix_length(codec: str, frame: bytes) -> int:
    """Bytes of ``frame`` kept in clear: VP8 keyframe (bit 0 of byte 0 clear) 10, delta 3,
    Opus 1; never more than the frame has."""
    if not frame:
        return 0
    if codec == "vp8":
        wanted = VP8_DELTA_PREFIX if frame[0] & 0x01 else VP8_KEYFRAME_PREFIX
    else:
        wanted = OPUS_PREFIX
    return min(wanted, len(frame))


def encrypt_frame(codec: str, key: FrameKey, ctr: int, frame: bytes) -> bytes:
    """``prefix || header || ciphertext || tag`` of an encoded frame (codec "vp8" or "opus")."""
    cut = prefix_length(codec, frame)
    prefix = frame[:cut]
    return prefix + key.seal(ctr, prefix, frame[cut:])


def frame_kid(codec: str, data: bytes) -> tuple[int, int, int, int]:
    """(kid, ctr, prefix length, header end) of an encrypted frame, to pick its key."""
    cut = prefix_length(codec, data)
    kid, ctr, end = parse_header(data, cut)
    return kid, ctr, cut, end


def decrypt_frame(key: FrameKey, data: bytes, ctr: int, cut: int, end: int) -> bytes:
    """The encoded frame back from ``encrypt_frame``'s output, parsed by ``frame_kid``."""
    prefix = data[:cut]
    return prefix + key.open(data[cut:end], ctr, prefix, data[end:])
