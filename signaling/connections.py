"""Limits on connections themselves, before any request: a deadline for the first request head,
and a cap on the connections one source address holds open.

aiohttp closes a connection that stays idle ``keepalive_timeout`` after it opened or after its
last response (``CALLBOOK_IDLE_TIMEOUT_S``, set through the app's ``handler_args``), and does not
extend that deadline as bytes trickle in: it bounds every later request head too. The first head
gets a shorter deadline here (``CALLBOOK_HEADER_TIMEOUT_S``), so a client that connects and sends
nothing, or half a request line, is gone in seconds.

The count per source lives in this process's memory only; it is never logged or stored. An IPv6
client is counted by its /64, the block one subscriber usually gets. A connection over the cap
is answered ``429 too_many_connections`` and closed before aiohttp sees it.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any, cast

import msgspec
from aiohttp import web

from signaling.appkeys import CONFIG, METRICS
from signaling.errors import SERVER, ApiError
from signaling.httpserver import Runner as HttpRunner
from signaling.protocol.problems import PROBLEM_CONTENT_TYPE, Problem

#: Retry-After of a connection refused over the cap.
CAP_RETRY_S = 1


class SourceCap:
    """Open connections per source, refusing one over ``limit`` (0: no limit)."""

    __slots__ = ("_limit", "_open")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: dict[str, int] = {}

    def admit(self, source: str) -> bool:
        held = self._open.get(source, 0)
        if self._limit and held >= self._limit:
            return False
        self._open[source] = held + 1
        return True

    def release(self, source: str) -> None:
        held = self._open.get(source, 0) - 1
        if held > 0:
            self._open[source] = held
        else:
            self._open.pop(source, None)

    def __len__(self) -> int:
        """How many sources hold a connection (never which)."""
        return len(self._open)


def source_of(peername: Any) -> str | None:
    """The address a connection is counted under: IPv4 as is, IPv6 by its /64."""
    if not isinstance(peername, tuple) or not peername:
        return None  # a Unix socket: a local proxy, not a client
    try:
        address = ipaddress.ip_address(peername[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _refusal() -> bytes:
    error = ApiError(
        "too_many_connections",
        "This address holds too many connections to the server; close some first.",
        CAP_RETRY_S,
    )
    kind = error.problem_type
    body = msgspec.json.encode(
        Problem(
            type=kind.uri,
            title=kind.title,
            status=kind.status,
            code=kind.code,
            detail=error.detail,
            retry_after=CAP_RETRY_S,
        )
    )
    head = (
        f"HTTP/1.1 {kind.status} Too Many Requests\r\n"
        f"Content-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {CAP_RETRY_S}\r\n"
        "Cache-Control: no-store\r\n"
        f"Server: {SERVER}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


_REFUSAL = _refusal()


class _Guard(asyncio.Protocol):
    """aiohttp's connection (``inner``) behind the source cap and the first head's deadline."""

    __slots__ = (
        "_cap",
        "_inner",
        "_refused",
        "_source",
        "_tail",
        "_timeout",
        "_timer",
        "_transport",
    )

    def __init__(
        self,
        inner: asyncio.Protocol,
        cap: SourceCap,
        header_timeout_s: float,
        refused: Callable[[], None],
    ) -> None:
        self._inner = inner
        self._cap = cap
        self._timeout = header_timeout_s
        self._refused = refused
        self._source: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = cast(asyncio.Transport, transport)
        source = source_of(transport.get_extra_info("peername"))
        if source is not None and not self._cap.admit(source):
            transport.write(_REFUSAL)
            transport.close()
            self._refused()
            return
        self._source = source
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._timeout, self._expire)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return  # refused: whatever it sends is dropped
        if self._timer is not None:
            self._watch(data)
        self._inner.data_received(data)

    def _watch(self, data: bytes) -> None:
        # Only until the first head is complete: a few reads per connection.
        seen = self._tail + data
        if b"\n\r\n" in seen or b"\n\n" in seen:
            assert self._timer is not None
            self._timer.cancel()
            self._timer = None
            self._tail = b""
        else:
            self._tail = seen[-3:]

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._transport.close()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._transport is not None else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._source is not None:
            self._cap.release(self._source)
        self._inner.connection_lost(exc)


class Runner(HttpRunner):
    """The transport of signaling/httpserver.py, whose listening sockets hand every connection
    to a guard first; the limits are the app's configuration."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        config = app[CONFIG]
        self._cap = SourceCap(config.max_connections_per_source)
        self._header_timeout_s = config.header_timeout_s
        metrics = app[METRICS]
        self._refused = lambda: metrics.on_rejected("too_many_connections")

    @property
    def server(self) -> Any:
        """What the sites listen with: a protocol factory (aiohttp's own, behind the guard)."""
        inner = super().server
        if inner is None:
            return None
        cap, timeout, refused = self._cap, self._header_timeout_s, self._refused
        return lambda: _Guard(inner(), cap, timeout, refused)
