"""The producer: lifecycle events into the webhook stream, in the order they happened.

``emit`` is synchronous and never waits: it queues the event. One writer task appends queued
events in batches (one pipeline of XADDs), so a call's events enter the stream in ``seq`` order.
While the store is unreachable the writer retries the same batch (a batch that was partly
written may then be written twice: receivers de-duplicate by event id). Past ``queue_max``
queued events new ones are dropped and counted; events still queued when the process dies are
lost — the at-least-once promise starts once an event is in the stream.

The stream is trimmed (approximately) to the retention and to ``keys.WEBHOOK_EVENTS_MAX``
entries, whichever is shorter: delivered events are not deleted one by one (several URLs'
groups read the same entry), so the cap bounds the memory a busy deployment spends on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from redis.exceptions import RedisError

from directory.storage import keys
from directory.storage.tasks import cancel_until_done
from directory.store import Store
from signaling.calls.lifecycle import LifecycleEvent
from signaling.cluster.outage import StoreOutage
from signaling.metrics import Metrics

log = logging.getLogger("callbook.webhooks")

_BATCH = 100


class StreamSink:
    def __init__(
        self,
        store: Store,
        *,
        retention_s: int = keys.DEFAULT_WEBHOOK_RETENTION_S,
        stream_max: int = keys.WEBHOOK_EVENTS_MAX,
        queue_max: int = 10_000,
        metrics: Metrics | None = None,
        outage: StoreOutage | None = None,
    ) -> None:
        self._store = store
        self._outage = outage or StoreOutage()  # one warning per store outage
        self._retention_s = retention_s
        self._stream_max = stream_max
        self._queue_max = queue_max
        self._metrics = metrics
        self._queue: asyncio.Queue[LifecycleEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._write())

    def emit(self, event: LifecycleEvent) -> None:
        if self._queue.qsize() >= self._queue_max:
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.on_webhook_dropped()
            log.warning("webhook queue full: dropped a %s event", event.type)
            return
        self._queue.put_nowait(event)

    async def _write(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < _BATCH:
                batch.append(self._queue.get_nowait())
            pause = 0.05
            while True:
                try:
                    await self._append(batch)
                    break
                except (RedisError, OSError):
                    self._outage.failed("webhook events")  # they wait here, in order
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 5.0)
            for _ in batch:
                self._queue.task_done()

    async def _append(self, batch: list[LifecycleEvent]) -> None:
        oldest_ms = int((self._store.clock() - self._retention_s) * 1000)
        stream = keys.webhook_events()
        async with self._store.redis.pipeline(transaction=False) as pipe:
            for event in batch:
                pipe.xadd(stream, _fields(event), maxlen=self._stream_max)
            pipe.xtrim(stream, minid=oldest_ms)
            await pipe.execute()

    async def close(self, flush_s: float = 2.0) -> None:
        """Write what is queued (for up to ``flush_s``), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), flush_s)
        await cancel_until_done(self._task)
        self._task = None


def _fields(event: LifecycleEvent) -> dict[str, str]:
    """The call id apart, for ordering without decoding; the id and type, for redis-cli."""
    return {
        "id": event.id,
        "call_id": event.call_id,
        "seq": str(event.seq),
        "type": event.type,
        "payload": msgspec.json.encode(event).decode(),
    }
