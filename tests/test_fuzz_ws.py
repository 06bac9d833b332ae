"""Fuzzing the call WebSocket after sign-in.

A frame that is JSON gets a typed ``error`` (or the message's own answer) and the connection
stays usable: a ``ping`` after it gets its ``pong``. Anything else closes the connection with
its documented code (1003 binary, 1007 not JSON or not UTF-8, 1009 too big), never 1011, and the
server logs no ERROR. The corpus in tests/data/fuzz/ws/ (one frame a file: a ``.bin`` file as a
binary frame, any other as a text frame of the file's bytes, UTF-8 or not) is replayed on every
run; hypothesis adds ``CALLBOOK_FUZZ_EXAMPLES`` generated frames per property (default 100). A
longer run:

    CALLBOOK_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_ws.py
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.embedded import EmbeddedMedia
from signaling import asyncapi
from signaling.protocol import messages as m
from signaling.sdk.client import Client
from tests.fuzz_server import ThreadServer, corpus, errors_in, fuzz, serving
from tests.test_fuzz_rest import json_values

TYPES = [kind.__struct_config__.tag for kind in typing.get_args(m.ClientMessages)]
FIELDS = {
    kind.__struct_config__.tag: list(kind.__struct_fields__)
    for kind in typing.get_args(m.ClientMessages)
}
#: Close codes a frame may earn (11.3); 1011 (a server error) is never one.
DOCUMENTED_CLOSES = {1003, 1007, 1008, 1009}


@pytest.fixture(scope="module")
def ws_server(redis_url: str, sfu: EmbeddedMedia) -> Iterator[ThreadServer]:
    yield from serving(redis_url, sfu)


@pytest.fixture(scope="module")
def token(ws_server: ThreadServer) -> str:
    async def make() -> str:
        client = Client(ws_server.url)
        try:
            await client.signup("wsfuzzer")
            return await client.token()
        finally:
            await client.close()

    return ws_server.run(make())


#: A text frame whose bytes need not be UTF-8 (the client API sends only valid text).
class RawText(bytes):
    pass


async def _exchange(url: str, token: str, frame: str | bytes) -> tuple[list[Any], int | None]:
    """Send ``frame`` on a fresh signed-in connection, then a ping: what came back before the
    pong, and the close code if the connection was closed instead."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            url.replace("http", "ws") + "/v1/ws", protocols=("callbook.v1", f"bearer.{token}")
        )
        try:
            assert (await ws.receive_json(timeout=10))["type"] == "welcome"
            if isinstance(frame, RawText):
                await ws._writer.send_frame(frame, aiohttp.WSMsgType.TEXT)
            elif isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            await ws.send_str('{"type":"ping"}')
            seen: list[Any] = []
            while True:
                message = await ws.receive(timeout=10)
                if message.type is not aiohttp.WSMsgType.TEXT:
                    return seen, ws.close_code
                data = json.loads(message.data)
                if data["type"] == "pong":
                    return seen, None
                seen.append(data)
        finally:
            await ws.close()


def _check(
    server: ThreadServer, token: str, caplog: pytest.LogCaptureFixture, frame: str | bytes
) -> None:
    caplog.clear()
    seen, closed = server.run(_exchange(server.url, token, frame))
    for data in seen:
        if data["type"] == "error":
            assert data["code"] in asyncapi.ERROR_CODES, data
            assert data["detail"]
    if closed is not None:
        assert closed in DOCUMENTED_CLOSES, closed
        assert not _is_json_text(frame) or closed == 1009, (frame, closed)
    assert not errors_in(caplog.records)


def _is_json_text(frame: str | bytes) -> bool:
    if isinstance(frame, bytes) and not isinstance(frame, RawText):
        return False
    try:
        msgspec.json.decode(frame)  # strict: a lone surrogate escape is not JSON text here
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return True


@st.composite
def shaped_messages(draw: st.DrawFn) -> str:
    """A message of a real type with its fields (and some others) set to any JSON value."""
    kind = draw(st.sampled_from(TYPES))
    names = FIELDS[kind] + ["zzz_unknown"]
    message: dict[str, Any] = {"type": kind}
    for name in draw(st.lists(st.sampled_from(names), max_size=6, unique=True)):
        message[name] = draw(json_values)
    return json.dumps(message)


@fuzz
@given(frame=shaped_messages())
def test_messages_of_every_type_with_any_fields(
    ws_server: ThreadServer, token: str, caplog: pytest.LogCaptureFixture, frame: str
) -> None:
    _check(ws_server, token, caplog, frame)


@fuzz
@given(value=json_values)
def test_any_json(
    ws_server: ThreadServer, token: str, caplog: pytest.LogCaptureFixture, value: Any
) -> None:
    _check(ws_server, token, caplog, json.dumps(value))


@fuzz
@given(frame=st.text(max_size=300) | st.binary(max_size=300))
def test_any_frame(
    ws_server: ThreadServer, token: str, caplog: pytest.LogCaptureFixture, frame: str | bytes
) -> None:
    _check(ws_server, token, caplog, frame)


@pytest.mark.parametrize("path", corpus("ws"))
def test_ws_corpus(
    ws_server: ThreadServer, token: str, caplog: pytest.LogCaptureFixture, path: Path
) -> None:
    raw = path.read_bytes()
    _check(ws_server, token, caplog, raw if path.suffix == ".bin" else RawText(raw))
