"""The E2EE byte formats of docs/e2ee.md, written again in Python from the design alone.

The browser's JavaScript (signaling/web/sdk/sframe.js, keyblob.js, safety.js) is checked against
this on the same inputs; nothing here is used by the server or the SDK.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

SUITE = 0x0004
MEDIA_KEY_LABEL = b"callbook media key v1\x00"
SAFETY_LABEL = b"callbook safety number v1\x00"


def sframe_key_salt(base_key: bytes, kid: int) -> tuple[bytes, bytes]:
    """RFC 9605 §4.4.2 for AES_128_GCM_SHA256_128."""
    mac = HMAC(b"", hashes.SHA256())
    mac.update(base_key)
    secret = mac.finalize()
    suffix = kid.to_bytes(8, "big") + SUITE.to_bytes(2, "big")
    key = HKDFExpand(hashes.SHA256(), 16, b"SFrame 1.0 Secret key " + suffix).derive(secret)
    salt = HKDFExpand(hashes.SHA256(), 12, b"SFrame 1.0 Secret salt " + suffix).derive(secret)
    return key, salt


def _minimal(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def sframe_header(kid: int, ctr: int) -> bytes:
    config, tail = 0, b""
    if kid < 8:
        config |= kid << 4
    else:
        kid_bytes = _minimal(kid)
        config |= 0x80 | (len(kid_bytes) - 1) << 4
        tail += kid_bytes
    if ctr < 8:
        config |= ctr
    else:
        ctr_bytes = _minimal(ctr)
        config |= 0x08 | (len(ctr_bytes) - 1)
        tail += ctr_bytes
    return bytes([config]) + tail


def sframe_seal(base_key: bytes, kid: int, ctr: int, metadata: bytes, plaintext: bytes) -> bytes:
    key, salt = sframe_key_salt(base_key, kid)
    nonce = bytes(a ^ b for a, b in zip(salt, ctr.to_bytes(12, "big"), strict=True))
    header = sframe_header(kid, ctr)
    return header + AESGCM(key).encrypt(nonce, plaintext, header + metadata)


def prefix_length(kind: str, frame: bytes) -> int:
    if not frame:
        return 0
    wanted = (10 if frame[0] & 1 == 0 else 3) if kind == "video" else 1
    return min(wanted, len(frame))


def encrypt_frame(base_key: bytes, kid: int, ctr: int, kind: str, frame: bytes) -> bytes:
    prefix = frame[: prefix_length(kind, frame)]
    return prefix + sframe_seal(base_key, kid, ctr, prefix, frame[len(prefix) :])


def media_key_message(media_public: bytes) -> bytes:
    return MEDIA_KEY_LABEL + media_public


def blob_context(call_id: str, sender: str, recipient: str, kid: int) -> bytes:
    return (
        MEDIA_KEY_LABEL
        + call_id.encode()
        + b"\x00"
        + sender.encode()
        + b"\x00"
        + recipient.encode()
        + b"\x00"
        + kid.to_bytes(8, "big")
    )


def _wrap(shared: bytes, eph_pub: bytes, recipient_pub: bytes, ctx: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(hashes.SHA256(), 44, salt=eph_pub + recipient_pub, info=ctx).derive(shared)
    return okm[:32], okm[32:44]


def seal_blob(
    *,
    base_key: bytes,
    call_id: str,
    sender: str,
    recipient: str,
    kid: int,
    recipient_media: bytes,
    signing_key: Ed25519PrivateKey,
    ephemeral: X25519PrivateKey,
) -> bytes:
    eph_pub = ephemeral.public_key().public_bytes_raw()
    ctx = blob_context(call_id, sender, recipient, kid)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_media))
    key, nonce = _wrap(shared, eph_pub, recipient_media, ctx)
    sealed = AESGCM(key).encrypt(nonce, base_key, ctx)
    return eph_pub + sealed + signing_key.sign(ctx + eph_pub + sealed)


def open_blob(
    *,
    blob: bytes,
    call_id: str,
    sender: str,
    recipient: str,
    kid: int,
    media_key: X25519PrivateKey,
    sender_device_key: bytes,
) -> bytes:
    eph_pub, sealed, signature = blob[:32], blob[32:64], blob[64:]
    ctx = blob_context(call_id, sender, recipient, kid)
    Ed25519PublicKey.from_public_bytes(sender_device_key).verify(signature, ctx + eph_pub + sealed)
    shared = media_key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    key, nonce = _wrap(shared, eph_pub, media_key.public_key().public_bytes_raw(), ctx)
    return AESGCM(key).decrypt(nonce, sealed, ctx)


def safety_number(keys: list[tuple[bytes, bytes]]) -> str:
    """``keys``: (device_key, media_key) raw of every participant."""
    digest = hashlib.sha256(SAFETY_LABEL + b"".join(sorted(d + m for d, m in keys))).digest()
    groups = (int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 100000 for i in range(6))
    return " ".join(f"{g:05d}" for g in groups)


def parse_frame(kind: str, data: bytes) -> tuple[bytes, int, int, bytes, bytes] | None:
    """(prefix, kid, ctr, header, sealed) of an encrypted frame, or None when it is not one."""
    cut = prefix_length(kind, data)
    if cut >= len(data):
        return None
    config = data[cut]
    kid_len = ((config >> 4) & 7) + 1 if config & 0x80 else 0
    ctr_len = (config & 7) + 1 if config & 0x08 else 0
    end = cut + 1 + kid_len + ctr_len
    if len(data) - end < 16:
        return None
    kid = int.from_bytes(data[cut + 1 : cut + 1 + kid_len], "big") if kid_len else config >> 4 & 7
    ctr = int.from_bytes(data[cut + 1 + kid_len : end], "big") if ctr_len else config & 7
    return data[:cut], kid, ctr, data[cut:end], data[end:]


def decrypt_frame(base_key: bytes, kind: str, data: bytes) -> bytes:
    """The clear frame; raises InvalidTag when ``base_key`` is not the one it was sealed with."""
    parts = parse_frame(kind, data)
    if parts is None:
        raise ValueError("not an encrypted frame")
    prefix, kid, ctr, header, sealed = parts
    key, salt = sframe_key_salt(base_key, kid)
    nonce = bytes(a ^ b for a, b in zip(salt, ctr.to_bytes(12, "big"), strict=True))
    return prefix + AESGCM(key).decrypt(nonce, sealed, header + prefix)
