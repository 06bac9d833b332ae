"""Stopping a task that swallows a cancellation, as a retrying store loop (or a store command in
a worker's job) can."""

from __future__ import annotations

import asyncio
import contextlib

from directory.storage.tasks import cancel_until_done
from signaling.cluster.routing_local import Worker

#: A stop that has not ended by then never will (it ends within a second).
STOP_BOUND_S = 10.0


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


async def test_a_worker_whose_job_swallows_the_cancellation_still_stops() -> None:
    """The node's ordered workers (routing, call records): a store command in a job swallowed
    the cancellation, the worker went back to wait for its next job, and its stop never ended
    (a node's shutdown waited out the tests' 20 s limit)."""
    worker = Worker()
    worker.start()
    running = asyncio.Event()

    async def job() -> None:
        running.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    worker.submit(job)
    await running.wait()
    stopping = asyncio.create_task(worker.stop())
    await asyncio.wait({stopping}, timeout=STOP_BOUND_S)  # without a fix: never done
    stopped = stopping.done()
    stopping.cancel()
    assert stopped and not worker.running
