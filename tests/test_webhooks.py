"""Lifecycle webhooks end to end: real calls, a real Valkey stream, a real HTTP receiver.

Receivers verify signatures and see unique ids, each call's events in order, retries of the same
id after failures, dead letters after the last attempt, and a takeover of another node's pending
deliveries. No assertion depends on timing: everything polls with a deadline.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from directory.inventory import INVENTORY, glob
from directory.storage import keys
from directory.store import Store
from signaling.appkeys import METRICS
from signaling.calls.lifecycle import LifecycleEvent
from signaling.metrics import Metrics
from signaling.protocol import messages as m
from signaling.sdk.line import Line
from signaling.webhooks.deliver import Deliverer, Settings, group_name
from signaling.webhooks.sink import StreamSink
from tests.conftest import MakeServer

SECRET = b"webhook-test-secret"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    event: dict[str, Any]
    status: int


@dataclass
class Receiver:
    """Records every request; ``answer`` decides each status (200 unless told otherwise)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    answer: Callable[[dict[str, Any], int], int] = lambda _event, _attempt: 200

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        event = json.loads(body)
        attempt = 1 + sum(1 for r in self.requests if r.event["id"] == event["id"])
        status = self.answer(event, attempt)
        self.requests.append(Received(dict(request.headers), body, event, status))
        return web.Response(status=status)

    def accepted(self, call_id: str | None = None) -> list[dict[str, Any]]:
        return [
            r.event
            for r in self.requests
            if 200 <= r.status < 300 and (call_id is None or r.event["call_id"] == call_id)
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    found.url = str(server.make_url("/hook"))
    yield found
    await server.close()


async def until(check: Callable[[], bool], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _verified(received: Received) -> bool:
    expected = "sha256=" + hmac.new(SECRET, received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers["X-Callbook-Signature"], expected)


M = TypeVar("M", bound=m.ServerMessage)


async def _skip_to(line: Line, kind: type[M]) -> M:
    while not isinstance(message := await line.receive(within=10), kind):
        pass
    return message


FAST = {
    "webhook_secret": SECRET.decode(),
    "webhook_backoff_s": 0.01,
    "webhook_backoff_max_s": 0.05,
    "webhook_poll_s": 0.05,
    "webhook_lease_s": 1.0,
}


# --- through a real server and real calls ------------------------------------------------------


async def test_one_to_one_call_events_are_signed_ordered_and_pseudonymous(
    make_server: MakeServer, receiver: Receiver
) -> None:
    server = await make_server(webhook_urls=(receiver.url,), **FAST)
    alice = await server.signup("alice", "Alice Liddell")
    bob = await server.signup("bob", "Bob")
    async with Line(alice) as a, Line(bob) as b:
        await a.open()
        await b.open()
        await a.send(m.Invite(handle="bob", media="audio"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        await a.expect(m.Accepted)
        await a.send(m.Hangup(call_id=call_id))
        await a.expect(m.Ended)
    await until(lambda: any(e["type"] == "ended" for e in receiver.accepted(call_id)))

    events = receiver.accepted(call_id)
    assert [e["type"] for e in events] == [
        "call_started",
        "participant_joined",
        "ringing",
        "participant_joined",
        "answered",
        "participant_left",
        "participant_left",
        "ended",
    ]
    assert [e["seq"] for e in events] == list(range(1, 9))
    assert events[0]["kind"] == "one_to_one" and events[0]["media"] == "audio"
    assert [e["role"] for e in events if e["type"] == "participant_joined"] == ["caller", "callee"]
    assert events[-1]["reason"] == "hangup"
    caller, callee = (e["participant"] for e in events if e["type"] == "participant_joined")
    assert caller != callee and caller.startswith("p-")
    assert {e["participant"] for e in events if e["type"] == "participant_left"} == {
        caller,
        callee,
    }
    assert len({e["id"] for e in events}) == len(events)

    for received in receiver.requests:
        assert _verified(received)
        assert received.headers["X-Callbook-Event-Id"] == received.event["id"]
        assert received.headers["X-Callbook-Event"] == received.event["type"]
        assert isinstance(received.event["sent_at"], int)
        # Pseudonymous: no handle, display name, account or device id, no address.
        text = received.body.decode()
        assert alice.profile is not None and bob.profile is not None
        for secret in (
            "alice",
            "Liddell",
            "bob",
            alice.profile.account_id,
            bob.profile.account_id,
            alice.profile.device_id,
            bob.profile.device_id,
            "127.0.0.1",
        ):
            assert secret not in text

    metrics = server.app[METRICS]
    assert metrics.webhooks_delivered._value.get() == len(receiver.requests)


async def test_group_call_events_name_participants_per_account(
    make_server: MakeServer, receiver: Receiver
) -> None:
    server = await make_server(webhook_urls=(receiver.url,), **FAST)
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await server.signup("carol")  # invited, offline: never rings
    async with Line(alice) as a, Line(bob) as b:
        await a.open()
        await b.open()
        await a.send(m.GroupInvite(handles=["bob", "carol"]))
        call_id = (await a.expect(m.Joined)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        await _skip_to(b, m.Joined)
        await b.send(m.Hangup(call_id=call_id))
        await _skip_to(b, m.Ended)
        await a.send(m.Hangup(call_id=call_id))
        await _skip_to(a, m.Ended)
    await until(lambda: any(e["type"] == "ended" for e in receiver.accepted(call_id)))

    events = receiver.accepted(call_id)
    assert [(e["type"], e.get("role")) for e in events] == [
        ("call_started", None),
        ("participant_joined", "host"),
        ("ringing", None),
        ("participant_joined", "guest"),
        ("answered", None),
        ("participant_left", "guest"),
        ("participant_left", "host"),
        ("ended", None),
    ]
    assert events[0]["kind"] == "group"
    assert events[-1]["reason"] == "hangup"
    assert [e["seq"] for e in events] == list(range(1, 9))


async def test_webhook_keys_are_in_the_inventory_with_truthful_ttls(
    make_server: MakeServer, receiver: Receiver, store: Store
) -> None:
    receiver.answer = lambda event, _attempt: 500 if event["type"] == "ringing" else 200
    server = await make_server(webhook_urls=(receiver.url,), webhook_max_attempts=2, **FAST)
    alice = await server.signup("alice")
    await server.signup("bob")
    async with Line(alice) as a:
        await a.open()
        await a.send(m.Invite(handle="bob", media="audio"))
        call_id = (await a.expect(m.Ringing)).call_id
        await a.send(m.Hangup(call_id=call_id))
        await a.expect(m.Ended)
    await until(lambda: any(e["type"] == "ended" for e in receiver.accepted()))
    assert not any(e["type"] == "ringing" for e in receiver.accepted())  # bob was offline
    await until(lambda: server.app[METRICS].webhooks_delivered._value.get() >= 4)

    names = {d.name: d for d in INVENTORY}
    seen = set()
    async for key in store.redis.scan_iter(match=f"{keys.PREFIX}:{{webhooks}}:*"):
        datum = next(d for d in INVENTORY if fnmatch.fnmatchcase(key, glob(d)))
        seen.add(datum.name)
        ttl = await store.redis.ttl(key)
        if ttl == -1:
            assert datum.max_ttl_s is None
        else:
            assert datum.max_ttl_s is not None and 0 < ttl <= datum.max_ttl_s
    assert {"webhook_events", "webhook_lease"} <= seen <= set(names)


# --- the deliverer on its own ------------------------------------------------------------------


def _event(call_id: str, seq: int) -> LifecycleEvent:
    return LifecycleEvent(
        id=f"{call_id}-{seq}", type="participant_joined", call_id=call_id, seq=seq, at=1.0
    )


async def _produce(store: Store, events: list[LifecycleEvent]) -> None:
    sink = StreamSink(store)
    sink.start()
    for event in events:
        sink.emit(event)
    await sink.close()
    assert await store.redis.xlen(keys.webhook_events()) == len(events)


def _settings(receiver: Receiver, **changes: Any) -> Settings:
    base: dict[str, Any] = {
        "urls": (receiver.url,),
        "secret": SECRET,
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
        "poll_s": 0.05,
        "lease_s": 1.0,
    }
    return Settings(**(base | changes))


def _in_order_per_call(receiver: Receiver) -> None:
    """No request for seq n+1 of a call before seq n of that call was accepted."""
    done: dict[str, int] = {}
    for received in receiver.requests:
        call_id, seq = received.event["call_id"], received.event["seq"]
        assert seq == done.get(call_id, 0) + 1, f"{call_id} seq {seq} came too early"
        if 200 <= received.status < 300:
            done[call_id] = seq


async def test_failed_deliveries_are_retried_with_the_same_id_in_order(
    store: Store, receiver: Receiver
) -> None:
    events = [_event(call, seq) for seq in range(1, 5) for call in ("c1", "c2", "c3")]
    await _produce(store, events)
    receiver.answer = lambda _event, attempt: 500 if attempt <= 2 else 204
    metrics = Metrics()
    deliverer = Deliverer(store, _settings(receiver), "node-a", metrics=metrics)
    deliverer.start()
    try:
        await until(lambda: len(receiver.accepted()) == len(events))
    finally:
        await deliverer.stop()

    for event in events:
        tries = [r for r in receiver.requests if r.event["id"] == event.id]
        assert [r.status for r in tries] == [500, 500, 204]
        assert [r.headers["X-Callbook-Delivery-Attempt"] for r in tries] == ["1", "2", "3"]
        assert all(_verified(r) for r in tries)
    _in_order_per_call(receiver)
    assert metrics.webhooks_failed._value.get() == 2 * len(events)
    assert metrics.webhooks_delivered._value.get() == len(events)
    assert (await store.redis.xpending(keys.webhook_events(), group_name(receiver.url)))[
        "pending"
    ] == 0


async def test_an_event_that_never_gets_through_is_dead_lettered_and_unblocks_its_call(
    store: Store, receiver: Receiver
) -> None:
    await _produce(store, [_event("c1", seq) for seq in (1, 2, 3)])
    receiver.answer = lambda event, _attempt: 410 if event["seq"] == 2 else 200
    metrics = Metrics()
    deliverer = Deliverer(store, _settings(receiver, max_attempts=3), "node-a", metrics=metrics)
    deliverer.start()
    try:
        await until(lambda: [e["seq"] for e in receiver.accepted()] == [1, 3])
    finally:
        await deliverer.stop()
    assert [(r.event["seq"], r.status) for r in receiver.requests] == [
        (1, 200),
        (2, 410),
        (2, 410),
        (2, 410),
        (3, 200),
    ]
    dead = await store.redis.xrange(keys.webhook_dead_letters())
    assert len(dead) == 1
    fields = dead[0][1]
    assert (fields["url"], fields["attempts"], fields["last_status"]) == (receiver.url, "3", "410")
    assert json.loads(fields["payload"])["id"] == "c1-2"
    assert metrics.webhooks_dead_lettered._value.get() == 1


async def test_a_dead_nodes_pending_deliveries_are_taken_over(
    store: Store, receiver: Receiver
) -> None:
    events = [_event(call, seq) for seq in (1, 2) for call in ("c1", "c2")]
    await _produce(store, events)
    receiver.answer = lambda _event, _attempt: 503
    first = Deliverer(store, _settings(receiver, backoff_s=30.0), "node-a")
    first.start()
    # node-a has read the calls' first events and tried each once: they are pending there.
    await until(lambda: {r.event["id"] for r in receiver.requests} == {"c1-1", "c2-1"})
    pending = await store.redis.xpending(keys.webhook_events(), group_name(receiver.url))
    assert pending["pending"] == len(events)
    await first.stop(release=False)  # as if the node died: the lease runs out on its own

    receiver.answer = lambda _event, _attempt: 200
    second = Deliverer(store, _settings(receiver), "node-b")
    second.start()
    group = group_name(receiver.url)
    try:
        await until(lambda: len(receiver.accepted()) == len(events))
        # The receiver hears the last event before the node acknowledges it in the store.
        for _ in range(750):
            if (await store.redis.xpending(keys.webhook_events(), group))["pending"] == 0:
                break
            await asyncio.sleep(0.02)
    finally:
        await second.stop()
    assert sorted(e["id"] for e in receiver.accepted()) == sorted(e.id for e in events)
    _in_order_per_call(receiver)
    assert (await store.redis.xpending(keys.webhook_events(), group))["pending"] == 0
    consumers = await store.redis.xinfo_consumers(keys.webhook_events(), group)
    assert [c["name"] for c in consumers] == ["node-b"]


async def test_only_the_lease_holder_delivers(store: Store, receiver: Receiver) -> None:
    await _produce(store, [_event("c1", seq) for seq in range(1, 6)])
    nodes = [Deliverer(store, _settings(receiver), f"node-{i}") for i in range(3)]
    for node in nodes:
        node.start()
    try:
        await until(lambda: len(receiver.accepted()) == 5)
        assert sum(node.leading for node in nodes) == 1
    finally:
        for node in nodes:
            await node.stop()
    assert [e["seq"] for e in receiver.accepted()] == [1, 2, 3, 4, 5]
    assert len(receiver.requests) == 5


async def test_a_receiver_that_is_down_does_not_delay_another(
    store: Store, receiver: Receiver
) -> None:
    await _produce(store, [_event("c1", seq) for seq in (1, 2, 3)])
    down = "http://127.0.0.1:9/unreachable"
    deliverer = Deliverer(store, _settings(receiver, urls=(down, receiver.url)), "node-a")
    deliverer.start()
    try:
        await until(lambda: [e["seq"] for e in receiver.accepted()] == [1, 2, 3])
    finally:
        await deliverer.stop()
    pending = await store.redis.xpending(keys.webhook_events(), group_name(down))
    assert pending["pending"] >= 1
