"""Every error path an anonymous client can reach, against a real server with the real log
handler: nothing logged carries an address, a token, a handle or an id, and what a client can
cause at will (resets, bad frames, a missing subprotocol) is not logged as an error.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from directory.store import Store
from signaling.config import Config
from signaling.logs import handler, redact
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.conftest import MakeServer, Server, start_server, stop_server
from tests.ports import free_port

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What ``callbook serve`` would write to stderr: the handler of signaling/logs.py on the
    root logger, every level."""
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    installed = handler(out)
    root.addHandler(installed)
    root.setLevel(logging.DEBUG)
    yield out
    root.removeHandler(installed)
    root.setLevel(level)


def _entries(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].rsplit(":", 1)
    return host.strip("[]"), int(port)


def _frame(opcode: int, payload: bytes, *, masked: bool = True) -> bytes:
    """One final client frame (RFC 6455 5.2)."""
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes([0x80 | opcode, mask_bit | size])
    elif size < 65536:
        head = bytes([0x80 | opcode, mask_bit | 126]) + struct.pack("!H", size)
    else:
        head = bytes([0x80 | opcode, mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _upgrade(
    url: str, protocols: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection(*_host_port(url))
    writer.write(
        (
            "GET /v1/ws HTTP/1.1\r\nHost: callbook\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n"
            f"Sec-WebSocket-Protocol: {protocols}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a device losing its network abruptly may."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _close_code(reader: asyncio.StreamReader) -> int:
    """The code of the server's close frame (server frames are not masked)."""
    while True:
        first, second = await reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(size)
        if first & 0x0F == 0x8:
            code: int = struct.unpack("!H", payload[:2])[0]
            return code


async def _raw_http(url: str, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*_host_port(url))
    writer.write(data)
    answer = await reader.read()  # the server answers and closes
    writer.close()
    return answer


@pytest.fixture
async def people(server: Server) -> AsyncIterator[tuple[Client, Line, set[str]]]:
    """A signed-in person with a connected line, and every secret of theirs."""
    alice = await server.signup("alice_private", "Alice Private")
    line = Line(alice)
    welcome = await line.open()
    token = await alice.token()
    profile = alice.profile
    assert profile is not None
    secrets = {
        "alice_private",
        "Alice Private",
        token,
        token.rsplit(".", 1)[-1],
        token.split(".")[1],  # the payload: the ids, base64url
        welcome.resume_token,
        profile.account_id,
        profile.device_id,
    }
    yield alice, line, secrets
    await line.close()


async def test_a_websocket_without_callbook_v1_is_refused_before_it_opens(
    server: Server, people: tuple[Client, Line, set[str]], log_lines: io.StringIO
) -> None:
    alice, line, secrets = people
    token = await alice.token()
    assert line.welcome is not None
    resume = line.welcome.resume_token
    async with aiohttp.ClientSession() as http:
        for offered in (
            [f"bearer.{token}"],
            [f"resume.{resume}"],
            [f"bearer.{token}", f"resume.{resume}"],
            ["callbook.v2", f"bearer.{token}"],
            [],
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(line.url, protocols=offered)
            assert refused.value.status == 400, offered
        async with http.get(line.url, headers={"Sec-WebSocket-Protocol": "x"}) as response:
            assert response.status == 400
            assert response.content_type == "application/problem+json"
            assert (await response.json(content_type=None))["code"] == "subprotocol_required"
    _assert_private(log_lines, secrets)
    _assert_quiet(log_lines)


class _SocketsEnded(logging.Handler):
    """Sets ``event`` once ``count`` call WebSockets have had their access log line."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "route", None) == "/v1/ws":
            self.count -= 1
            if self.count == 0:
                self.event.set()


async def test_a_ping_then_a_reset_is_a_disconnect_not_an_error(
    server: Server, log_lines: io.StringIO
) -> None:
    watcher = _SocketsEnded(2)
    logging.getLogger("aiohttp.access").addHandler(watcher)
    try:
        await _ping_and_reset(server, watcher.event)
    finally:
        logging.getLogger("aiohttp.access").removeHandler(watcher)
    _assert_quiet(log_lines)
    statuses = {e.get("status") for e in _entries(log_lines) if e.get("route") == "/v1/ws"}
    assert statuses == {101}


async def _ping_and_reset(server: Server, ended: asyncio.Event) -> None:
    for signed_in in (False, True):
        protocols = "callbook.v1"
        if signed_in:
            client = await server.signup(f"pinger_{int(signed_in)}")
            protocols += f", bearer.{await client.token()}"
        reader, writer, head = await _upgrade(server.url, protocols)
        assert head.startswith(b"HTTP/1.1 101")
        if signed_in:
            await reader.readexactly(2)  # the start of welcome: the device is connected
        for _ in range(50):
            writer.write(_frame(0x9, b"ping"))
        await writer.drain()
        _reset(writer)
    # The server notices the resets; its access log line for the socket closes each one.
    async with asyncio.timeout(10):
        await ended.wait()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (_frame(0x1, b'{"type":"ping"}', masked=False), 1002),  # RFC 6455 5.1
        (b"\x8f\x80abcd", 1002),  # an opcode that does not exist
        (_frame(0x1, b"\xff\xfe not utf-8"), 1007),
        (_frame(0x1, b"{not json"), 1007),
        (_frame(0x2, b"\x00\x01"), 1003),
        (_frame(0x1, b"x" * 70_000), 1009),
    ],
    ids=["unmasked", "bad-opcode", "bad-utf8", "not-json", "binary", "oversized"],
)
async def test_hostile_frames_close_with_their_code_and_log_nothing_personal(
    server: Server,
    people: tuple[Client, Line, set[str]],
    log_lines: io.StringIO,
    frame: bytes,
    code: int,
) -> None:
    alice, _line, secrets = people
    # The same device again: the first line is replaced, this one signs in.
    reader, writer, head = await _upgrade(server.url, f"callbook.v1, bearer.{await alice.token()}")
    assert head.startswith(b"HTTP/1.1 101")
    writer.write(frame)
    await writer.drain()
    async with asyncio.timeout(10):
        assert await _close_code(reader) == code
    writer.close()
    _assert_private(log_lines, secrets)
    _assert_quiet(log_lines)


async def test_an_unmasked_frame_right_behind_the_upgrade_request_closes_1002(
    server: Server, people: tuple[Client, Line, set[str]]
) -> None:
    alice, _line, _secrets = people
    reader, writer = await asyncio.open_connection(*_host_port(server.url))
    writer.write(
        (
            "GET /v1/ws HTTP/1.1\r\nHost: callbook\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n"
            f"Sec-WebSocket-Protocol: callbook.v1, bearer.{await alice.token()}\r\n\r\n"
        ).encode()
        + _frame(0x1, b'{"type":"ping"}', masked=False)  # in the same write
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    async with asyncio.timeout(10):
        assert await _close_code(reader) == 1002
    writer.close()


async def test_bad_tokens_and_bad_http_log_no_address_or_token(
    server: Server, people: tuple[Client, Line, set[str]], log_lines: io.StringIO
) -> None:
    alice, line, secrets = people
    token = await alice.token()
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    secrets |= {forged, signature[::-1]}
    async with aiohttp.ClientSession() as http:
        for bad in (forged, f"{header}.{payload}", "eyJhbGciOiJub25lIn0.e30."):
            async with http.get(
                server.url + "/v1/me", headers={"Authorization": f"Bearer {bad}"}
            ) as response:
                assert response.status == 401
            ws = await http.ws_connect(line.url, protocols=["callbook.v1", f"bearer.{bad}"])
            assert (await ws.receive_json())["code"] == "token_invalid"
            await ws.close()
    for request in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"10.20.30.40 /v1/me HTTP/1.1\r\nHost: x\r\n\r\n",  # any token is a method
        b"GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Length: x\r\n\r\n",
    ):
        answer = await _raw_http(server.url, request)
        assert answer.split(b" ", 2)[1].startswith(b"4"), answer[:40]
    _assert_private(log_lines, secrets)


async def test_a_store_outage_logs_nothing_personal(
    make_server: MakeServer, log_lines: io.StringIO
) -> None:
    down = await make_server(redis_url=f"redis://127.0.0.1:{free_port()}")
    client = down.client()
    with pytest.raises(Exception):  # noqa: B017 - the status is the outage test's business
        await client.signup("carol_offline", "Carol Offline")
    async with aiohttp.ClientSession() as http:
        bearer = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
        async with http.get(
            down.url + "/v1/me", headers={"Authorization": f"Bearer {bearer}"}
        ) as response:
            assert response.status in (401, 503)
    _assert_private(log_lines, {"carol_offline", "Carol Offline", bearer})


async def test_ipv6_clients_are_not_logged_either(
    store: Store, config: Config, log_lines: io.StringIO
) -> None:
    test_server, server = await start_server(config, host="::1")
    try:
        assert "[::1]" in server.url
        answer = await _raw_http(
            server.url, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n"
        )
        assert answer.split(b" ", 2)[1].startswith(b"4")
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                server.url + "/v1/ws", headers={"Sec-WebSocket-Protocol": "bearer.x"}
            ) as response,
        ):
            assert response.status == 400
    finally:
        await stop_server(test_server, server)
    _assert_private(log_lines, set())


def _assert_private(out: io.StringIO, secrets: set[str]) -> None:
    text = out.getvalue()
    assert text, "the paths above log something (the access log at least)"
    lowered = text.lower()
    for secret in sorted(secrets):
        assert secret.lower() not in lowered, secret
    for address in ("127.0.0.1", "10.20.30.40", "::1"):
        assert address not in text, address
    assert "bearer" not in lowered
    assert redact(text) == text, "something address- or token-shaped was logged"


def _assert_quiet(out: io.StringIO) -> None:
    loud = [e for e in _entries(out) if e["level"] in ("WARNING", "ERROR", "CRITICAL")]
    assert not loud, loud


def test_redaction_table() -> None:
    for raw, kept in (
        ("Error handling request from 127.0.0.1", "Error handling request from "),
        ("peer ('10.0.0.7', 5555) gone", "peer ('"),
        ("::1 and fe80::1%eth0 and 2001:db8:0:0:0:ff00:42:8329", " and "),
        ("['bearer.eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln', 'resume.Zm9v_bar-baz']", "['"),
        ("Authorization: Bearer abc.def", "Authorization: "),
        ("operator cbo_abcdEF-12 used", "operator "),
        ("::ffff:10.0.0.1 mapped", " mapped"),
    ):
        assert kept in redact(raw) and "[redacted]" in redact(raw), raw
        for part in ("127.0.0.1", "10.0.0", "fe80", "db8", "eyJ", "Zm9v", "abc.def", "cbo_"):
            assert part not in redact(raw), (raw, part)
    for clean in (
        "GET /v1/handles/{handle} 404 1.2ms",
        "at 12:30:45",
        "version 1.2.3",
        "Class::method",
        "the resume window is 30 s",
        "call 0123456789abcdef0123456789abcdef ended",
    ):
        assert redact(clean) == clean


def test_library_records_are_formatted_once_and_redacted() -> None:
    out = io.StringIO()
    installed = handler(out)
    logger = logging.getLogger("aiohttp.websocket")
    record = logger.makeRecord(
        logger.name,
        logging.WARNING,
        __file__,
        1,
        "%s: Client protocols %r don't overlap server-known ones %r",
        ("127.0.0.1", ["bearer.eyJhbGciOi.eyJzdWIi.sig", "resume.abc"], ("callbook.v1",)),
        None,
    )
    installed.handle(record)
    assert record.args is None
    line = json.loads(out.getvalue())
    assert "127.0.0.1" not in line["msg"] and "eyJ" not in line["msg"]
    assert "resume.abc" not in line["msg"] and "callbook.v1" in line["msg"]
