"""A sender's media key sealed to one recipient device (design §4), and the device media key's
signature (design §1). Pure: the ephemeral key can be passed in, for test vectors.

blob = eph_pub (32) || sealed (16-byte base key + 16-byte tag) || Ed25519 signature (64)
"""

from __future__ import annotations

import base64

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MEDIA_KEY_LABEL = b"callbook media key v1\x00"
BLOB_LEN = 128
BASE_KEY_LEN = 16
MAX_KID = 2**53 - 1


class BlobError(ValueError):
    """The blob does not open: wrong length, bad signature, or sealed for someone else."""


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def sign_media_key(signin_key: Ed25519PrivateKey, media_public: bytes) -> bytes:
    """``media_key_signature``: the device's sign-in key vouches for its X25519 media key."""
    return signin_key.sign(MEDIA_KEY_LABEL + media_public)


def media_key_signed(device_key: bytes, media_public: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(device_key).verify(
            signature, MEDIA_KEY_LABEL + media_public
        )
    except (InvalidSignature, ValueError):
        return False
    return len(media_public) == 32


def context(call_id: str, sender: str, recipient: str, kid: int) -> bytes:
    if not 0 <= kid <= MAX_KID:
        raise ValueError("kid is 0..2**53-1")
    return b"".join(
        (
            MEDIA_KEY_LABEL,
            call_id.encode(), b"\x00",
            sender.encode(), b"\x00",
            recipient.encode(), b"\x00",
            kid.to_bytes(8, "big"),
        )
    )  # fmt: skip


def _aead(shared: bytes, eph_pub: bytes, recipient_pub: bytes, ctx: bytes) -> tuple[AESGCM, bytes]:
    okm = HKDF(hashes.SHA256(), 44, salt=eph_pub + recipient_pub, info=ctx).derive(shared)
    return AESGCM(okm[:32]), okm[32:44]


def seal(
    base_key: bytes,
    *,
    call_id: str,
    sender: str,
    recipient: str,
    kid: int,
    recipient_media_key: bytes,
    signin_key: Ed25519PrivateKey,
    ephemeral: X25519PrivateKey | None = None,
) -> bytes:
    """The 128-byte blob carrying ``base_key`` from ``sender`` to ``recipient``."""
    if len(base_key) != BASE_KEY_LEN:
        raise ValueError("a base key is 16 bytes")
    eph = ephemeral if ephemeral is not None else X25519PrivateKey.generate()
    eph_pub = raw_public(eph)
    ctx = context(call_id, sender, recipient, kid)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_media_key))
    aead, nonce = _aead(shared, eph_pub, recipient_media_key, ctx)
    sealed = aead.encrypt(nonce, base_key, ctx)
    return eph_pub + sealed + signin_key.sign(ctx + eph_pub + sealed)


def open_blob(
    blob: bytes,
    *,
    call_id: str,
    sender: str,
    recipient: str,
    kid: int,
    media_key: X25519PrivateKey,
    sender_device_key: bytes,
) -> bytes:
    """The base key inside ``blob``; ``BlobError`` if it is not a blob from that sender to us
    for that call and kid."""
    if len(blob) != BLOB_LEN:
        raise BlobError("a key blob is 128 bytes")
    eph_pub, sealed, signature = blob[:32], blob[32:64], blob[64:]
    try:
        ctx = context(call_id, sender, recipient, kid)
        Ed25519PublicKey.from_public_bytes(sender_device_key).verify(
            signature, ctx + eph_pub + sealed
        )
        shared = media_key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        aead, nonce = _aead(shared, eph_pub, raw_public(media_key), ctx)
        return aead.decrypt(nonce, sealed, ctx)
    except (InvalidSignature, InvalidTag, ValueError) as exc:
        raise BlobError("the key blob does not open") from exc
