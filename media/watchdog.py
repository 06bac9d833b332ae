"""Hung worker processes: alive, but not answering (stopped with SIGSTOP, an event loop blocked
in a system call or a tight loop, a deadlock). Its rooms' media has stopped, yet the process has
not exited, so ``media/workers.py``'s supervisor, which waits for an exit, would wait for ever.

The node polls every worker's ``/v1/stats`` each second (``WorkerPool._poll``); that poll is the
heartbeat. A worker is *hung* once it has answered none of its polls for ``bound_s`` seconds
**and** missed at least ``MIN_MISSES`` of them in a row. The second condition keeps a pause of
the node itself (its own loop blocked, the machine suspended) from condemning every worker: after
such a pause the clock has moved on, but the workers have missed at most one poll, and the next
one is answered. The node then kills the worker (SIGKILL works on a stopped process too); its
rooms end exactly as when it crashes, and it is restarted.

The decision is this module's pure core (time passed in); the pool holds one ``Heartbeat`` per
worker and acts on ``hung``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: Seconds without an answer before a worker counts as hung: generous, because a worker on a
#: busy machine (or with many rooms) may answer a poll late without being stuck.
DEFAULT_BOUND_S = 10.0
#: Polls in a row that must have gone unanswered as well (see the module's docstring).
MIN_MISSES = 3


@dataclass(frozen=True)
class Heartbeat:
    """What the node knows of one worker's liveness."""

    #: When the worker last answered (or started: a new worker gets the whole bound).
    answered_at: float
    #: Polls unanswered since then (timed out, or refused).
    misses: int = 0


def started(now: float) -> Heartbeat:
    return Heartbeat(answered_at=now)


def answered(_beat: Heartbeat, now: float) -> Heartbeat:
    return Heartbeat(answered_at=now)


def missed(beat: Heartbeat) -> Heartbeat:
    return replace(beat, misses=beat.misses + 1)


def hung(beat: Heartbeat, now: float, bound_s: float = DEFAULT_BOUND_S) -> bool:
    """True when the worker should be killed and restarted."""
    return beat.misses >= MIN_MISSES and now - beat.answered_at >= bound_s
