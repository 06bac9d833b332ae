"""The client side of the call WebSocket: what a native app's signaling layer does.

``Line`` signs in over the socket, keeps the resume token, and hands received messages to the
caller in order. Used by the CLI bots, the tests and the benchmarks.

A server that drains sends ``reconnect``: the line then connects again (to its server address,
where another node answers behind a load balancer, or to the next of ``servers``), resumes with
the token it was given, and only then lets the old connection go (the server closes it with 4000
once the new one has signed in). Messages from both connections reach the caller in the order
each connection delivered them; the caller sees neither the ``reconnect`` nor the new
``welcome`` (``moves`` records them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar

import aiohttp
import msgspec

from signaling.protocol import messages as m
from signaling.protocol.closes import SUBPROTOCOL
from signaling.sdk.client import Client

M = TypeVar("M", bound=m.ServerMessage)

_decode = msgspec.json.Decoder(m.ServerMessages).decode
_encode = msgspec.json.Encoder().encode


class LineClosed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"the call WebSocket closed (code {code})")
        self.code = code


class LineRefused(Exception):
    """Signing in was refused: the server's ``error`` (the connection then closes, 11.1)."""

    def __init__(self, error: m.Error) -> None:
        super().__init__(f"signing in was refused: {error.detail} ({error.code})")
        self.code = error.code
        self.detail = error.detail


#: How long the server may take to answer a sign-in with ``welcome`` (or a refusal).
AUTH_WAIT_S = 10.0
#: Between attempts to reconnect after ``reconnect``: from the first to the longest wait.
MOVE_BACKOFF_S = (0.1, 2.0)


class Line:
    def __init__(self, client: Client, *, servers: Sequence[str] | None = None) -> None:
        self.client = client
        #: Where to reconnect when told to (``reconnect``), tried in order.
        self.servers = list(servers or [client.server])
        self.welcome: m.Welcome | None = None
        self.close_code: int | None = None
        #: Every ``reconnect`` received, and every move made, with the ``welcome`` that resumed it.
        self.reconnects: list[m.Reconnect] = []
        self.moves: list[tuple[m.Reconnect, m.Welcome]] = []
        self._moved = asyncio.Event()
        self._http = aiohttp.ClientSession()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._inbox: asyncio.Queue[m.ServerMessage | None] = asyncio.Queue()
        self._readers: set[asyncio.Task[None]] = set()
        self._mover: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Line:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return _ws_url(self.client.server)

    async def open(self, *, resume: bool = False, in_header: bool = True) -> m.Welcome:
        """Connect and sign in; with ``resume`` take back the previous session's calls."""
        resume_token = self.welcome.resume_token if resume and self.welcome else None
        self._ws = await self._connect(self.url, resume_token, in_header)
        self.close_code = None
        self._inbox = asyncio.Queue()
        self._start_reader(self._ws)
        first = await self.receive(AUTH_WAIT_S)
        if isinstance(first, m.Error):
            raise LineRefused(first)
        if not isinstance(first, m.Welcome):
            raise AssertionError(f"expected Welcome, got {first!r}")
        self.welcome = first
        return first

    async def _connect(
        self, url: str, resume_token: str | None, in_header: bool = True
    ) -> aiohttp.ClientWebSocketResponse:
        token = await self.client.token()
        protocols = [SUBPROTOCOL]
        if in_header:
            protocols.append(f"bearer.{token}")
            if resume_token:
                protocols.append(f"resume.{resume_token}")
        ws = await self._http.ws_connect(url, protocols=protocols, heartbeat=20)
        if not in_header:
            await ws.send_str(_encode(m.Auth(token=token, resume=resume_token)).decode())
        return ws

    def _start_reader(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reader = asyncio.create_task(self._read(ws))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue
            message = _decode(frame.data)
            if isinstance(message, m.Reconnect) and ws is self._ws:
                self.reconnects.append(message)
                if self._mover is None or self._mover.done():
                    self._mover = asyncio.create_task(self._move(message))
                continue
            self._inbox.put_nowait(message)
        if ws is not self._ws or (self._mover is not None and not self._mover.done()):
            return  # an old connection, or one closed while the line moves: not the line's end
        self.close_code = ws.close_code
        self._inbox.put_nowait(None)

    async def _move(self, reconnect: m.Reconnect) -> None:
        """Connect elsewhere and resume, then let the old connection go."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + reconnect.resume_window_s
        wait = MOVE_BACKOFF_S[0]
        while loop.time() < deadline:
            for server in self.servers:
                with contextlib.suppress(aiohttp.ClientError, OSError, msgspec.DecodeError):
                    if await self._resume_on(server, reconnect):
                        return
            await asyncio.sleep(wait)
            wait = min(wait * 2, MOVE_BACKOFF_S[1])
        old = self._ws
        if old is not None and old.closed:
            self.close_code = old.close_code
            self._inbox.put_nowait(None)

    async def _resume_on(self, server: str, reconnect: m.Reconnect) -> bool:
        ws = await self._connect(_ws_url(server), reconnect.resume_token)
        frame = await ws.receive(timeout=10)
        welcome = _decode(frame.data) if frame.type is aiohttp.WSMsgType.TEXT else None
        if not isinstance(welcome, m.Welcome):
            await ws.close()
            return False
        self._ws = ws
        self.welcome = welcome
        self.moves.append((reconnect, welcome))
        self._start_reader(ws)
        self._moved.set()
        return True

    async def moved(self, within: float = 10.0) -> m.Welcome:
        """Wait until the line has moved after a ``reconnect``; the ``welcome`` there."""
        await asyncio.wait_for(self._moved.wait(), within)
        return self.moves[-1][1]

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
        if self._mover is not None:
            self._mover.cancel()
        for reader in list(self._readers):
            reader.cancel()
        if self._ws is not None:
            await self._ws.close()

    async def close(self) -> None:
        await self.drop()
        await self._http.close()


def _ws_url(server: str) -> str:
    return server.replace("http", "ws", 1) + "/v1/ws"
