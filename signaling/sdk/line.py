"""The client side of the call WebSocket: what a native app's signaling layer does.

``Line`` signs in over the socket, keeps the resume token, and hands received messages to the
caller in order. Used by the CLI bots, the tests and the benchmarks.

A server that drains sends ``reconnect``: the line then connects again (to its server address,
where another node answers behind a load balancer, or to the next of ``servers``), resumes with
the token it was given, and only then lets the old connection go (the server closes it with 4000
once the new one has signed in). Messages from both connections reach the caller in the order
each connection delivered them; the caller sees neither the ``reconnect`` nor the new
``welcome`` (``moves`` records them).

A line that ``follows_network`` (a softphone's) also comes back by itself when its connection
is lost: closed without a word from the server (1006: the network went, a heartbeat failed) or
with a code that asks to resume (11.3). It reconnects with the resume token of its last
``welcome`` within the resume window, and hands the caller that new ``welcome``, so the caller
learns its calls were taken back (``resumed``) and can renegotiate their media; what the caller
sends meanwhile waits, in order, for the new connection. It hears of a network change from the
operating system (Linux: rtnetlink, as a phone's connectivity callbacks) and checks its socket
at once: a socket whose address went with the old network is given up without waiting for a
heartbeat to fail; any other is probed with a ``ping``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable, Sequence
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
#: Close codes after which a line that follows the network resumes (11.3): the connection was
#: lost (1006, also when no code came), or the server asks to come back (1011-1014, 4003).
RESUMABLE = frozenset({None, 1006, 1011, 1012, 1013, 1014, 4003})
#: A probed connection from which nothing (its ``pong`` or any message) comes within this long
#: is taken for lost (the web client waits 2 s; more here for a loaded machine).
PROBE_WITHIN_S = 4.0
#: How long one attempt to reconnect may take (a new network may drop the first SYNs).
RECONNECT_WITHIN_S = 5.0
#: Messages kept while the line comes back; more are refused (LineClosed).
MAX_OUTBOX = 200


class Line:
    def __init__(
        self,
        client: Client,
        *,
        servers: Sequence[str] | None = None,
        follows_network: bool = False,
    ) -> None:
        self.client = client
        #: Come back by itself when the connection is lost (see the module's docstring).
        self.follows_network = follows_network
        #: The close code of every lost connection the line came back from, in order.
        self.losses: list[int | None] = []
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
        self._recovery: asyncio.Task[None] | None = None
        #: Between losing a connection and signing in again (what is sent meanwhile waits).
        self._away = False
        self._probe: asyncio.Task[None] | None = None
        self._pong: asyncio.Future[None] | None = None
        self._outbox: list[m.ClientMessage] = []
        self._closing: set[asyncio.Task[bool]] = set()
        #: Set on every network change: a line coming back tries again at once.
        self._network_changed = asyncio.Event()
        self._watch: NetworkWatch | None = None

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
        if self.follows_network and self._watch is None:
            self._watch = NetworkWatch.start(self._on_network_change)
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

    def _start_reader(self, ws: aiohttp.ClientWebSocketResponse, welcomed: bool = False) -> None:
        reader = asyncio.create_task(self._read(ws, welcomed))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, welcomed: bool) -> None:
        """Hands ``ws``'s messages over; ``welcomed``: its ``welcome`` was read already."""
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue
            message = _decode(frame.data)
            welcomed = welcomed or isinstance(message, m.Welcome)
            if ws is self._ws and self._pong is not None and not self._pong.done():
                self._pong.set_result(None)  # anything heard answers a probe: the line lives
                if isinstance(message, m.Pong):
                    continue  # the probe's own answer, not the caller's
            if isinstance(message, m.Reconnect) and ws is self._ws:
                self.reconnects.append(message)
                if self._mover is None or self._mover.done():
                    self._mover = asyncio.create_task(self._move(message))
                continue
            self._inbox.put_nowait(message)
        if ws is not self._ws or (self._mover is not None and not self._mover.done()):
            return  # an old connection, or one closed while the line moves: not the line's end
        # Only a signed-in connection is lost; a refused sign-in is the caller's to handle.
        if self.follows_network and welcomed and ws.close_code in RESUMABLE:
            self._lose(ws, ws.close_code)
            return
        self.close_code = ws.close_code
        self._inbox.put_nowait(None)

    # --- coming back after a lost connection ----------------------------------------------

    def _lose(self, ws: aiohttp.ClientWebSocketResponse, code: int | None) -> None:
        """``ws`` is lost: give it up without waiting for its closing handshake, and resume."""
        if ws is not self._ws or self._away:
            return
        self._away, self._ws = True, None
        if not ws.closed:
            closing = asyncio.create_task(ws.close())  # a dead network never answers the close
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        self._recovery = asyncio.create_task(self._recover(code))

    async def _recover(self, code: int | None) -> None:
        """Reconnect with the resume token until the resume window has passed; a network
        change cuts the wait between attempts short."""
        assert self.welcome is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.welcome.resume_window_s
        wait = MOVE_BACKOFF_S[0]
        while loop.time() < deadline:
            for server in self.servers:
                with contextlib.suppress(aiohttp.ClientError, OSError, msgspec.DecodeError):
                    if await asyncio.wait_for(self._resume(server, code), RECONNECT_WITHIN_S):
                        await self._flush()
                        return
            self._network_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._network_changed.wait(), wait)
            wait = min(wait * 2, MOVE_BACKOFF_S[1])
        self._outbox.clear()
        self._away, self.close_code = False, code
        self._inbox.put_nowait(None)

    async def _resume(self, server: str, code: int | None) -> bool:
        """One attempt; on success the caller gets the new ``welcome`` before anything the
        new connection brings (the messages queued for the device while it was away)."""
        assert self.welcome is not None
        ws = await self._connect(_ws_url(server), self.welcome.resume_token)
        frame = await ws.receive(timeout=AUTH_WAIT_S)
        welcome = _decode(frame.data) if frame.type is aiohttp.WSMsgType.TEXT else None
        if not isinstance(welcome, m.Welcome):
            await ws.close()
            return False
        # Not resumed (the window passed on the server's clock): its calls are over, and the
        # server says so (``ended``) right after this welcome; the caller sees both.
        self._ws, self.welcome, self.close_code, self._away = ws, welcome, None, False
        self.losses.append(code)
        self._inbox.put_nowait(welcome)
        self._start_reader(ws, welcomed=True)
        return True

    async def _flush(self) -> None:
        waiting, self._outbox = self._outbox, []
        for message in waiting:
            await self.send(message)

    def probe(self) -> None:
        """Check the connection now (the media path broke, the network changed): a ``ping``,
        and the connection is taken for lost when no ``pong`` comes within PROBE_WITHIN_S."""
        ws = self._ws
        if ws is None or ws.closed or (self._probe is not None and not self._probe.done()):
            return
        self._probe = asyncio.create_task(self._ping(ws))

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._pong = asyncio.get_running_loop().create_future()
        try:
            await ws.send_str(_encode(m.Ping()).decode())
            await asyncio.wait_for(self._pong, PROBE_WITHIN_S)
        except (TimeoutError, ConnectionError, RuntimeError, aiohttp.ClientError):
            if self.follows_network and self.welcome is not None:
                self._lose(ws, None)
        finally:
            self._pong = None

    def _on_network_change(self) -> None:
        self._network_changed.set()
        ws = self._ws
        if ws is None or ws.closed:
            return
        sockname = ws.get_extra_info("sockname")
        if sockname and not address_present(sockname[0]):
            self._lose(ws, None)  # its address went with the old network: it is dead
        else:
            self.probe()

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
        self._start_reader(ws, welcomed=True)
        self._moved.set()
        return True

    async def moved(self, within: float = 10.0) -> m.Welcome:
        """Wait until the line has moved after a ``reconnect``; the ``welcome`` there."""
        await asyncio.wait_for(self._moved.wait(), within)
        return self.moves[-1][1]

    async def send(self, message: m.ClientMessage) -> None:
        """Send now; while the line comes back, once it is back (in order)."""
        if self._away:
            if len(self._outbox) >= MAX_OUTBOX:
                raise LineClosed(None)
            self._outbox.append(message)
            return
        ws = self._ws
        if ws is None and self._recovery is not None:
            raise LineClosed(self.close_code)  # it did not come back within the window
        assert ws is not None, "open() first"
        try:
            await ws.send_str(_encode(message).decode())
        except (ConnectionError, RuntimeError):
            if not self.follows_network or self.welcome is None:
                raise
            self._lose(ws, None)  # written into a connection that is gone: resend it later
            self._outbox.append(message)

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
        """Lose the connection abruptly, as a phone changing networks does (and stay away)."""
        for task in (self._mover, self._recovery, self._probe):
            if task is not None:
                task.cancel()
        self._away = False
        for reader in list(self._readers):
            reader.cancel()
        if self._ws is not None:
            await self._ws.close()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        await self.drop()
        for closing in list(self._closing):
            closing.cancel()
        await self._http.close()


