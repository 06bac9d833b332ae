"""Draining a node on SIGTERM: it leaves, and loses no call that could be kept.

The sequence (``drain``), which ``callbook serve`` runs when it gets SIGTERM, before it stops:

1. at once, ``/readyz`` answers 503 ``draining`` (the load balancer stops sending new
   connections) and new call WebSockets are refused with a 503 ``draining`` problem and
   ``Retry-After``; invites from devices still connected here are placed by another node;
2. the 1:1 calls this node runs are handed over to the other live nodes
   (``signaling/calls/handover.py``);
3. every device that is in no call still run here gets ``reconnect`` with its resume token, and
   is closed with 4003 if it has not moved within ``MOVE_WITHIN_S``; a device in a call that
   cannot move (group and SFU calls, or every call when no other node is alive) is told once
   that call ends;
4. the drain is over when no device is connected here and no call that cannot move runs here
   (a 1:1 call left here has no device here, and no other node to go to), or when the grace
   period ends; then the server shuts down as before (what is left is closed with 1001).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from signaling.appkeys import CALLS, CONFIG
from signaling.calls import machine as sm
from signaling.calls.handover import MOVE_WITHIN_S
from signaling.calls.service import CallService

log = logging.getLogger("callbook.drain")

#: How often the drain looks at who is left.
POLL_S = 0.2
#: How often it tries again to hand over calls that did not move (no other node yet).
RETRY_HAND_OVER_S = 1.0


class Drain:
    """This node's drain: whether it has begun, and the loop that waits for devices to leave."""

    def __init__(self, grace_s: float, move_within_s: float = MOVE_WITHIN_S) -> None:
        self.grace_s = grace_s
        self.move_within_s = move_within_s
        self._begun = False

    @property
    def active(self) -> bool:
        return self._begun

    async def run(self, calls: CallService) -> bool:
        """Drain ``calls``; True when everyone left before the grace period ended."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._begun = True
        await calls.begin_drain()
        moved = await calls.hand_over_calls()
        log.info("draining: %d calls handed over", moved)
        told: dict[sm.DeviceRef, float] = {}
        last_hand_over = loop.time()
        while loop.time() - started < self.grace_s:
            now = loop.time()
            self._tell(calls, told, now)
            if calls.connected_devices() == 0 and calls.calls_to_wait_for() == 0:
                log.info("drained in %.1f s", now - started)
                return True
            if calls.active_calls() and now - last_hand_over >= RETRY_HAND_OVER_S:
                last_hand_over = now
                await calls.hand_over_calls()
            await asyncio.sleep(POLL_S)
        log.warning(
            "drain grace period over: %d devices and %d calls left",
            calls.connected_devices(), calls.active_calls(),
        )  # fmt: skip
        return False

    def _tell(self, calls: CallService, told: dict[sm.DeviceRef, float], now: float) -> None:
        for device in calls.devices_free_to_move():
            since = told.get(device)
            if since is None:
                calls.tell_to_move(device, self.move_within_s)
                told[device] = now
            elif now - since >= self.move_within_s:
                calls.close_drained(device)


DRAIN = web.AppKey("drain", Drain)


def install(app: web.Application) -> None:
    app[DRAIN] = Drain(app[CONFIG].drain_grace_s)


async def drain(app: web.Application) -> bool:
    """What SIGTERM starts; the caller shuts the application down afterwards."""
    return await app[DRAIN].run(app[CALLS])
