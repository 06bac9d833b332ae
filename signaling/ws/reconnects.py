"""How often one device may open the call WebSocket: a token bucket per device, in memory.

A device that reconnects in a loop (a bug, or several copies of it fighting over one device id)
replaces its own connection every time: each round is a TCP and WebSocket handshake, store
writes, a welcome and a close. Over the budget it is refused before the upgrade, from the access
token alone (its verification is cached), which costs a small fraction of a round.

Only this node's memory holds the buckets, keyed by device id; full buckets are forgotten.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

#: Buckets kept before full ones are swept (each sweep is O(buckets), at most once a second).
_SWEEP_AT = 4096


class ReconnectThrottle:
    """Sign-ins per device: ``burst`` at once, then one per ``every_s`` seconds."""

    __slots__ = ("_buckets", "_burst", "_clock", "_every", "_swept")

    def __init__(
        self, burst: int, every_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = float(burst)
        self._every = every_s
        self._clock = clock
        # device id -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._swept = clock()

    def try_connect(self, device_id: str) -> int:
        """0 when the device may sign in now, else the whole seconds to wait."""
        now = self._clock()
        tokens, stamp = self._buckets.get(device_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - stamp) / self._every)
        if tokens < 1:
            self._buckets[device_id] = (tokens, now)
            return max(1, math.ceil((1 - tokens) * self._every))
        self._buckets[device_id] = (tokens - 1, now)
        if len(self._buckets) >= _SWEEP_AT and now - self._swept >= 1.0:
            self._sweep(now)
        return 0

    def _sweep(self, now: float) -> None:
        self._swept = now
        full = [
            device
            for device, (tokens, stamp) in self._buckets.items()
            if tokens + (now - stamp) / self._every >= self._burst
        ]
        for device in full:
            del self._buckets[device]

    def __len__(self) -> int:
        return len(self._buckets)
