"""The keeper of the embedded store: when the Valkey that ``callbook serve`` started dies (``kill
-9``, the OOM killer, a crash), it is started again on the same data directory, so the same
append-only file and socket; the server's clients reconnect by themselves. A store that keeps
dying, or will not start, is given up on after a few attempts with growing pauses: the server
then stops and exits non-zero, for a supervisor to see (docs/deploy.md, "The embedded store").

``RestartPolicy`` is the pure decision (when to try again, when to give up); ``StoreKeeper`` the
adapter that watches the process and starts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from directory.storage.embedded import EmbeddedStoreError, EmbeddedValkey

log = logging.getLogger("callbook.store")

#: The pauses before each start after the store died; one more failure gives up.
RESTART_DELAYS_S = (0.0, 0.5, 1.0, 2.0, 4.0)
#: A store that ran this long before dying has its earlier failures forgotten.
STABLE_AFTER_S = 60.0
#: How long a restarted store may take to answer (replaying a large append-only file).
START_TIMEOUT_S = 30.0


class StoreLost(RuntimeError):
    """The embedded store could not be kept running."""


@dataclass(slots=True)
class RestartPolicy:
    delays: tuple[float, ...] = RESTART_DELAYS_S
    stable_after_s: float = STABLE_AFTER_S
    _failures: int = 0
    _up_since: float | None = field(default=None)

    def started(self, now: float) -> None:
        self._up_since = now

    def died(self, now: float) -> None:
        if self._up_since is not None and now - self._up_since >= self.stable_after_s:
            self._failures = 0
        self._up_since = None

    def next_delay(self) -> float | None:
        """The pause before the next start, or None: give up (every attempt failed)."""
        if self._failures >= len(self.delays):
            return None
        delay = self.delays[self._failures]
        self._failures += 1
        return delay


class StoreKeeper:
    def __init__(
        self,
        store: EmbeddedValkey,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._policy = policy or RestartPolicy()
        self._clock = clock

    async def run(self) -> None:
        """Keep the store running; raises ``StoreLost`` when it gives up."""
        self._policy.started(self._clock())
        while True:
            await self._exited()
            died_at = self._clock()
            log.error(
                "the embedded store exited (code %s); starting it again on the same data",
                self._store.exit_code(),
            )
            self._policy.died(died_at)
            await self._restart()
            log.info("the embedded store runs again after %.1f s", self._clock() - died_at)

    async def _restart(self) -> None:
        while (delay := self._policy.next_delay()) is not None:
            await asyncio.sleep(delay)
            try:
                self._store.spawn()  # on the loop's (main) thread: see EmbeddedValkey.spawn
                await asyncio.to_thread(self._store.wait_ready, START_TIMEOUT_S)
            except (EmbeddedStoreError, OSError) as exc:
                log.warning("the embedded store did not start: %s", exc)
                continue
            self._policy.started(self._clock())
            return
        raise StoreLost("the embedded store keeps dying or does not start; see its valkey.log")

    async def _exited(self) -> None:
        """Until the store's process ends: its pidfd becomes readable (no polling)."""
        pid = self._store.pid
        if pid is None or self._store.exit_code() is not None:
            return
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _settle, ended)
        try:
            await ended
        finally:
            loop.remove_reader(fd)
            os.close(fd)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
