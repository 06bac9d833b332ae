"""The deliverer: one lease-holding node POSTs the webhook stream to every configured URL.

Per URL, a consumer group named after the URL's digest (``url-<sha256[:16]>``, created at the
stream's start, so a URL added later receives the events still retained). Its worker keeps the
entries it has read but not settled, queued per call in stream order; only the head of a call's
queue is ever in flight, so a receiver sees ``seq`` n+1 of a call only after it accepted n.

An attempt is a success on any 2xx; anything else (another status, a refused connection, a
timeout) is retried after ``min(backoff_max, backoff * 2**(attempt-1))`` seconds scaled by a
random factor in [0.5, 1). After ``max_attempts`` the entry is copied to the dead-letter stream
and acknowledged, which unblocks the call's later events. Attempt counts live in memory: after
a takeover they start again (more attempts, never fewer deliveries).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from redis.exceptions import RedisError, ResponseError

from directory.storage import keys
from directory.storage.tasks import cancel_until_done
from directory.store import Store
from signaling.calls.lifecycle import LifecycleEvent
from signaling.cluster.outage import StoreOutage
from signaling.metrics import Metrics
from signaling.webhooks import (
    ATTEMPT_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    sign,
)

log = logging.getLogger("callbook.webhooks")

# Take the lease when it is free, or renew it when it is ours.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Settings:
    urls: tuple[str, ...]
    secret: bytes
    max_attempts: int = 12
    backoff_s: float = 1.0
    backoff_max_s: float = 300.0
    timeout_s: float = 10.0
    lease_s: float = keys.WEBHOOK_LEASE_TTL_S
    retention_s: int = keys.DEFAULT_WEBHOOK_RETENTION_S
    #: Calls whose events are in flight at once, per URL.
    concurrency: int = 16
    #: Entries read but not settled, per URL; reading pauses beyond.
    backlog_max: int = 1000
    #: The longest a worker waits for new entries before looking at its retries again.
    poll_s: float = 1.0


def group_name(url: str) -> str:
    return "url-" + hashlib.sha256(url.encode()).hexdigest()[:16]


@dataclass(slots=True)
class _Entry:
    stream_id: str
    call_id: str
    payload: str
    attempts: int = 0
    due: float = 0.0
    delivered: bool = False
    last_status: str = ""


@dataclass(slots=True)
class _Backlog:
    by_call: dict[str, deque[_Entry]] = field(default_factory=dict)
    size: int = 0

    def add(self, entry: _Entry) -> None:
        self.by_call.setdefault(entry.call_id, deque()).append(entry)
        self.size += 1

    def settle(self, entry: _Entry) -> None:
        queue = self.by_call.get(entry.call_id)
        if queue and queue[0] is entry:
            queue.popleft()
            self.size -= 1
            if not queue:
                del self.by_call[entry.call_id]


class Deliverer:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        node_id: str,
        *,
        metrics: Metrics | None = None,
        jitter: Callable[[], float] = random.random,
        outage: StoreOutage | None = None,
    ) -> None:
        self._store = store
        self._outage = outage or StoreOutage()  # one warning per store outage
        self._settings = settings
        self._node_id = node_id
        self._metrics = metrics
        self._jitter = jitter
        self._task: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def leading(self) -> bool:
        return bool(self._workers)

    def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s)
        )
        self._task = asyncio.create_task(self._run())

    async def stop(self, *, release: bool = True) -> None:
        """Stop delivering; with ``release`` another node may take over at once (else after the
        lease expires, as when a node dies). Unsettled entries stay pending for the next holder."""
        if self._task is not None:
            await cancel_until_done(self._task)
            self._task = None
        await self._stop_workers()
        if release:
            with contextlib.suppress(RedisError, OSError):
                await self._store.run_script(_RELEASE, [keys.webhook_lease()], [self._node_id])
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        lease_ms = int(self._settings.lease_s * 1000)
        while True:
            try:
                held = await self._store.run_script(
                    _HOLD, [keys.webhook_lease()], [self._node_id, lease_ms]
                )
            except (RedisError, OSError):
                self._outage.failed("webhook delivery")
                held = 0
            except Exception:
                log.exception("webhook lease check failed")
                held = 0
            if held and not self._workers:
                log.info("this node delivers webhooks now")
                self._workers = [
                    asyncio.create_task(self._worker(url)) for url in self._settings.urls
                ]
            elif not held and self._workers:
                log.info("another node delivers webhooks now")
                await self._stop_workers()
            await asyncio.sleep(self._settings.lease_s / 3)

    async def _stop_workers(self) -> None:
        workers, self._workers = self._workers, []
        await asyncio.gather(*(cancel_until_done(worker) for worker in workers))

    async def _worker(self, url: str) -> None:
        while True:
            worker = _Worker(self, url)
            try:
                await worker.run()
            except (RedisError, OSError):
                self._outage.failed("webhook delivery")
            except Exception:
                log.exception("webhook delivery to one URL failed; starting it again")
            finally:
                await worker.abandon()
            await asyncio.sleep(min(1.0, self._settings.poll_s))

    # --- used by the workers ----------------------------------------------------------------

    def backoff_s(self, attempts: int) -> float:
        s = self._settings
        delay = min(s.backoff_max_s, s.backoff_s * 2.0 ** max(0, attempts - 1))
        return delay * (0.5 + 0.5 * self._jitter())

    async def post(self, url: str, entry: _Entry) -> int:
        """One attempt; the HTTP status, or 0 when there was no answer."""
        assert self._session is not None
        event = msgspec.json.decode(entry.payload, type=LifecycleEvent)
        body = msgspec.json.encode(msgspec.structs.replace(event, sent_at=int(time.time())))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._settings.secret, body),
            EVENT_ID_HEADER: event.id,
            EVENT_TYPE_HEADER: event.type,
            ATTEMPT_HEADER: str(entry.attempts + 1),
        }
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            return 0

    def count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.on_webhook(outcome)


class _Worker:
    """Delivery to one URL for one lease term (or until the store fails)."""

    def __init__(self, deliverer: Deliverer, url: str) -> None:
        self._d = deliverer
        self._s = deliverer._settings
        self._redis: Any = deliverer._store.redis
        self._store = deliverer._store
        self._url = url
        self._group = group_name(url)
        self._consumer = deliverer._node_id
        self._backlog = _Backlog()
        self._inflight: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        await self._prepare()
        while True:
            self._dispatch()
            wait_s = self._wait_s()
            if self._backlog.size < self._s.backlog_max:
                await self._read(wait_s)
            elif not self._inflight:
                await asyncio.sleep(wait_s)
            if self._inflight:
                await asyncio.wait(
                    self._inflight.values(),
                    timeout=self._s.poll_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )

    async def abandon(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _prepare(self) -> None:
        """Join the group and take over every entry still pending in it, oldest first."""
        stream = keys.webhook_events()
        try:
            await self._redis.xgroup_create(stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        cursor = "0-0"
        while True:
            reply = await self._redis.xautoclaim(
                stream, self._group, self._consumer, 0, start_id=cursor, count=100
            )
            cursor, claimed = reply[0], reply[1]
            trimmed = reply[2] if len(reply) > 2 else []
            if trimmed:
                log.warning("%d webhook event(s) expired undelivered", len(trimmed))
            for stream_id, fields in claimed:
                self._add(stream_id, fields)
            if cursor == "0-0":
                break
        await self._forget_idle_consumers()

    async def _forget_idle_consumers(self) -> None:
        """Former holders with nothing pending: gone from XINFO, nothing lost."""
        stream = keys.webhook_events()
        for consumer in await self._redis.xinfo_consumers(stream, self._group):
            if consumer["name"] != self._consumer and int(consumer["pending"]) == 0:
                await self._redis.xgroup_delconsumer(stream, self._group, consumer["name"])

    async def _read(self, wait_s: float) -> None:
        block = int(wait_s * 1000)
        room = self._s.backlog_max - self._backlog.size
        reply = await self._redis.xreadgroup(
            self._group,
            self._consumer,
            {keys.webhook_events(): ">"},
            count=min(room, 100),
            block=block if block >= 1 else None,
        )
        for stream_id, fields in _entries(reply, keys.webhook_events()):
            self._add(stream_id, fields)

    def _add(self, stream_id: str, fields: dict[str, str] | None) -> None:
        if not fields or "call_id" not in fields or "payload" not in fields:
            log.warning("webhook stream entry without an event; skipped")
            self._d.count("dead_lettered")
            self._spawn_ack(stream_id)
            return
        self._backlog.add(_Entry(stream_id, fields["call_id"], fields["payload"]))

    def _spawn_ack(self, stream_id: str) -> None:
        async def ack() -> None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.xack(keys.webhook_events(), self._group, stream_id)

        task = asyncio.ensure_future(ack())
        self._inflight[f"ack:{stream_id}"] = task
        task.add_done_callback(lambda _: self._inflight.pop(f"ack:{stream_id}", None))

    def _wait_s(self) -> float:
        if self._inflight:
            return 0.0  # do not block on the store: in-flight attempts are waited on instead
        dues = [queue[0].due for queue in self._backlog.by_call.values()]
        if not dues:
            return self._s.poll_s
        return max(0.0, min(self._s.poll_s, min(dues) - time.monotonic()))

    def _dispatch(self) -> None:
        now = time.monotonic()
        for call_id, queue in self._backlog.by_call.items():
            if len(self._inflight) >= self._s.concurrency:
                return
            head = queue[0]
            if call_id not in self._inflight and head.due <= now:
                task = asyncio.ensure_future(self._attempt(head))
                self._inflight[call_id] = task
                task.add_done_callback(functools.partial(self._done, call_id))

    def _done(self, call_id: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(call_id, None)

    async def _attempt(self, entry: _Entry) -> None:
        try:
            if not entry.delivered and entry.attempts < self._s.max_attempts:
                await self._post(entry)
            if entry.delivered:
                await self._redis.xack(keys.webhook_events(), self._group, entry.stream_id)
                self._backlog.settle(entry)
            elif entry.attempts >= self._s.max_attempts:
                await self._dead_letter(entry)
            else:
                entry.due = time.monotonic() + self._d.backoff_s(entry.attempts)
        except (RedisError, OSError):
            entry.due = time.monotonic() + min(1.0, self._s.poll_s)  # settle it again soon

    async def _post(self, entry: _Entry) -> None:
        try:
            status = await self._d.post(self._url, entry)
        except msgspec.DecodeError:
            entry.attempts = self._s.max_attempts
            entry.last_status = "undecodable"
            return
        entry.attempts += 1
        if 200 <= status < 300:
            entry.delivered = True
            self._d.count("delivered")
        else:
            entry.last_status = str(status) if status else "no answer"
            self._d.count("failed")

    async def _dead_letter(self, entry: _Entry) -> None:
        log.warning(
            "webhook event dead-lettered after %d attempt(s) (last: %s)",
            entry.attempts,
            entry.last_status,
        )
        oldest_ms = int((self._store.clock() - self._s.retention_s) * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(
                keys.webhook_dead_letters(),
                {
                    "url": self._url,
                    "call_id": entry.call_id,
                    "attempts": str(entry.attempts),
                    "last_status": entry.last_status,
                    "payload": entry.payload,
                },
                maxlen=keys.WEBHOOK_DEAD_LETTERS_MAX,
            )
            pipe.xtrim(keys.webhook_dead_letters(), minid=oldest_ms)
            pipe.xack(keys.webhook_events(), self._group, entry.stream_id)
            await pipe.execute()
        self._backlog.settle(entry)
        self._d.count("dead_lettered")


def _entries(reply: Any, stream: str) -> list[tuple[str, dict[str, str] | None]]:
    """XREADGROUP's entries for one stream, from a RESP3 map or a RESP2 list."""
    if not reply:
        return []
    if isinstance(reply, dict):
        found = reply.get(stream) or []
        if found and isinstance(found[0], list):
            found = found[0]
        return list(found)
    for name, entries in reply:
        if name == stream:
            return list(entries)
    return []
