"""``GET /metrics``: Prometheus text with call, WebSocket and input counts, and no personal data."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from signaling.protocol import messages as m
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.conftest import MakeServer, Server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(server: Server) -> tuple[str, Samples]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _line(client: Client) -> Line:
    line = Line(client)
    await line.open()
    return line


async def test_a_fresh_server_exposes_every_series(server: Server) -> None:
    text, samples = await _scrape(server)
    for name in (
        "callbook_active_calls",
        "callbook_call_setups_total",
        "callbook_call_endings_total",
        "callbook_calls_answered_total",
        "callbook_ring_to_answer_seconds",
        "callbook_websocket_connections",
        "callbook_ws_messages_total",
        "callbook_rejected_inputs_total",
        "callbook_store_seconds",
    ):
        assert f"# HELP {name}" in text or f"# HELP {name.removesuffix('_total')}" in text
    assert _value(samples, "callbook_active_calls", kind="one_to_one") == 0
    assert _value(samples, "callbook_call_setups_total") == 0


async def test_calls_messages_and_rejections_are_counted(server: Server) -> None:
    alice = await server.signup("alice", "Alice")
    bob = await server.signup("bob", "Bob")
    async with await _line(alice) as a, await _line(bob) as b:
        _, during = await _scrape(server)
        assert _value(during, "callbook_websocket_connections") == 2

        # Placed, answered, hung up.
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        _, ringing = await _scrape(server)
        assert _value(ringing, "callbook_active_calls", kind="one_to_one") == 1
        await b.send(m.Accept(call_id=call_id))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        await a.send(m.Hangup(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "hangup"
        await b.expect(m.Ended)

        # Placed and declined.
        await a.send(m.Invite(handle="bob"))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Decline(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "declined"
        await b.expect(m.Ended)

        # A message of no known type.
        await a.send_raw('{"type": "teleport", "to": "bob"}')
        assert (await a.expect(m.Error)).code == "invalid_message"

    # And a REST request without a token.
    async with aiohttp.ClientSession() as http, http.get(server.url + "/v1/me") as response:
        assert response.status == 401
    async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as response:
        assert response.status == 200

    text, after = await _scrape(server)
    assert _value(after, "callbook_call_setups_total") == 2
    assert _value(after, "callbook_calls_answered_total") == 1
    assert _value(after, "callbook_call_endings_total", reason="hangup") == 1
    assert _value(after, "callbook_call_endings_total", reason="declined") == 1
    assert _value(after, "callbook_call_endings_total", reason="missed") == 0
    assert _value(after, "callbook_active_calls", kind="one_to_one") == 0
    assert _value(after, "callbook_ring_to_answer_seconds_count") == 1
    assert _value(after, "callbook_ws_messages_total", type="invite") == 2
    assert _value(after, "callbook_ws_messages_total", type="accept") == 1
    assert _value(after, "callbook_ws_messages_total", type="decline") == 1
    assert _value(after, "callbook_ws_messages_total", type="hangup") == 1
    assert _value(after, "callbook_rejected_inputs_total", reason="invalid_message") == 1
    assert _value(after, "callbook_rejected_inputs_total", reason="token_missing") == 1
    assert _value(after, "callbook_store_seconds_count", op="dial") == 2
    assert _value(after, "callbook_store_seconds_count", op="ping") == 1

    # Aggregates only: nobody's handle, name, account or device id.
    for client in (alice, bob):
        assert client.profile is not None
        for secret in (client.profile.account_id, client.profile.device_id):
            assert secret not in text
    for word in ("alice", "Alice", "bob", "Bob", "teleport"):
        assert word not in text


async def test_each_server_counts_on_its_own(make_server: MakeServer) -> None:
    first = await make_server()
    second = await make_server()
    async with aiohttp.ClientSession() as http, http.get(first.url + "/v1/me") as response:
        assert response.status == 401
    _, one = await _scrape(first)
    _, two = await _scrape(second)
    assert _value(one, "callbook_rejected_inputs_total", reason="token_missing") == 1
    assert _value(two, "callbook_rejected_inputs_total", reason="token_missing") == 0
