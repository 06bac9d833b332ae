"""The operator API of one node sees and acts on every node: a call node B runs is listed,
revealed and ended, and a device on node B disconnected, all through node A, and audited."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from directory.storage import keys
from directory.store import Store
from signaling.appkeys import NODE
from signaling.protocol import messages as m
from signaling.sdk.line import Line, LineClosed
from tests.conftest import MakeServer, Server, unique
from tests.redis_cluster import BOTH_STORES
from tests.test_cluster import _on
from tests.test_operator import REASON, _connected_call, _http, _operator

pytestmark = BOTH_STORES


async def _eventually(check: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
    """Poll until ``check`` gives something true (summaries are written every second)."""
    async with asyncio.timeout(within):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.1)


async def _two_nodes(make_server: MakeServer) -> tuple[Server, Server]:
    return (
        await make_server(routing="redis", node_id=unique("node-a")),
        await make_server(routing="redis", node_id=unique("node-b")),
    )


async def _listed(node: Server, op: str, call_id: str) -> dict[str, Any] | None:
    status, listing = await _http(node, "GET", "/v1/operator/calls", op)
    assert status == 200
    return next((c for c in listing["calls"] if c["id"] == call_id), None)


async def _actions(store: Store) -> list[tuple[str, str]]:
    entries = await store.redis.xrange(keys.audit_log())
    return [(fields["action"], fields["target"]) for _, fields in entries]


async def test_node_a_lists_every_live_node_with_its_heartbeat(
    make_server: MakeServer, store: Store
) -> None:
    node_a, node_b = await _two_nodes(make_server)
    ids = {node_a.app[NODE].id, node_b.app[NODE].id}
    op = await _operator(store)

    async def both() -> dict[str, Any] | None:
        status, body = await _http(node_a, "GET", "/v1/operator/nodes", op)
        assert status == 200
        signaling = {n["id"]: n for n in body["nodes"] if n["kind"] == "signaling"}
        return signaling if set(signaling) == ids else None

    nodes = await _eventually(both)
    assert all(node["last_heartbeat"] > 0 for node in nodes.values())


async def test_a_call_on_node_b_is_listed_revealed_and_ended_through_node_a(
    make_server: MakeServer, store: Store
) -> None:
    node_a, node_b = await _two_nodes(make_server)
    op = await _operator(store)
    alice = _on(node_b, await node_a.signup("alice"))
    bob = _on(node_b, await node_a.signup("bob"))
    async with _connected_call(alice, bob, "bob") as (a, b, call_id):
        listed = await _eventually(lambda: _listed(node_a, op, call_id))
        where = (listed["node"], listed["state"], listed["kind"])
        assert where == (node_b.app[NODE].id, "connected", "1:1")
        assert "alice" not in json.dumps(listed) and "bob" not in json.dumps(listed)
        status, one = await _http(node_a, "GET", f"/v1/operator/calls/{call_id}", op)
        assert (status, one["participants"]) == (200, listed["participants"])

        path = f"/v1/operator/calls/{call_id}/reveal"
        status, revealed = await _http(node_a, "POST", path, op, {"reason": REASON})
        assert status == 200
        assert {(p["role"], p["handle"]) for p in revealed["participants"]} == {
            ("caller", "alice"), ("callee", "bob"),
        }  # fmt: skip
        assert {p["participant"] for p in revealed["participants"]} == set(listed["participants"])

        path = f"/v1/operator/calls/{call_id}/end"
        status, _ = await _http(node_a, "POST", path, op, {"reason": REASON})
        assert status == 204
        assert (await a.expect(m.Ended)).reason == "operator"
        assert (await b.expect(m.Ended)).reason == "operator"
        status, problem = await _http(node_a, "POST", path, op, {"reason": REASON})
        assert (status, problem["code"]) == (404, "not_found")
    assert await _actions(store) == [("reveal", call_id), ("end_call", call_id)]
    await _eventually(lambda: _gone(node_a, op, call_id))


async def _gone(node: Server, op: str, call_id: str) -> bool:
    return await _listed(node, op, call_id) is None


async def test_a_device_on_node_b_is_disconnected_through_node_a(
    make_server: MakeServer, store: Store
) -> None:
    node_a, node_b = await _two_nodes(make_server)
    op = await _operator(store)
    alice = _on(node_b, await node_a.signup("alice"))
    assert alice.profile is not None
    device = f"{alice.profile.account_id}/{alice.profile.device_id}"
    async with Line(alice) as line:
        await line.open()
        # The welcome can come before the node has written the device's presence.
        presence, device_id = keys.presence(alice.profile.account_id), alice.profile.device_id
        await _eventually(lambda: store.redis.hexists(presence, device_id))
        path = f"/v1/operator/devices/{device}/disconnect"
        status, _ = await _http(node_a, "POST", path, op, {"reason": REASON})
        assert status == 204
        with pytest.raises(LineClosed) as closed:
            await line.receive(5)
        assert closed.value.code == 4002
    unknown = f"/v1/operator/devices/{alice.profile.account_id}/{'0' * 32}/disconnect"
    status, problem = await _http(node_a, "POST", unknown, op, {"reason": REASON})
    assert (status, problem["code"]) == (404, "not_found")
    assert await _actions(store) == [("disconnect_device", device)]


async def test_the_event_stream_of_node_a_carries_calls_of_node_b(
    make_server: MakeServer, store: Store
) -> None:
    """What the dashboard (/operator) reads."""
    node_a, node_b = await _two_nodes(make_server)
    op = await _operator(store)
    alice = _on(node_b, await node_a.signup("alice"))
    bob = _on(node_b, await node_a.signup("bob"))
    async with (
        _connected_call(alice, bob, "bob") as (_a, _b, call_id),
        aiohttp.ClientSession() as http,
        http.get(
            f"{node_a.url}/v1/operator/events", headers={"Authorization": f"Bearer {op}"}
        ) as response,
    ):
        async with asyncio.timeout(10):
            async for line in response.content:
                if line.startswith(b"data: "):
                    snapshot = json.loads(line[len(b"data: ") :])
                    if any(c["id"] == call_id for c in snapshot["calls"]):
                        break
        assert {n["id"] for n in snapshot["nodes"]} >= {node_a.app[NODE].id, node_b.app[NODE].id}
