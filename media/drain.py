"""Draining a media node on SIGTERM: no new rooms, and the live ones run to their end.

As a signaling node drains (``signaling/cluster/drain.py``), a media node that is stopped on purpose
ends no call that could go on:

1. at once, the node is *draining*: its registry entry says so (written now, not at the next
   heartbeat), so placement (``signaling/calls/placement.py``) skips it, and a room that is
   created here anyway (placed before the entry changed) is refused with 503 ``draining``, which
   the placing signaling node answers by trying the next node;
2. its rooms run on, participants still join and leave them; signaling deletes each room when
   its call ends;
3. when no room is left, or when the grace period (``--drain-grace-s``) ends, the node stops as
   before (what is left is closed, and signaling tells those calls ``media_failed``).

Rooms do not move: a room's forwarding state and DTLS sessions live in this process (or in its
worker process, media/workers.py, which the node stops last).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from media.control import ROOMS, WAKE

log = logging.getLogger("callbook.media")

#: How often the drain looks at the rooms left.
POLL_S = 0.2


async def drain(app: web.Application, grace_s: float) -> bool:
    """True when every room ended within ``grace_s``."""
    node = app[ROOMS]
    node.draining = True
    app[WAKE].set()
    loop = asyncio.get_running_loop()
    started = loop.time()
    while node.open_rooms():
        if loop.time() - started >= grace_s:
            log.warning("drain grace period over: %d rooms left", node.open_rooms())
            return False
        await asyncio.sleep(POLL_S)
    log.info("drained in %.1f s", loop.time() - started)
    return True
