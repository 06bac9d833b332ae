"""A node-local token bucket for endpoints that have no account to charge.

Sign-up, sign-in challenges and recovery are open to anyone. The store-backed buckets in
``directory.ratelimit`` are per account; these protect the node itself from a flood.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Throttle:
    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def try_take(self) -> float:
        """0 when a token was taken, else the seconds to wait for one."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate

    def retry_after_s(self, wait: float) -> int:
        return max(1, math.ceil(wait))
