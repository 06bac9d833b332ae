"""Admission for the endpoints anyone may call: per-source budgets, and a puzzle whose price
follows the pressure (signaling/limits.py and signaling/puzzle.py are the pure parts).

A source is the connection's address, reduced to a keyed digest in memory (``SourceKeys``);
it is never written to the store or the log. Behind a reverse proxy every connection comes
from the proxy: name it in CALLBOOK_TRUSTED_PROXIES and its X-Forwarded-For is used instead
(docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Literal

from aiohttp import web

from directory.storage import keys
from directory.store import Store
from signaling import puzzle
from signaling.config import Config
from signaling.errors import ApiError
from signaling.limits import (
    RateMeter,
    SourceBuckets,
    SourceKeys,
    client_address,
    retry_after_s,
)
from signaling.protocol import puzzles
from signaling.protocol.bodies import Puzzle, PuzzleProof

Kind = Literal["signup", "recovery", "challenge"]
_WHAT = {"signup": "sign-ups", "recovery": "recovery attempts", "challenge": "sign-in requests"}
#: Refusals held back at once (each holds a connection open, nothing else).
_TARPIT_MAX = 1024
#: How quickly the node's sign-up and recovery rate forgets a burst.
_RATE_HALF_LIFE_S = 10.0


class Gate:
    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        size = config.source_table_size
        self._buckets: dict[Kind, SourceBuckets] = {
            "signup": SourceBuckets(config.source_signups, size),
            "recovery": SourceBuckets(config.source_recoveries, size),
            "challenge": SourceBuckets(config.source_challenges, size),
        }
        self._sources = SourceKeys()
        self._enrolments = RateMeter(_RATE_HALF_LIFE_S)
        self._settings = config.puzzle
        self._quiet_per_s = config.puzzle_quiet_per_s
        self._source_quiet = config.puzzle_source_quiet
        self._clock = clock
        self._wall = wall
        self._key: bytes | None = None
        self._tarpit_s = config.tarpit_s
        self._trusted = config.trusted_proxies
        self._tarpitted = 0

    @property
    def heavy_bits(self) -> int:
        """The most a puzzle asks for: what a handle under a flood of guesses costs."""
        return self._settings.max_bits

    def source(self, request: web.Request) -> bytes:
        forwarded = request.headers.get("X-Forwarded-For")
        return self._sources.of(client_address(request.remote, forwarded, self._trusted))

    def admit(self, kind: Kind, source: bytes) -> None:
        """Spend a token of this source's budget, or refuse with ``rate_limited``."""
        wait = self._buckets[kind].take(source, self._clock())
        if wait:
            retry = retry_after_s(wait)
            detail = f"Too many {_WHAT[kind]} from your network; try again in {retry} s."
            raise ApiError("rate_limited", detail, retry)

    async def hold(self, retry_after_s: int) -> None:
        """Hold a ``rate_limited`` answer back for up to ``tarpit_s`` (a timer, no work): a
        client flooding through a few connections then sends a few requests a second instead
        of hundreds, and the event loop stays free for everyone else. At most ``_TARPIT_MAX``
        answers wait at once; beyond, they go out at once."""
        if self._tarpit_s <= 0 or self._tarpitted >= _TARPIT_MAX:
            return
        self._tarpitted += 1
        try:
            await asyncio.sleep(min(self._tarpit_s, retry_after_s))
        finally:
            self._tarpitted -= 1

    def enrolled(self) -> None:
        """Count a sign-up or recovery that passed admission: the node's pressure."""
        self._enrolments.add(self._clock())

    def bits(self, purpose: puzzles.Purpose, source: bytes, *, ahead: int = 0) -> int:
        """The difficulty now; ``ahead``: tokens the source will have spent by redemption."""
        now = self._clock()
        pressure = puzzle.Pressure(
            node_rate=self._enrolments.rate(now),
            node_quiet_rate=self._quiet_per_s,
            source_used=self._buckets[purpose].used(source, now) + ahead,
            source_quiet_used=self._source_quiet,
        )
        return puzzle.difficulty(pressure, self._settings)

    async def key(self, store: Store) -> bytes:
        """The key every node signs puzzles with: the first node to start makes it."""
        if self._key is None:
            await store.redis.set(keys.puzzle_key(), secrets.token_hex(32), nx=True)
            self._key = bytes.fromhex(await store.redis.get(keys.puzzle_key()))
        return self._key

    async def issue(
        self, store: Store, purpose: puzzles.Purpose, source: bytes, scope: str, *, heavy: bool
    ) -> Puzzle:
        bits = self.heavy_bits if heavy else self.bits(purpose, source, ahead=1)
        expires_at = int(self._wall()) + keys.PUZZLE_TTL_S
        challenge = puzzle.issue(await self.key(store), purpose, bits, scope, expires_at)
        return Puzzle(challenge=challenge, bits=bits, expires_in=keys.PUZZLE_TTL_S)

    async def redeem(
        self,
        store: Store,
        purpose: puzzles.Purpose,
        source: bytes,
        proof: PuzzleProof | None,
        scope: str,
    ) -> int:
        """The bits a request proved; ``puzzle_required`` when it proved too little."""
        required = self.bits(purpose, source)
        if proof is None:
            if required == 0:
                return 0
            raise ApiError("puzzle_required", "The server is busy: solve a puzzle first.")
        verdict = puzzle.check(
            await self.key(store), proof.challenge, proof.solution, purpose, scope, self._wall()
        )
        if verdict.problem is not None:
            raise ApiError("puzzle_required", verdict.problem)
        if verdict.bits < required - puzzle.SLACK_BITS:
            raise ApiError("puzzle_required", "The server got busier: solve a fresh puzzle.")
        spent = keys.puzzle_spent(verdict.nonce)
        ttl = max(1, verdict.expires_at - int(self._wall()))
        if not await store.redis.set(spent, "1", nx=True, ex=ttl):
            raise ApiError("puzzle_required", "That puzzle was used already.")
        return verdict.bits
