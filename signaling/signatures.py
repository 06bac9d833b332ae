"""Checking what devices sign: media keys here, at the REST edge, before the address book
stores them; sign-in signatures in ``directory.devices`` over the message given here.

The byte formats are the protocol's (``signaling.protocol.signing``), so the address book
never defines what a client signs: it stores keys and checks signatures over bytes it is
handed. The store keeps only a media key and its signature; the server checks the signature
once, when the key is published, and never uses the key itself (docs/e2ee.md).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from directory.devices import MediaKey, parse_public_key
from directory.errors import InvalidMediaKey
from signaling.protocol.bodies import DeviceEnrollment
from signaling.protocol.signing import media_key_message

# Clamping makes every X25519 scalar a multiple of the cofactor, so a point of small order
# gives the all-zero secret with any scalar (which ``cryptography`` refuses): one exchange with
# a fixed scalar finds them all.
_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def enrolled_media_key(device: DeviceEnrollment) -> MediaKey | None:
    """The media key a new device enrolls with (both fields or neither), once it verifies."""
    if device.media_key is None and device.media_key_signature is None:
        return None
    if device.media_key is None or device.media_key_signature is None:
        raise InvalidMediaKey("Give both media_key and media_key_signature, or neither.")
    return check_media_key(device.public_key, device.media_key, device.media_key_signature)


def check_media_key(public_key: str, media_key: str, signature: str) -> MediaKey:
    """The media key and signature as stored (unpadded base64url) once ``signature`` verifies
    with the device's sign-in key ``public_key``; ``InvalidMediaKey`` otherwise (and
    ``InvalidPublicKey`` for a sign-in key that is not one)."""
    device_key = parse_public_key(public_key)
    raw = _decode(media_key, 32, "media key")
    sig = _decode(signature, 64, "media key signature")
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError as exc:
        raise InvalidMediaKey("The media key is a point of small order on X25519.") from exc
    _verify(device_key, sig, raw)
    return _encode(raw), _encode(sig)


def _verify(device_key: Ed25519PublicKey, sig: bytes, raw: bytes) -> None:
    try:
        device_key.verify(sig, media_key_message(raw))
    except InvalidSignature as exc:
        raise InvalidMediaKey(
            "The media key's signature does not verify with this device's key."
        ) from exc


def _decode(encoded: str, length: int, what: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidMediaKey(f"The {what} is not valid base64url.") from exc
    if len(raw) != length:
        raise InvalidMediaKey(f"The {what} has {length} bytes; this one has {len(raw)}.")
    return raw


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
