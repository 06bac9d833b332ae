"""The pub/sub channels between signaling nodes: one inbox per node, one broadcast channel.

On one Redis/Valkey server both are plain pub/sub on one connection. On a Redis Cluster, plain
``PUBLISH`` is relayed to every shard over the cluster bus, which is what the broadcast channel
wants and what a node's inbox does not: inboxes use sharded pub/sub (``SPUBLISH`` /
``SSUBSCRIBE``), so a message for one node touches only the shard that owns the inbox's slot.
The two then arrive on two connections; ``Subscription`` merges them into one ordered stream per
channel (there is no order between an inbox and the broadcast channel in a cluster; see
docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from directory.storage import keys
from directory.store import Store
from signaling.cluster.routing_local import Post

#: How long one wait for a sharded message lasts before the reader looks again (it also reads
#: the per-shard connections redis-py adds after a slot moves).
_SHARDED_POLL_S = 1.0
#: How long closing a subscription may take before it is abandoned.
_CLOSE_S = 2.0


class Channels:
    """Publishing on one store: to one node's inbox, or to every node."""

    def __init__(self, store: Store) -> None:
        self._redis: Any = store.redis
        self._sharded = store.cluster

    async def to_node(self, node: str, data: bytes) -> None:
        if self._sharded:
            await self._redis.spublish(keys.node_inbox(node), data)
        else:
            await self._redis.publish(keys.node_inbox(node), data)

    async def to_all(self, data: bytes) -> None:
        await self._redis.publish(keys.broadcast_channel(), data)

    async def post_many(self, posts: list[Post]) -> None:
        """Several envelopes in order, in one pipeline on one server (a cluster's go one by
        one: each inbox lives on its own shard)."""
        if self._sharded or len(posts) == 1:
            for post in posts:
                if post.node is None:
                    await self.to_all(post.data)
                else:
                    await self.to_node(post.node, post.data)
            return
        pipe = self._redis.pipeline(transaction=False)
        for post in posts:
            channel = keys.broadcast_channel() if post.node is None else keys.node_inbox(post.node)
            pipe.publish(channel, post.data)
        await pipe.execute()

    async def subscribe(self, node: str) -> Subscription:
        """Listen on ``node``'s inbox and on the broadcast channel."""
        if self._sharded:
            return await _ClusterSubscription.open(self._redis, node)
        return await _PlainSubscription.open(self._redis, node)


class Subscription(ABC):
    @abstractmethod
    def messages(self) -> AsyncIterator[str | bytes]:
        """The payloads, in order per channel; raises the store's error when a connection is
        lost (the caller subscribes afresh)."""

    @abstractmethod
    async def close(self) -> None: ...


class _PlainSubscription(Subscription):
    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    @classmethod
    async def open(cls, redis: Any, node: str) -> _PlainSubscription:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(keys.node_inbox(node), keys.broadcast_channel())
        except BaseException:
            await _close(pubsub)
            raise
        return cls(pubsub)

    async def messages(self) -> AsyncIterator[str | bytes]:
        async for message in self._pubsub.listen():
            if message.get("type") == "message":
                yield message["data"]

    async def close(self) -> None:
        await _close(self._pubsub)


class _ClusterSubscription(Subscription):
    """Two connections (the inbox's shard, and one node for the broadcast channel), each read
    by its own task into one queue; a reader's error goes through the queue too."""

    def __init__(self, inbox: Any, broadcast: Any) -> None:
        self._inbox = inbox
        self._broadcast = broadcast
        self._queue: asyncio.Queue[str | bytes | BaseException] = asyncio.Queue()
        self._readers = [
            asyncio.create_task(self._read_inbox()),
            asyncio.create_task(self._read_broadcast()),
        ]

    @classmethod
    async def open(cls, redis: Any, node: str) -> _ClusterSubscription:
        inbox, broadcast = redis.pubsub(), redis.pubsub()
        try:
            await inbox.ssubscribe(keys.node_inbox(node))
            await broadcast.subscribe(keys.broadcast_channel())
        except BaseException:
            await _close(inbox)
            await _close(broadcast)
            raise
        return cls(inbox, broadcast)

    async def _read_inbox(self) -> None:
        try:
            while True:
                message = await self._inbox.get_sharded_message(
                    ignore_subscribe_messages=True, timeout=_SHARDED_POLL_S
                )
                if message is not None and message.get("type") == "smessage":
                    self._queue.put_nowait(message["data"])
        except Exception as exc:  # handed to the consumer, which resubscribes
            self._queue.put_nowait(exc)

    async def _read_broadcast(self) -> None:
        try:
            async for message in self._broadcast.listen():
                if message.get("type") == "message":
                    self._queue.put_nowait(message["data"])
        except Exception as exc:
            self._queue.put_nowait(exc)

    async def messages(self) -> AsyncIterator[str | bytes]:
        while True:
            item = await self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.wait(self._readers, timeout=_CLOSE_S)
        await _close(self._inbox)
        await _close(self._broadcast)


async def _close(pubsub: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pubsub.aclose(), _CLOSE_S)
