"""Stopping background tasks for good (signaling's and the media node's)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("callbook.tasks")


async def cancel_until_done(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it, cancelling again while it runs on.

    One cancellation is not always enough: it can be swallowed on its way through a store
    command (a socket timeout firing at the same moment turns it into a timeout error, which
    loops that retry on store failures catch and carry on). Seen in CI: the webhook delivery
    loop went back to sleep with its cancellation pending, and its stop never ended.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        log.warning("a task ended with %r while stopping", task.exception())
