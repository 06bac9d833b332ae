"""The client side of the call WebSocket: what a native app's signaling layer does.

``Line`` signs in over the socket, keeps the resume token, and hands received messages to the
caller in order. Used by the CLI bots, the tests and the benchmarks.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TypeVar

import aiohttp
import msgspec

from signaling.client import Client
from signaling.ws import messages as m

M = TypeVar("M", bound=m.ServerMessage)

_decode = msgspec.json.Decoder(m.ServerMessages).decode
_encode = msgspec.json.Encoder().encode


class LineClosed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"the call WebSocket closed (code {code})")
        self.code = code


class Line:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.welcome: m.Welcome | None = None
        self.close_code: int | None = None
        self._http = aiohttp.ClientSession()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._inbox: asyncio.Queue[m.ServerMessage | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Line:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return self.client.server.replace("http", "ws", 1) + "/v1/ws"

    async def open(self, *, resume: bool = False, in_header: bool = True) -> m.Welcome:
        """Connect and sign in; with ``resume`` take back the previous session's calls."""
        token = await self.client.token()
        resume_token = self.welcome.resume_token if resume and self.welcome else None
        protocols = ["callbook.v1"]
        if in_header:
            protocols.append(f"bearer.{token}")
            if resume_token:
                protocols.append(f"resume.{resume_token}")
        self._ws = await self._http.ws_connect(self.url, protocols=protocols, heartbeat=20)
        self.close_code = None
        self._inbox = asyncio.Queue()
        if not in_header:
            await self.send(m.Auth(token=token, resume=resume_token))
        self._reader = asyncio.create_task(self._read(self._ws))
        self.welcome = await self.expect(m.Welcome)
        return self.welcome

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type is aiohttp.WSMsgType.TEXT:
                self._inbox.put_nowait(_decode(frame.data))
        self.close_code = ws.close_code
        self._inbox.put_nowait(None)

    async def send(self, message: m.ClientMessage) -> None:
        assert self._ws is not None, "open() first"
        await self._ws.send_str(_encode(message).decode())

    async def send_raw(self, text: str | bytes) -> None:
        """For tests of hostile input."""
        assert self._ws is not None
        if isinstance(text, bytes):
            await self._ws.send_bytes(text)
        else:
            await self._ws.send_str(text)

    async def receive(self, within: float | None = None) -> m.ServerMessage:
        """The next message, waiting at most ``within`` seconds."""
        message = await asyncio.wait_for(self._inbox.get(), within)
        if message is None:
            self._inbox.put_nowait(None)  # stay closed for later readers
            raise LineClosed(self.close_code)
        return message

    async def expect(self, kind: type[M], within: float | None = 10.0) -> M:
        """The next message, which must be of ``kind``."""
        message = await self.receive(within)
        if not isinstance(message, kind):
            raise AssertionError(f"expected {kind.__name__}, got {message!r}")
        return message

    async def drop(self) -> None:
        """Lose the connection abruptly, as a phone changing networks does."""
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()

    async def close(self) -> None:
        await self.drop()
        await self._http.close()
