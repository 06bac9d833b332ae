"""Device media keys: the X25519 key a device publishes beside its Ed25519 sign-in key, signed
by it, so that other devices can send it their media keys end to end (docs/e2ee.md).

The store keeps only the public key and its signature; the server checks the signature once,
when the key is published, and never uses the key itself.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from directory.errors import InvalidMediaKey

#: What the device signs, followed by the raw 32-byte X25519 public key.
CONTEXT = b"callbook media key v1\x00"

# Clamping makes every X25519 scalar a multiple of the cofactor, so a point of small order
# gives the all-zero secret with any scalar (which ``cryptography`` refuses): one exchange with
# a fixed scalar finds them all.
_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def _decode(encoded: str, length: int, what: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidMediaKey(f"The {what} is not valid base64url.") from exc
    if len(raw) != length:
        raise InvalidMediaKey(f"The {what} has {length} bytes; this one has {len(raw)}.")
    return raw


def signed_message(media_key_raw: bytes) -> bytes:
    return CONTEXT + media_key_raw


def check(device_key: Ed25519PublicKey, media_key: str, signature: str) -> tuple[str, str]:
    """The media key and signature as stored (unpadded base64url) once ``signature`` verifies
    with the device's sign-in key; ``InvalidMediaKey`` otherwise."""
    raw = _decode(media_key, 32, "media key")
    sig = _decode(signature, 64, "media key signature")
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError as exc:
        raise InvalidMediaKey("The media key is a point of small order on X25519.") from exc
    try:
        device_key.verify(sig, signed_message(raw))
    except InvalidSignature as exc:
        raise InvalidMediaKey(
            "The media key's signature does not verify with this device's key."
        ) from exc
    return _encode(raw), _encode(sig)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
