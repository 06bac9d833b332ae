"""Client puzzles: proof of work that is free when the server is quiet and dear in a flood.

A challenge is issued without touching the store: it carries its purpose, the number of leading
zero bits the answer must reach, its expiry and a random nonce, signed with HMAC-SHA-256 under a
key the nodes share. A solution is any string ``s`` such that SHA-256(``challenge:s``) starts
with that many zero bits: 2^bits tries on average, one to check. Spending it once (the store
remembers the nonce until expiry) is the adapter's job; this module is pure.

The difficulty follows the pressure: the node's recent rate of sign-ups and recoveries against
its quiet rate, and how much of its own budget the asking source has used. Each doubling of
pressure adds ``BITS_PER_DOUBLING`` bits (four times the work).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass

from signaling.protocol.puzzles import MAX_SOLUTION_LENGTH, Purpose, digest, zero_bits

VERSION = "p1"
BITS_PER_DOUBLING = 2
#: A puzzle issued a moment before pressure rose still counts if it is at most this much easier.
SLACK_BITS = 4


@dataclass(frozen=True, slots=True)
class Pressure:
    """What the difficulty is computed from (rates in events per second)."""

    node_rate: float
    node_quiet_rate: float
    source_used: float
    source_quiet_used: float


@dataclass(frozen=True, slots=True)
class Settings:
    base_bits: int = 12
    max_bits: int = 18


def difficulty(pressure: Pressure, settings: Settings) -> int:
    """0 while both the node and the source are under their quiet level; then ``base_bits``
    plus BITS_PER_DOUBLING per doubling over it, at most ``max_bits``."""
    if settings.max_bits <= 0:
        return 0
    ratio = max(
        pressure.node_rate / pressure.node_quiet_rate if pressure.node_quiet_rate > 0 else 0.0,
        pressure.source_used / pressure.source_quiet_used
        if pressure.source_quiet_used > 0
        else 0.0,
    )
    if ratio <= 1.0:
        return 0
    bits = settings.base_bits + BITS_PER_DOUBLING * math.log2(ratio)
    return min(settings.max_bits, math.ceil(bits))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def scope_of(handle: str | None) -> str:
    """Binds a recovery puzzle to its handle (a digest: the challenge never spells it out)."""
    if not handle:
        return "-"
    return _b64(hashlib.sha256(handle.encode()).digest()[:12])


def _utf8(text: str) -> bytes:
    # Client text may hold lone surrogates: they must fail the check, not raise.
    return text.encode("utf-8", "surrogatepass")


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, _utf8(body), hashlib.sha256).digest()[:16])


def issue(key: bytes, purpose: Purpose, bits: int, scope: str, expires_at: int) -> str:
    """A signed challenge: ``p1.purpose.bits.expiry.scope.nonce.mac``."""
    body = f"{VERSION}.{purpose}.{bits}.{expires_at}.{scope}.{_b64(secrets.token_bytes(12))}"
    return f"{body}.{_mac(key, body)}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """``problem`` is None for a good solution; ``nonce`` names the challenge for spending."""

    problem: str | None
    bits: int = 0
    nonce: str = ""
    expires_at: int = 0


def check(
    key: bytes, challenge: str, solution: str, purpose: Purpose, scope: str, now: float
) -> Verdict:
    """Whether ``solution`` solves a challenge this server issued, for this purpose and scope."""
    parts = challenge.split(".")
    if len(parts) != 7 or parts[0] != VERSION:
        return Verdict("The puzzle is not one this server issued.")
    body, mac = challenge.rsplit(".", 1)
    # Bytes: compare_digest refuses non-ASCII text, and a client chooses this text.
    if not hmac.compare_digest(_utf8(mac), _utf8(_mac(key, body))):
        return Verdict("The puzzle is not one this server issued.")
    _, kind, bits_text, expiry_text, bound, nonce = body.split(".")
    bits, expires_at = int(bits_text), int(expiry_text)
    if kind != purpose or bound != scope:
        return Verdict("The puzzle was issued for another request.")
    if now > expires_at:
        return Verdict("The puzzle has expired.")
    if len(solution) > MAX_SOLUTION_LENGTH or zero_bits(digest(challenge, solution)) < bits:
        return Verdict("The puzzle's solution is wrong.")
    return Verdict(None, bits, nonce, expires_at)
