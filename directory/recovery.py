"""Recovery codes: shown once at sign-up, kept only as an argon2id hash."""

from __future__ import annotations

import asyncio
import base64
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's minimum argon2id profile: the code carries 128 random bits, so the hash only has to
# make a stolen store useless, not stretch a weak secret.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def new_code() -> str:
    """128 random bits as 8 groups of 4 base32 characters (no padding, no look-alike case)."""
    text = base64.b32encode(secrets.token_bytes(20)).decode().lower()[:32]
    return "-".join(text[i : i + 4] for i in range(0, 32, 4))


def _canonical(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


async def hash_code(code: str) -> str:
    # argon2 takes tens of milliseconds: keep it off the event loop.
    return await asyncio.to_thread(_HASHER.hash, _canonical(code))


async def verify_code(code_hash: str, code: str) -> bool:
    if len(code) > 64:
        return False

    def check() -> bool:
        try:
            return _HASHER.verify(code_hash, _canonical(code))
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


#: Checked against when the account is unknown, so both answers take the same time.
DUMMY_HASH = _HASHER.hash("not-a-recovery-code")
