"""The cluster router: presence and node heartbeats in the store, envelopes by pub/sub.

- Each node writes its heartbeat into ``keys.nodes()`` every ``NODE_HEARTBEAT_S``; one older than
  ``NODE_DEAD_AFTER_S`` counts as dead, and every survivor reports it to its inbox once.
- Each device connected to (or resumable on) this node has an entry in its account's presence
  hash (``keys.presence``), refreshed every ``PRESENCE_REFRESH_S``; the hash expires
  ``PRESENCE_TTL_S`` after the last refresh, and readers ignore entries older than that or
  written by a dead node.
- Envelopes for a node are published on its inbox channel (sharded pub/sub on a Redis Cluster);
  device events on the broadcast one (``signaling/cluster/channels.py``). Pub/sub, not Streams: see
  docs/scaling.md.

Everything this node sends, presence writes included, leaves through one ordered worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import msgspec
from redis.exceptions import RedisError

from directory.batch import Batch
from directory.storage import keys
from directory.storage.tasks import cancel_until_done
from directory.store import Store
from signaling.calls.machine import DeviceRef
from signaling.cluster.channels import Channels, Subscription
from signaling.cluster.liveness import judge, successors
from signaling.cluster.outage import StoreOutage
from signaling.cluster.routing import (
    Deliver,
    DeviceEvent,
    Envelopes,
    Inbox,
    Location,
    Online,
    PresenceBack,
)
from signaling.cluster.routing_local import Post, QueuedDelivery, Worker

#: How long each step of closing may take before it is abandoned.
CLOSE_STEP_S = 2.0
#: Pause between two attempts to subscribe while the store is away.
RESUBSCRIBE_S = 0.5

log = logging.getLogger("callbook.routing")

_encode = msgspec.json.Encoder().encode
_decode_envelope = msgspec.json.Decoder(Envelopes).decode
_decode_location = msgspec.json.Decoder(Location).decode

#: Deletes a presence entry only if this node wrote it (the device may have moved meanwhile).
_UNREGISTER = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value and string.find(value, ARGV[2], 1, true) then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


class RedisRouter(QueuedDelivery):
    def __init__(
        self,
        store: Store,
        node_id: str,
        *,
        clock: Callable[[], float] = time.time,
        heartbeat_s: float = keys.NODE_HEARTBEAT_S,
        dead_after_s: float = keys.NODE_DEAD_AFTER_S,
        presence_ttl_s: int = keys.PRESENCE_TTL_S,
        presence_refresh_s: float = keys.PRESENCE_REFRESH_S,
        outage: StoreOutage | None = None,
    ) -> None:
        self._store = store
        self._redis: Any = store.redis
        self._channels = Channels(store)
        self._node_id = node_id
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._dead_after_s = dead_after_s
        self._presence_ttl_s = presence_ttl_s
        self._presence_refresh_s = presence_refresh_s
        self._inbox: Inbox | None = None
        self._outage = outage or StoreOutage()
        self._worker = Worker(
            (RedisError, OSError),
            lambda: self._outage.failed("routing"),
            post_many=self._channels.post_many,
        )
        self._tasks: list[asyncio.Task[None]] = []
        # What this node registered, refreshed by the heartbeat.
        self._mine: dict[DeviceRef, Location] = {}
        # Where devices on other nodes were last found, for delivering to them without a
        # look-up per message: forgotten when the device connects, drops or resumes anywhere
        # (its device events), when the entry is older than the presence TTL or its node is
        # dead; a message that still reaches a node the device left is passed on from there.
        self._located: dict[DeviceRef, Location] = {}
        # Nodes seen alive at the last heartbeat, with their last beat.
        self._alive: dict[str, float] = {}
        self._reported_dead: set[str] = set()
        self._draining = False
        self._listening = False
        # Until when ringing calls look for their callees again (a node came back).
        self._settle_until = float("-inf")
        self._node_marker = f'"node":{_encode(node_id).decode()}'

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def listening(self) -> bool:
        return self._listening

    async def start(self, inbox: Inbox) -> None:
        self._inbox = inbox
        # A node starts while the store is away (not ready until it is back): the listener
        # subscribes, and the heartbeat beats, as soon as it answers.
        subscription: Subscription | None = None
        try:
            subscription = await self._channels.subscribe(self._node_id)
            await self._beat()
        except (RedisError, OSError):
            self._outage.failed("the start")
        self._worker.start()
        self._tasks = [
            asyncio.create_task(self._listen(subscription)),
            asyncio.create_task(self._heartbeat()),
        ]

    async def close(self) -> None:
        # Every step is bounded: a store that does not answer (or a connection pool that is
        # exhausted) must not keep a node from shutting down; the TTLs clean up after it.
        # Until each task is gone: a cancellation swallowed by a store command in flight left
        # the heartbeat of a closed router beating on, keeping its node "alive" for ever.
        await asyncio.gather(*(cancel_until_done(task) for task in self._tasks))
        self._tasks = []
        if self._worker.running:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(self.flush(), CLOSE_STEP_S)
        await self._worker.stop()
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self._forget_mine(), CLOSE_STEP_S)
        self._mine.clear()

    async def _forget_mine(self) -> None:
        for device in list(self._mine):
            await self._delete(device)
        await self._redis.zrem(keys.nodes(), self._node_id)
        await self._redis.zrem(keys.nodes_draining(), self._node_id)

    # --- presence ----------------------------------------------------------------------------

    def register(self, device: DeviceRef, location: Location) -> Awaitable[None]:
        self._mine[device] = location
        self._located.pop(device, None)

        async def job() -> None:
            await self._write([(device, location)])

        return self._worker.submit(job)

    def unregister(self, device: DeviceRef) -> Awaitable[None]:
        self._mine.pop(device, None)

        async def job() -> None:
            await self._delete(device)

        return self._worker.submit(job)

    async def _write(self, entries: list[tuple[DeviceRef, Location]]) -> None:
        now = self._clock()
        pipe = self._redis.pipeline(transaction=False)
        for device, location in entries:
            key = keys.presence(device.account_id)
            stamped = msgspec.structs.replace(location, at=now)
            pipe.hset(key, device.device_id, _encode(stamped).decode())
            pipe.expire(key, self._presence_ttl_s)
        await pipe.execute()

    async def _delete(self, device: DeviceRef) -> None:
        await self._store.run_script(
            _UNREGISTER,
            [keys.presence(device.account_id)],
            [device.device_id, self._node_marker],
        )

    def _fresh(self, location: Location, now: float) -> bool:
        if now - location.at > self._presence_ttl_s:
            return False
        if location.node == self._node_id:
            return True
        beat = self._alive.get(location.node)
        return beat is not None and now - beat <= self._dead_after_s

    async def _refresh_alive(self, nodes: set[str]) -> None:
        """Nodes unknown to the last heartbeat (started since): ask the registry."""
        unknown = [n for n in nodes if n != self._node_id and n not in self._alive]
        if unknown:
            scores = await self._redis.zmscore(keys.nodes(), unknown)
            for node, score in zip(unknown, scores, strict=True):
                if score is not None and node not in self._reported_dead:
                    self._alive[node] = float(score)

    async def lookup(self, device: DeviceRef, *, live_only: bool = True) -> Location | None:
        raw = await self._redis.hget(keys.presence(device.account_id), device.device_id)
        if raw is None:
            return None
        location = _decode_location(raw)
        if not live_only:
            return location
        await self._refresh_alive({location.node})
        return location if self._fresh(location, self._clock()) else None

    async def online(self, account_id: str) -> frozenset[DeviceRef]:
        batch = Batch(self._store)
        return await self.stage_online(batch, account_id)(await batch.execute())

    def stage_online(self, batch: Batch, account_id: str) -> Online:
        at = batch.command("HGETALL", keys.presence(account_id))

        async def online(results: list[object]) -> frozenset[DeviceRef]:
            return await self._online(account_id, cast(dict[str, str], results[at]))

        return online

    async def _online(self, account_id: str, entries: dict[str, str]) -> frozenset[DeviceRef]:
        found = {device_id: _decode_location(raw) for device_id, raw in entries.items()}
        await self._refresh_alive({loc.node for loc in found.values()})
        now = self._clock()
        return frozenset(
            DeviceRef(account_id, device_id)
            for device_id, location in found.items()
            if location.connected and self._fresh(location, now)
        )

    # --- envelopes ---------------------------------------------------------------------------

    def broadcast(self, envelope: Envelopes) -> None:
        self._worker.submit(Post(None, _encode(envelope)))

    def send(self, node: str, envelope: Envelopes) -> None:
        if node == self._node_id:
            super().send(node, envelope)
        else:
            self._worker.submit(Post(node, _encode(envelope)))

    def deliver(self, device: DeviceRef, envelope: Deliver) -> None:
        located = self._located.get(device)
        if located is not None and not envelope.rerouted and self._fresh(located, self._clock()):
            self.send(located.node, envelope)
        else:
            self._worker.submit(partial(self._look_up_and_deliver, device, envelope))

    async def _look_up_and_deliver(self, device: DeviceRef, envelope: Deliver) -> None:
        location = await self.lookup(device)
        if location is None:
            self._located.pop(device, None)
            return
        if location.node != self._node_id:
            self._located[device] = location
        elif envelope.rerouted:
            return  # sent here by a node the store says it is on: nowhere else to try
        await self._hand(location.node, envelope)

    async def _hand(self, node: str, envelope: Envelopes) -> None:
        if node == self._node_id:
            if self._inbox is not None:
                await self._inbox.on_envelope(envelope)
            return
        await self._channels.to_node(node, _encode(envelope))

    async def flush(self) -> None:
        await self._worker.submit(_nothing)

    async def _listen(self, subscription: Subscription | None) -> None:
        """Receive envelopes; when the connection goes (the store is away), subscribe again
        every RESUBSCRIBE_S until it is back. What was published meanwhile is lost (pub/sub)."""
        while True:
            try:
                if subscription is None:
                    subscription = await self._channels.subscribe(self._node_id)
                self._listening = True
                async for data in subscription.messages():
                    await self._receive(data)
                # The messages end without subscriptions: never spin on it, subscribe afresh.
            except asyncio.CancelledError:
                if subscription is not None:
                    await subscription.close()
                raise
            except (RedisError, OSError):
                self._outage.failed("pub/sub")
            self._listening = False
            if subscription is not None:
                await subscription.close()
                subscription = None
            await asyncio.sleep(RESUBSCRIBE_S)

    async def _receive(self, data: str | bytes) -> None:
        try:
            envelope = _decode_envelope(data)
        except msgspec.DecodeError:
            log.warning("dropped an undecodable envelope")
            return
        if isinstance(envelope, DeviceEvent):
            self._located.pop(envelope.device, None)
        if envelope.origin == self._node_id or self._inbox is None:
            return
        try:
            await self._inbox.on_envelope(envelope)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handling a %s envelope failed", type(envelope).__name__)

    # --- liveness ----------------------------------------------------------------------------

    async def _beat(self) -> bool:
        """Write this node's heartbeat and judge the others; True if one of them is back after
        being judged dead."""
        now = self._clock()
        await self._redis.zadd(keys.nodes(), {self._node_id: now})
        if self._draining:
            await self._mark_draining(now)
        beats = await self._redis.zrange(keys.nodes(), 0, -1, withscores=True)
        self._outage.ok()
        judged = judge(
            ((node, float(score)) for node, score in beats),
            me=self._node_id,
            now=now,
            dead_after_s=self._dead_after_s,
            steady=self._outage.steady_for() >= self._dead_after_s,
            previous=self._alive,
            reported=self._reported_dead,
        )
        back = bool(self._reported_dead & judged.alive.keys())
        self._reported_dead -= set(judged.alive)  # back (a restart under the same id)
        self._alive = judged.alive
        await self._redis.zremrangebyscore(keys.nodes(), "-inf", now - keys.NODE_FORGET_AFTER_S)
        if judged.dead:
            # Before any takeover: a judged node back from an outage of its own must not
            # rewrite the records of calls that move now (signaling/calls/records.py).
            dead_key = keys.nodes_judged_dead()
            await self._redis.zadd(dead_key, dict.fromkeys((n for n, _ in judged.dead), now))
            await self._redis.zremrangebyscore(dead_key, "-inf", now - keys.NODE_FORGET_AFTER_S)
        for node, last_seen in judged.dead:
            self._reported_dead.add(node)
            if self._inbox is not None:
                try:
                    await self._inbox.on_node_dead(node, last_seen)
                except Exception:
                    log.exception("handling the death of a node failed")
        return back

    async def _heartbeat(self) -> None:
        last_refresh = self._clock()
        lapsed = rewrite = False
        outages = self._outage.ended
        writing: asyncio.Future[None] | None = None  # the rewrite after an outage
        while True:
            # While the store is away, try more often: the sooner a node is back (presence
            # written again), the sooner its devices can be called.
            quick = lapsed or rewrite or writing is not None
            await asyncio.sleep(self._heartbeat_s / 4 if quick else self._heartbeat_s)
            try:
                back = await self._beat()
            except (RedisError, OSError):
                self._outage.failed("heartbeat")
                lapsed = True
                continue
            lapsed = False
            # Whoever noticed the outage (this heartbeat, the listener, a request).
            if self._outage.ended != outages:
                outages = self._outage.ended
                await self._drop_idle_connections()
                rewrite = True
            if writing is not None and writing.done():
                rewrite = rewrite or writing.cancelled() or writing.exception() is not None
                writing = None
            # Presence may have expired: rewrite it now, not in 3 s; once envelopes reach this
            # node again, so that whoever finds a device can reach it.
            if rewrite and writing is None and self._listening:
                rewrite = False
                last_refresh = self._clock()
                writing = self._rewrite()
            if self._clock() - last_refresh >= self._presence_refresh_s:
                last_refresh = self._clock()
                self._forget_stale_locations()
                if self._mine:
                    self._worker.submit(self._refresh_job(list(self._mine.items())))
            if back:
                self._settle_until = self._clock() + self._settle_s()
            await self._settle()

    def _rewrite(self) -> asyncio.Future[None]:
        """Write every presence entry of this node, then say so (``PresenceBack``): calls
        placed meanwhile ring its devices. The future of the write."""
        if not self._mine:
            return self._worker.submit(_nothing)
        written = self._worker.submit(self._refresh_job(list(self._mine.items())))
        self.broadcast(PresenceBack(origin=self._node_id, account_id="", device_id=""))
        return written

    def _settle_s(self) -> float:
        """Long enough for every live node to have rewritten its presence after an outage."""
        return self._presence_refresh_s + 2 * self._heartbeat_s

    async def _settle(self) -> None:
        """Just after an outage (this node's, or another node's), calls placed meanwhile may
        have found their callees offline: the inbox looks for them again."""
        settling = self._outage.steady_for() < self._settle_s()
        if self._inbox is None or not (settling or self._clock() < self._settle_until):
            return
        try:
            await self._inbox.on_presence_settling()
        except (RedisError, OSError):
            self._outage.failed("heartbeat")
        except Exception:
            log.exception("looking for the callees of ringing calls failed")

    def _forget_stale_locations(self) -> None:
        now = self._clock()
        for device in [d for d, loc in self._located.items() if not self._fresh(loc, now)]:
            del self._located[device]

    async def _drop_idle_connections(self) -> None:
        """Pooled connections opened before the store went away point at a server that is
        gone. The pool replaces one it sees closed when it hands it out; one whose end never
        reached this node (a partition, a store that came back on another machine) would fail
        its next command. Close them now (a cluster client has no single pool and reconnects
        per node by itself)."""
        pool = getattr(self._redis, "connection_pool", None)
        if pool is not None:
            with contextlib.suppress(RedisError, OSError):
                await pool.disconnect(inuse_connections=False)

    def _refresh_job(
        self, entries: list[tuple[DeviceRef, Location]]
    ) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            await self._write(entries)

        return job

    async def set_draining(self) -> None:
        self._draining = True  # the heartbeat keeps the entry fresh from now on
        await self._mark_draining(self._clock())

    async def _mark_draining(self, now: float) -> None:
        draining = keys.nodes_draining()
        await self._redis.zadd(draining, {self._node_id: now})
        await self._redis.zremrangebyscore(draining, "-inf", now - keys.NODE_FORGET_AFTER_S)

    async def successors(self) -> list[str]:
        beats = await self._redis.zrange(keys.nodes(), 0, -1, withscores=True)
        draining = await self._redis.zrange(keys.nodes_draining(), 0, -1)
        return successors(
            ((node, float(score)) for node, score in beats),
            draining,
            me=self._node_id,
            now=self._clock(),
            fresh_s=keys.NODE_SUCCESSOR_FRESH_S,
        )

    async def live_nodes(self) -> dict[str, float]:
        now = self._clock()
        beats = await self._redis.zrangebyscore(
            keys.nodes(), now - self._dead_after_s, "+inf", withscores=True
        )
        return {node: float(score) for node, score in beats}


async def _nothing() -> None:
    return None
