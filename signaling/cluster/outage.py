"""Store outages as this node sees them: when the store stopped answering, since when it answers
again, and one warning per outage instead of one per request, heartbeat or task.

Everything on a node that talks to the store reports here (``failed``/``ok``); the heartbeat
does so every second, so an outage is noticed and its end too. The judgement of other nodes
(``signaling.cluster.routing_redis``) asks ``steady_for``: a node that could not write its own
heartbeat cannot tell a dead node from a silent store, so it judges nobody until its own
heartbeats have been getting through for a while.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("callbook.store")

#: Without any success reported, failures this far apart count as two outages.
QUIET_END_S = 30.0


class StoreOutage:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._down_since: float | None = None
        self._last_failure = float("-inf")
        self._failures = 0
        # Since when the store has answered without a failure in between (start: now).
        self._up_since = clock()
        #: How many outages have ended (a node rewrites its presence after each).
        self.ended = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, what: str) -> None:
        """Something needing the store failed for want of it; the first failure warns."""
        now = self._clock()
        if self._down_since is not None and now - self._last_failure > QUIET_END_S:
            self._end(self._last_failure)
        self._last_failure = now
        self._failures += 1
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "the store is unreachable or refuses writes (first noticed by %s); answering 503",
                what,
            )

    def ok(self) -> None:
        """The store answered: an outage, if any, is over."""
        if self._down_since is not None:
            self._end(self._clock())

    def _end(self, at: float) -> None:
        assert self._down_since is not None
        log.info(
            "the store is reachable again after %.1f s (%d failures meanwhile)",
            at - self._down_since,
            self._failures,
        )
        self._down_since = None
        self._failures = 0
        self._up_since = at
        self.ended += 1

    def steady_for(self) -> float:
        """How long the store has answered without a failure (0 while it is down)."""
        if self._down_since is not None:
            return 0.0
        return max(0.0, self._clock() - max(self._up_since, self._last_failure))
