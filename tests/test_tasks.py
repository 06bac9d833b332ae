"""Stopping a task that swallows a cancellation, as a retrying store loop can."""

from __future__ import annotations

import asyncio

from signaling.tasks import cancel_until_done


async def test_a_task_that_swallows_its_first_cancellation_is_still_stopped() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a retry loop that took it for a store timeout

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await cancel_until_done(task)
    assert task.cancelled()
    assert swallowed == 1


async def test_a_finished_task_is_left_as_it_is() -> None:
    task = asyncio.create_task(asyncio.sleep(0, result=7))
    await task
    await cancel_until_done(task)
    assert task.result() == 7
