"""What a device signs with its Ed25519 key: the byte formats, defined once for both sides.

The server checks these signatures (``signaling.signatures``, ``directory.devices``); a client
makes them (``signaling.sdk.client``). Each message starts with its own context string, so a
signature made for one purpose never verifies for another.
"""

from __future__ import annotations

#: Starts the sign-in message; the account id, device id and nonce follow, one per line.
SIGNIN_CONTEXT = "callbook-signin-v1"
#: Starts the media-key message; the raw 32-byte X25519 public key follows.
MEDIA_KEY_CONTEXT = b"callbook media key v1\x00"


def signin_message(account_id: str, device_id: str, nonce: str) -> bytes:
    """What a device signs to sign in: domain-separated and bound to the account and device."""
    return f"{SIGNIN_CONTEXT}\n{account_id}\n{device_id}\n{nonce}".encode()


def media_key_message(media_key_raw: bytes) -> bytes:
    """What a device signs to publish its X25519 media key (docs/e2ee.md)."""
    return MEDIA_KEY_CONTEXT + media_key_raw
