"""Client puzzles as a client sees them: what counts as a solution, and how to find one.

A solution of a challenge (``POST /v1/puzzles``) is any string ``s`` of at most
``MAX_SOLUTION_LENGTH`` characters such that SHA-256(``challenge:s``, UTF-8) starts with
``bits`` zero bits: 2^bits tries on average, one to check. How the server issues and checks
challenges is ``signaling.puzzle``.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Purpose = Literal["signup", "recovery"]
MAX_SOLUTION_LENGTH = 32


def zero_bits(digest: bytes) -> int:
    """Leading zero bits of a digest."""
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def digest(challenge: str, solution: str) -> bytes:
    # A solution may hold lone surrogates (a client chose it): it must fail the check, not raise.
    return hashlib.sha256(f"{challenge}:{solution}".encode("utf-8", "surrogatepass")).digest()


def solve(challenge: str, bits: int) -> str:
    """Find a solution by counting: 2^bits SHA-256 on average (clients call this)."""
    if bits <= 0:
        return "0"
    prefix = hashlib.sha256(f"{challenge}:".encode())
    limit = 1 << (256 - bits)
    counter = 0
    while True:
        attempt = prefix.copy()
        text = str(counter)
        attempt.update(text.encode())
        if int.from_bytes(attempt.digest(), "big") < limit:
            return text
        counter += 1
