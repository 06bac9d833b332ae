"""Connections that send nothing, half a request or stay idle are closed by the server; one address
cannot hold more than its share; and nothing in an answer names the server's software."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from signaling.appkeys import METRICS
from signaling.config import ConfigError, from_env
from signaling.connections import SourceCap, source_of
from signaling.protocol import messages as m
from signaling.sdk.line import Line
from tests.conftest import MakeServer, Server

#: Generous: the server closes at its configured timeout (well below this); the bound only keeps
#: a broken server from hanging the test.
CLOSED_WITHIN_S = 15.0


def _address(server: Server) -> tuple[str, int]:
    host, port = server.url.split("//")[1].rsplit(":", 1)
    return host, int(port)


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    async with asyncio.timeout(CLOSED_WITHIN_S):
        return await reader.read()


async def test_a_silent_connection_is_closed_at_the_header_timeout(
    make_server: MakeServer,
) -> None:
    server = await make_server(header_timeout_s=0.3, idle_timeout_s=600.0)
    reader, writer = await asyncio.open_connection(*_address(server))
    assert await _closed_by_server(reader) == b""
    writer.close()


async def test_half_a_request_head_is_closed_even_while_bytes_trickle(
    make_server: MakeServer,
) -> None:
    server = await make_server(header_timeout_s=0.3, idle_timeout_s=600.0)
    reader, writer = await asyncio.open_connection(*_address(server))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    closed = asyncio.create_task(_closed_by_server(reader))
    while not closed.done():  # a byte at a time does not extend the deadline
        writer.write(b"X-A: b\r\n")
        await asyncio.wait({closed}, timeout=0.05)
    assert closed.result() == b""
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_at_the_idle_timeout(
    make_server: MakeServer,
) -> None:
    server = await make_server(header_timeout_s=600.0, idle_timeout_s=0.3)
    reader, writer = await asyncio.open_connection(*_address(server))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await _closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b'{"status":"ok"}')
    writer.close()


async def test_a_call_websocket_outlives_both_timeouts(make_server: MakeServer) -> None:
    server = await make_server(header_timeout_s=0.3, idle_timeout_s=0.3)
    async with Line(await server.signup("alice")) as line:
        await line.open()
        # A silent connection opened after the line is closed by now: both deadlines passed.
        reader, writer = await asyncio.open_connection(*_address(server))
        assert await _closed_by_server(reader) == b""
        writer.close()
        await line.send(m.Ping())
        await line.expect(m.Pong)


async def test_one_address_holds_at_most_its_cap(make_server: MakeServer) -> None:
    server = await make_server(max_connections_per_source=3, header_timeout_s=600.0)
    held = [await asyncio.open_connection(*_address(server)) for _ in range(3)]
    reader, writer = await asyncio.open_connection(*_address(server))
    answer = await _closed_by_server(reader)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429")
    assert b"\r\nRetry-After: 1\r\n" in head and b"\r\nServer: Callbook\r\n" in head
    assert b"application/problem+json" in head
    assert json.loads(body)["code"] == "too_many_connections"
    writer.close()

    async with aiohttp.ClientSession() as http:
        assert await _status(http, server.url + "/healthz") in (429, None)
        _, first = held.pop()
        first.close()
        # Admitted again once the server has seen that connection go.
        async with asyncio.timeout(CLOSED_WITHIN_S):
            while True:
                if await _status(http, server.url + "/healthz") == 200:
                    break
                await asyncio.sleep(0.02)
    for _, other in held:
        other.close()
    # Read in process: every connection of this address may still be counted.
    exposed = server.app[METRICS].render().decode()
    assert 'callbook_rejected_inputs_total{reason="too_many_connections"}' in exposed


async def _status(http: aiohttp.ClientSession, url: str) -> int | None:
    """The status, or None when the refusal reached the client as a reset: the server closes a
    refused connection at once, and a request already on its way is answered by the kernel."""
    try:
        async with http.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return None


async def test_no_answer_names_the_server_software(server: Server) -> None:
    alice = await server.signup("alice")
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/v1/nowhere", "/", "/static/sdk/line.js"):
            async with http.get(server.url + path) as response:
                assert response.headers["Server"] == "Callbook", path
        ws = await http.ws_connect(
            server.url.replace("http", "ws") + "/v1/ws",
            protocols=["callbook.v1", f"bearer.{await alice.token()}"],
        )
        assert ws._response.headers["Server"] == "Callbook"
        await ws.close()


def test_the_cap_counts_per_source_and_forgets_closed_ones() -> None:
    cap = SourceCap(2)
    assert cap.admit("a") and cap.admit("a") and not cap.admit("a")
    assert cap.admit("b")
    cap.release("a")
    assert cap.admit("a") and not cap.admit("a")
    for _ in range(2):
        cap.release("a")
    cap.release("b")
    assert len(cap) == 0
    unlimited = SourceCap(0)
    assert all(unlimited.admit("a") for _ in range(1000))


@pytest.mark.parametrize(
    ("peer", "source"),
    [
        (("192.0.2.7", 5555), "192.0.2.7"),
        (("2001:db8:1:2:aaaa::1", 5555, 0, 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 5555, 0, 0), "2001:db8:1:2::/64"),
        (("::ffff:192.0.2.7", 5555, 0, 0), "192.0.2.7"),
        ("", None),
        (None, None),
        (("not an address", 1), None),
    ],
)
def test_a_source_is_an_ipv4_address_or_an_ipv6_64(peer: object, source: str | None) -> None:
    assert source_of(peer) == source


def test_the_limits_are_read_from_the_environment() -> None:
    config = from_env(
        {
            "CALLBOOK_HEADER_TIMEOUT_S": "5",
            "CALLBOOK_IDLE_TIMEOUT_S": "120",
            "CALLBOOK_MAX_CONNECTIONS_PER_SOURCE": "0",
        }
    )
    assert (config.header_timeout_s, config.idle_timeout_s) == (5.0, 120.0)
    assert config.max_connections_per_source == 0
    defaults = from_env({})
    assert (defaults.header_timeout_s, defaults.idle_timeout_s) == (10.0, 75.0)
    assert defaults.max_connections_per_source == 256
    for name, raw in (
        ("CALLBOOK_HEADER_TIMEOUT_S", "0"),
        ("CALLBOOK_IDLE_TIMEOUT_S", "soon"),
        ("CALLBOOK_MAX_CONNECTIONS_PER_SOURCE", "-1"),
    ):
        with pytest.raises(ConfigError):
            from_env({name: raw})
