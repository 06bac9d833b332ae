"""The in-process router: a single node, or several nodes inside one process (tests).

Nodes attached to one ``LocalHub`` share its presence table and reach each other's inboxes
directly; a node the hub was told is dead (``kill``) is reported to the others, exactly as the
Redis router reports a node whose heartbeat went stale.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from directory.batch import Batch, Finish, Staged
from directory.storage.tasks import cancel_until_done
from directory.store import Store
from signaling.calls.machine import DeviceRef
from signaling.cluster.routing import Deliver, Envelopes, Inbox, Location, Online

log = logging.getLogger("callbook.routing")

Job = Callable[[], Awaitable[object]]


class LocalHub:
    def __init__(self) -> None:
        self.presence: dict[DeviceRef, Location] = {}
        # The same entries by account: ``online`` costs the callee's devices, not every
        # connected one (a walk of all of them made a callable callee slower to ring than one
        # who may not be called: a timing oracle).
        self._by_account: dict[str, set[DeviceRef]] = {}
        self.routers: dict[str, LocalRouter] = {}
        self.heartbeats: dict[str, float] = {}
        self.draining: set[str] = set()

    def put(self, device: DeviceRef, location: Location) -> None:
        self.presence[device] = location
        self._by_account.setdefault(device.account_id, set()).add(device)

    def remove(self, device: DeviceRef) -> None:
        self.presence.pop(device, None)
        devices = self._by_account.get(device.account_id)
        if devices is not None:
            devices.discard(device)
            if not devices:
                del self._by_account[device.account_id]

    def of_account(self, account_id: str) -> list[tuple[DeviceRef, Location]]:
        return [(d, self.presence[d]) for d in self._by_account.get(account_id, ())]

    def remove_node(self, node: str) -> None:
        for device in [d for d, loc in self.presence.items() if loc.node == node]:
            self.remove(device)

    async def kill(self, node: str) -> None:
        """The node stops, as if by ``kill -9``: its presence stays behind until noticed."""
        router = self.routers.pop(node, None)
        last_seen = self.heartbeats.pop(node, time.time())
        if router is not None:
            await router.stop_tasks()
        for other in list(self.routers.values()):
            await other.node_dead(node, last_seen)
        self.remove_node(node)


@dataclass(frozen=True, slots=True)
class Post:
    """An envelope for another node's inbox (``node``), or for every node (``None``). A worker
    given a ``post_many`` sends the posts queued one after the other together (one pipeline:
    one write and one round trip instead of one per envelope)."""

    node: str | None
    data: bytes


PostMany = Callable[[list[Post]], Awaitable[None]]

#: The most posts, or staged jobs, a worker sends together.
POST_BATCH = 64


class Worker:
    """Runs queued jobs one after the other: the order of calls is the order of effects."""

    def __init__(
        self,
        expected: tuple[type[Exception], ...] = (),
        on_expected: Callable[[], None] | None = None,
        post_many: PostMany | None = None,
        store: Store | None = None,
    ) -> None:
        """``expected`` failures (the store is down) go to ``on_expected`` instead of the log:
        one warning per outage, not one stack trace per queued message."""
        self._queue: deque[tuple[Job | Post | Staged, asyncio.Future[None]]] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._expected = expected
        self._on_expected = on_expected
        self._post_many = post_many
        self._store = store

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    @property
    def running(self) -> bool:
        return self._task is not None

    def submit(self, job: Job | Post | Staged) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((job, done))
        self._ready.set()
        return done

    async def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            job, done = queue.popleft()
            if isinstance(job, Post):
                batch = [(job, done)]
                while queue and len(batch) < POST_BATCH and isinstance(queue[0][0], Post):
                    batch.append(queue.popleft())  # type: ignore[arg-type]
                await self._attempt(self._posting(batch), [d for _, d in batch])
            elif isinstance(job, Staged):
                staged = [(job, done)]
                while queue and len(staged) < POST_BATCH and isinstance(queue[0][0], Staged):
                    staged.append(queue.popleft())  # type: ignore[arg-type]
                await self._run_staged(staged)
            else:
                await self._attempt(job(), [done])

    async def _posting(self, batch: list[tuple[Post, asyncio.Future[None]]]) -> None:
        if self._post_many is None:
            raise RuntimeError("this worker cannot post")
        await self._post_many([post for post, _ in batch])

    async def _run_staged(self, staged: list[tuple[Staged, asyncio.Future[None]]]) -> None:
        """Jobs queued one after the other, in one batch; a job whose staging or finishing
        fails fails alone, a batch that fails fails them all."""
        if self._store is None:
            raise RuntimeError("this worker has no store")
        batch = Batch(self._store)
        finishing: list[tuple[Finish | None, asyncio.Future[None]]] = []
        for job, done in staged:
            try:
                finishing.append((job.stage(batch), done))
            except Exception as exc:
                self._failed(exc, [done])
        results: list[Any] = []
        if batch:
            try:
                results = await batch.execute()
            except Exception as exc:
                self._failed(exc, [done for _, done in finishing])
                return
        for finish, done in finishing:
            if finish is None:
                if not done.done():
                    done.set_result(None)
            else:
                await self._attempt(finish(results), [done])

    async def _attempt(self, work: Awaitable[object], futures: list[asyncio.Future[None]]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc, futures)
            return
        for done in futures:
            if not done.done():
                done.set_result(None)

    def _failed(self, exc: Exception, futures: list[asyncio.Future[None]]) -> None:
        if isinstance(exc, self._expected) and self._on_expected is not None:
            self._on_expected()
        else:
            log.exception("routing job failed", exc_info=exc)
        for done in futures:
            if not done.done():
                done.set_exception(exc)
                done.exception()  # retrieved: nobody has to await a fire-and-forget job

    async def stop(self) -> None:
        if self._task is not None:
            # A cancellation a store command swallowed left the worker waiting for its next
            # job, and the node's shutdown waiting for the worker (20 s in the tests).
            await cancel_until_done(self._task)
            self._task = None


class QueuedDelivery:
    """``deliver`` and ``send`` for both routers: jobs on the router's one worker, so envelopes
    leave in the order the call service produced them."""

    _worker: Worker

    async def lookup(self, device: DeviceRef, *, live_only: bool = True) -> Location | None:
        raise NotImplementedError

    async def _hand(self, node: str, envelope: Envelopes) -> None:
        raise NotImplementedError

    def deliver(self, device: DeviceRef, envelope: Deliver) -> None:
        async def job() -> None:
            location = await self.lookup(device)
            if location is not None:
                await self._hand(location.node, envelope)

        self._worker.submit(job)

    def send(self, node: str, envelope: Envelopes) -> None:
        async def job() -> None:
            await self._hand(node, envelope)

        self._worker.submit(job)


class LocalRouter(QueuedDelivery):
    def __init__(self, hub: LocalHub | None = None, node_id: str = "local") -> None:
        self._hub = hub or LocalHub()
        self._node_id = node_id
        self._inbox: Inbox | None = None
        self._worker = Worker()

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def listening(self) -> bool:
        return True

    async def start(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self._hub.routers[self._node_id] = self
        self._hub.heartbeats[self._node_id] = time.time()
        self._worker.start()

    async def stop_tasks(self) -> None:
        await self._worker.stop()

    async def close(self) -> None:
        await self._worker.stop()
        self._hub.routers.pop(self._node_id, None)
        self._hub.heartbeats.pop(self._node_id, None)
        self._hub.draining.discard(self._node_id)
        self._hub.remove_node(self._node_id)

    def register(self, device: DeviceRef, location: Location) -> Awaitable[None]:
        async def job() -> None:
            self._hub.put(device, location)

        return self._worker.submit(job)

    def unregister(self, device: DeviceRef) -> Awaitable[None]:
        async def job() -> None:
            location = self._hub.presence.get(device)
            if location is not None and location.node == self._node_id:
                self._hub.remove(device)

        return self._worker.submit(job)

    async def lookup(self, device: DeviceRef, *, live_only: bool = True) -> Location | None:
        location = self._hub.presence.get(device)
        if location is None or (live_only and location.node not in self._hub.routers):
            return None
        return location

    def stage_online(self, batch: Batch, account_id: str) -> Online:
        async def online(_results: list[object]) -> frozenset[DeviceRef]:
            return await self.online(account_id)

        return online

    async def online(self, account_id: str) -> frozenset[DeviceRef]:
        return frozenset(
            device
            for device, location in self._hub.of_account(account_id)
            if location.connected and location.node in self._hub.routers
        )

    def broadcast(self, envelope: Envelopes) -> None:
        async def job() -> None:
            for node in list(self._hub.routers):
                if node != self._node_id:
                    await self._hand(node, envelope)

        self._worker.submit(job)

    async def _hand(self, node: str, envelope: Envelopes) -> None:
        router = self._hub.routers.get(node)
        if router is not None and router._inbox is not None:
            await router._inbox.on_envelope(envelope)

    async def node_dead(self, node: str, last_seen: float) -> None:
        if self._inbox is not None:
            await self._inbox.on_node_dead(node, last_seen)

    async def live_nodes(self) -> dict[str, float]:
        now = time.time()
        return {node: now for node in self._hub.routers}

    async def set_draining(self) -> None:
        self._hub.draining.add(self._node_id)

    async def successors(self) -> list[str]:
        return sorted(
            n for n in self._hub.routers if n != self._node_id and n not in self._hub.draining
        )

    async def flush(self) -> None:
        await self._worker.submit(_nothing)


async def _nothing() -> None:
    return None
