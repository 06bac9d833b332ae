"""The HTTP transport under the application: what aiohttp answers before any route runs.

A request that is not HTTP, or whose request line or headers are too long, never reaches the
middleware; aiohttp answers it from the connection itself, in plain text, and logs an ERROR with
the client's address. Here those answers are problem+json too, and an input a stranger can send
at will is logged at DEBUG without the address: an ERROR line means a bug of ours.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from signaling.errors import ApiError
from signaling.pages import SECURITY_HEADERS

log = logging.getLogger("callbook.http")

#: Errors a client causes with what it sends; everything else stays an ERROR.
CLIENT_FAULTS: tuple[type[BaseException], ...] = (
    HttpProcessingError,
    web.RequestPayloadError,
    ConnectionError,
)


class _Connection(RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or not isinstance(exc, CLIENT_FAULTS):
            return super().handle_error(request, status, exc, message)
        log.debug("refused a request that is not valid HTTP: %s", type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had started; the connection is closed instead")
        if isinstance(exc, LineTooLong):
            error = ApiError("headers_too_large", "The request line or a header is too long.")
        else:
            error = ApiError("malformed_http", "The request could not be parsed as HTTP/1.1.")
        response = error.response(dict(SECURITY_HEADERS))
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, CLIENT_FAULTS):
            # e.g. a broken chunked body, discarded after the answer: the client's doing.
            log.debug("dropped a connection: %s", type(exc).__name__)
            return
        super().log_exception(*args, **kw)


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """``web.AppRunner`` whose connections answer unparseable requests as problems."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **server._kwargs,
        )
