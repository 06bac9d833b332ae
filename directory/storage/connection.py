"""How to reach the store: one Redis/Valkey server or a Redis Cluster, each command bounded in time,
and which errors mean "the store cannot answer now" (``STORE_UNAVAILABLE``)."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, DefaultParser, SSLConnection
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig


class StoreRefused(ResponseError):
    """``MISCONF``: the store cannot persist (its disk is full, or a save failed) and refuses
    every write, and PING, until it can again."""


class _Parser(DefaultParser):  # type: ignore[misc,valid-type]
    # redis-py raises a bare ResponseError for MISCONF; a type of its own lets the callers
    # tell "the store refuses writes now" from a bug of ours.
    EXCEPTION_CLASSES: ClassVar = {**DefaultParser.EXCEPTION_CLASSES, "MISCONF": StoreRefused}


#: What a store that cannot answer now raises: a lost connection or a timeout; a store that
#: refuses writes because its disk (MISCONF) or its memory (OOM) is full, or that is a replica
#: (READONLY, during a failover); on a Redis Cluster also a cluster that is down, failing over
#: or has a slot without a primary. Callers answer these with ``unavailable``: nothing was
#: written, and a retry later succeeds. Anything else from the store is a bug.
STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    StoreRefused,
    OutOfMemoryError,
    ReadOnlyError,
    ClusterDownError,
    MasterDownError,
    TryAgainError,
    SlotNotCoveredError,
)


#: A store that does not accept a connection within this long counts as away (503 at once).
CONNECT_TIMEOUT_S = 1.0
#: A store that accepted but does not answer (frozen, partitioned) fails a command after this
#: long; above the longest blocking read we issue (webhook delivery's ``XREADGROUP BLOCK``).
COMMAND_TIMEOUT_S = 5.0


def connect(
    url: str, max_connections: int = 64, wait_s: float = 5.0, *, cluster: bool = False
) -> Any:
    """A client for one Redis/Valkey server (``redis://``, ``rediss://`` or ``unix://``), or
    with ``cluster`` for a Redis Cluster (``url``: one or more comma-separated seed nodes).

    A burst beyond the pool waits up to ``wait_s`` for a free connection instead of failing.
    Every command is bounded in time, so a store that goes away makes requests fail (503), not
    hang; nothing is retried here: the callers answer ``unavailable`` and the client retries.
    """
    if cluster:
        return connect_cluster(url)
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        protocol=3,
        max_connections=max_connections,
        timeout=wait_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        parser_class=_Parser,
        # With maintenance notifications on (redis-py 8's default for RESP3, "auto", which
        # stays on when the server does not know them, as Valkey does not), the pool skips its
        # check that a pooled connection is still open: after a store outage every pooled
        # connection failed its next command once.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    client: Redis = Redis.from_pool(pool)  # the client owns the pool and closes it
    return client


def connect_cluster(seeds: str, max_connections_per_node: int = 256) -> RedisCluster:
    """A Redis Cluster client from comma-separated seed URLs (``redis://`` or ``rediss://``).

    The first URL gives the credentials and TLS settings; the others only add seed addresses,
    so that the client starts while a seed is down. The client learns every node from the slot
    map. Its pools are per node and, unlike the single-server pool, cannot wait for a free
    connection (redis-py has no blocking cluster pool): a burst beyond
    ``max_connections_per_node`` commands in flight on one node fails with a connection error
    (``unavailable`` to the caller), hence a larger bound than the single-server pool's.
    """
    urls = [u.strip() for u in seeds.split(",") if u.strip()]
    if not urls:
        raise ValueError("a Redis Cluster needs at least one seed URL")
    extra = [_seed(u) for u in urls[1:]]
    client: RedisCluster = _Cluster.from_url(
        urls[0],
        startup_nodes=extra or None,
        decode_responses=True,
        protocol=3,
        max_connections=max_connections_per_node,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
    )
    return client


class _ClosedUnderUs:
    """redis-py 8.1's cluster pool disconnects a node's free connections after an error on
    that node, without waiting for commands that take one of them meanwhile: such a command
    found its socket gone (``AttributeError`` on ``None``, a 500) right after a cluster node
    came back. A lost connection is what it is: the cluster client retries it like one."""

    _writer: Any

    async def _send_packed_command(self, command: Any) -> None:
        if self._writer is None:
            raise RedisConnectionError("the connection was closed while in use")
        await super()._send_packed_command(command)  # type: ignore[misc]


class _ClusterConnection(_ClosedUnderUs, Connection):
    pass


class _ClusterSSLConnection(_ClosedUnderUs, SSLConnection):
    pass


class _Cluster(RedisCluster):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # RedisCluster takes no parser or connection class: set them where its nodes'
        # connections are made (the shared template, and the seed nodes built from a copy).
        template = self.nodes_manager.connection_kwargs
        ssl = issubclass(template.get("connection_class", Connection), SSLConnection)
        connection_class = _ClusterSSLConnection if ssl else _ClusterConnection
        template["parser_class"] = _Parser
        template["connection_class"] = connection_class
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_kwargs["parser_class"] = _Parser
            node.connection_class = connection_class

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except SlotNotCoveredError:
            raise
        except RedisClusterException as exc:
            # redis-py raises its generic cluster error when no seed answers; to the callers that
            # is a store outage like a lost connection (``unavailable``, and the node starts).
            raise RedisConnectionError("no node of the Redis Cluster answers") from exc


def _seed(url: str) -> ClusterNode:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a redis:// or rediss:// URL of a cluster node")
    return ClusterNode(parts.hostname, parts.port or 6379)