def address_present(address: str) -> bool:
    """Whether this host still has ``address`` (a socket bound to it is not dead yet)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError as exc:
            return exc.errno != errno.EADDRNOTAVAIL
    return True


#: rtnetlink multicast groups: links, IPv4 and IPv6 addresses and routes.
_RTMGRP = 0x1 | 0x10 | 0x40 | 0x100 | 0x400


class NetworkWatch:
    """The operating system's word that this host's links, addresses or routes changed, as a
    phone's connectivity callbacks (Android's NetworkCallback, iOS's NWPathMonitor) give it:
    on Linux an rtnetlink socket read by the event loop. Where there is none, ``start`` gives
    None and a line learns of a lost network from its socket alone."""

    def __init__(self, sock: socket.socket, on_change: Callable[[], None]) -> None:
        self._sock = sock
        self._on_change = on_change
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    def start(cls, on_change: Callable[[], None]) -> NetworkWatch | None:
        family = getattr(socket, "AF_NETLINK", None)
        if family is None:
            return None
        try:
            sock = socket.socket(family, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        except OSError:
            return None
        try:
            sock.bind((0, _RTMGRP))
            sock.setblocking(False)
        except OSError:
            sock.close()
            return None
        return cls(sock, on_change)

    def _readable(self) -> None:
        # What changed does not matter: the line checks its own socket. Read everything
        # waiting (an overflow, ENOBUFS, is a change too), then tell once.
        while True:
            try:
                if not self._sock.recv(65536):
                    break
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    break
        self._on_change()

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


def _ws_url(server: str) -> str:
    return server.replace("http", "ws", 1) + "/v1/ws"
