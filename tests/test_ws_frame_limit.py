"""The 64 KiB limit (docs/protocol.md 11.3) is on the message, however it is framed: a message of
exactly 65,536 bytes sent in one frame or in fragments is read, one byte more is closed 1009.
Raw masked frames over a plain socket (the aiohttp client never fragments); the single-frame
edges, plain and compressed, are in tests/test_ws_hostile.py."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

import pytest

from signaling.protocol.closes import MAX_MESSAGE_BYTES
from tests.conftest import Server
from tests.test_ws_hostile import _message_of


def _frame(payload: bytes, opcode: int, fin: bool) -> bytes:
    """A client frame: masked, as RFC 6455 requires."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        head = bytes([first, 0x80 | size])
    elif size < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack("!Q", size)
    key = os.urandom(4)
    mask = (key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(size, "big")
    return head + key + masked


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return head[0] & 0x0F, await reader.readexactly(size)


async def _signed_in(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    alice = await server.signup("alice")
    token = await alice.token()
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /v1/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: callbook.v1, bearer.{token}\r\n\r\n".encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    assert b'"welcome"' in (await _read_frame(reader))[1]
    return reader, writer


@pytest.mark.parametrize("cut", [1, 30_000, MAX_MESSAGE_BYTES - 1])
@pytest.mark.parametrize(
    ("size", "closes"), [(MAX_MESSAGE_BYTES, False), (MAX_MESSAGE_BYTES + 1, True)]
)
async def test_a_fragmented_message_is_limited_like_one_frame(
    server: Server, size: int, closes: bool, cut: int
) -> None:
    reader, writer = await _signed_in(server)
    try:
        data = _message_of(size).encode()
        writer.write(_frame(data[:cut], 0x1, fin=False) + _frame(data[cut:], 0x0, fin=True))
        opcode, body = await _read_frame(reader)
        if closes:
            assert (opcode, body[:2]) == (0x8, struct.pack("!H", 1009))
        else:
            assert opcode == 0x1 and b'"invalid_message"' in body  # read, and refused
    finally:
        writer.close()
