"""Recovery codes: shown once at sign-up, kept only as an argon2id hash.

argon2 takes tens of milliseconds of a core each time: it runs on a small pool of its own with
a bounded queue (``HashPool``), so a flood of sign-ups or recovery guesses neither blocks the
event loop nor takes every core from it, and work beyond the queue is refused at once
(``Overloaded``) instead of piling up.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from directory.errors import Overloaded

T = TypeVar("T")

# OWASP's minimum argon2id profile: the code carries 128 random bits, so the hash only has to
# make a stolen store useless, not stretch a weak secret.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class HashPool:
    """At most ``workers`` argon2 computations at once and ``queue`` more waiting."""

    def __init__(self, workers: int = 1, queue: int = 16) -> None:
        self.workers = workers
        self.queue = queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="argon2")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, work: Callable[[], T]) -> T:
        with self._lock:
            if self._pending >= self.workers + self.queue:
                raise Overloaded("Too many sign-ups and recoveries right now; try again.", 1)
            self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def new_code() -> str:
    """128 random bits as 8 groups of 4 base32 characters (no padding, no look-alike case)."""
    text = base64.b32encode(secrets.token_bytes(20)).decode().lower()[:32]
    return "-".join(text[i : i + 4] for i in range(0, 32, 4))


def _canonical(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


async def hash_code(pool: HashPool, code: str) -> str:
    return await pool.run(lambda: _HASHER.hash(_canonical(code)))


async def verify_code(pool: HashPool, code_hash: str, code: str) -> bool:
    """Always one argon2 computation, whatever the code: a long one is checked as garbage."""
    canonical = _canonical(code) if len(code) <= 64 else "-"

    def check() -> bool:
        try:
            return _HASHER.verify(code_hash, canonical)
        except (VerificationError, InvalidHashError):
            return False

    return await pool.run(check) and len(code) <= 64


#: Checked against when the account is unknown, so both answers take the same time.
DUMMY_HASH = _HASHER.hash("not-a-recovery-code")

#: For stores made without one (tools, tests); the server makes its own from its configuration.
DEFAULT_POOL = HashPool()
