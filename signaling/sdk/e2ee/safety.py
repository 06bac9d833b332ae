"""The call's safety number (design §7): 30 digits every participant can read out and compare."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

LABEL = b"callbook safety number v1\x00"
GROUPS = 6


def safety_number(devices: Iterable[tuple[bytes, bytes]]) -> str:
    """From every participant's (Ed25519 device key, X25519 media key), raw, you included."""
    digest = hashlib.sha256(LABEL + b"".join(sorted(d + m for d, m in devices))).digest()
    return " ".join(
        f"{int.from_bytes(digest[5 * i : 5 * i + 5], 'big') % 100000:05d}" for i in range(GROUPS)
    )
