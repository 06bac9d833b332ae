"""The operator's view of every live signaling node, from any node.

Each node writes a summary of itself to the store every ``SUMMARY_REFRESH_S``: its node entries
and the views of its live calls, exactly as its own operator API shows them (participants by
pseudonym only), under ``keys.node_summary`` with a TTL of ``SUMMARY_TTL_S``. The operator API
of any node lists its own calls and nodes as they are now, and those of every other node the
registry counts alive (``Router.live_nodes``: no SCAN), as of their last summary. Actions on a
call or device of another node go to that node through the router (``calls/operations.py``).

With the in-process router (a single node) nothing is written: there is no other node to read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from directory.storage import keys
from directory.storage.tasks import cancel_until_done
from directory.store import Store
from signaling.appkeys import CALLS, CONFIG, NODE, STORE, STORE_OUTAGE
from signaling.cluster.routing import Router
from signaling.protocol.operator import LiveCall, Node
from signaling.rest.operator_views import local_calls, local_nodes, view

log = logging.getLogger("callbook.operator")

_encode = msgspec.json.Encoder().encode


class NodeSummary(msgspec.Struct, kw_only=True):
    nodes: list[Node]
    calls: list[LiveCall]


_decode = msgspec.json.Decoder(NodeSummary).decode


class ClusterView:
    def __init__(self, store: Store, router: Router) -> None:
        self._redis: Any = store.redis
        self._router = router

    async def publish(self, summary: NodeSummary) -> None:
        key = keys.node_summary(self._router.node_id)
        await self._redis.set(key, _encode(summary), ex=keys.SUMMARY_TTL_S)

    async def forget(self) -> None:
        await self._redis.delete(keys.node_summary(self._router.node_id))

    async def others(self) -> dict[str, tuple[float, NodeSummary]]:
        """Every other live node's last summary, with its last heartbeat."""
        alive = await self._router.live_nodes()
        found: dict[str, tuple[float, NodeSummary]] = {}
        for node, beat in sorted(alive.items()):
            if node == self._router.node_id:
                continue
            raw = await self._redis.get(keys.node_summary(node))
            if raw is None:
                continue  # just started, or its store writes fail: it shows up next time
            try:
                found[node] = (beat, _decode(raw))
            except msgspec.DecodeError:
                log.warning("dropped an undecodable node summary")
        return found


CLUSTER_VIEW = web.AppKey("cluster_view", ClusterView)


async def cluster_view_ctx(app: web.Application) -> AsyncIterator[None]:
    """With several nodes: publish this node's summary every second while it runs."""
    if app[CONFIG].routing != "redis":
        yield
        return
    cluster = app[CLUSTER_VIEW] = ClusterView(app[STORE], app[CALLS].router)
    task = asyncio.create_task(_publish(app, cluster))
    yield
    await cancel_until_done(task)  # a store timeout can swallow one cancellation, and it loops
    with contextlib.suppress(RedisError, OSError, TimeoutError):
        await asyncio.wait_for(cluster.forget(), 2.0)


async def _publish(app: web.Application, cluster: ClusterView) -> None:
    while True:
        try:
            await cluster.publish(NodeSummary(nodes=local_nodes(app), calls=local_calls(app)))
        except (RedisError, OSError):
            app[STORE_OUTAGE].failed("the operator summary")  # one warning per outage
        await asyncio.sleep(keys.SUMMARY_REFRESH_S)


async def _others(app: web.Application) -> dict[str, tuple[float, NodeSummary]]:
    view = app.get(CLUSTER_VIEW)
    return {} if view is None else await view.others()


async def all_calls(app: web.Application) -> list[LiveCall]:
    """The live calls of every live node, this node's as they are now."""
    calls = {c.id: c for c in local_calls(app)}
    for _, summary in (await _others(app)).values():
        for call in summary.calls:
            calls.setdefault(call.id, call)
    return sorted(calls.values(), key=lambda c: (c.started_at, c.id))


async def all_nodes(app: web.Application) -> list[Node]:
    """Every live signaling node (and media node) with its last heartbeat."""
    nodes = local_nodes(app)
    for node_id, (beat, summary) in (await _others(app)).items():
        for node in summary.nodes:
            if node.id == node_id:
                node.last_heartbeat = int(beat)
            nodes.append(node)
    # Every signaling node lists the media nodes it knows: each once, as last heard of.
    latest: dict[tuple[str, str], Node] = {}
    for node in nodes:
        known = latest.get((node.kind, node.id))
        if known is None or node.last_heartbeat > known.last_heartbeat:
            latest[(node.kind, node.id)] = node
    return list(latest.values())


async def find_call(app: web.Application, call_id: str) -> LiveCall | None:
    """A live call by id: this node's, or the last summary of the live node that runs it."""
    service = app[CALLS]
    live = service.live_call(call_id)
    if live is not None:
        return view(app, live, service.now())
    for _, summary in (await _others(app)).values():
        for call in summary.calls:
            if call.id == call_id and call.node != app[NODE].id:
                return call
    return None
