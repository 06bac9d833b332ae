"""Declaring REST endpoints once: the same table registers aiohttp routes and writes OpenAPI.

A handler takes a ``Call`` (the decoded body, the authenticated principal, path parameters) and
returns a Struct or None. The adapter around it does the parsing, authentication and encoding,
so every endpoint validates the same way and cannot forget to.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from signaling.errors import ApiError
from signaling.tokens import Principal

T = TypeVar("T")

Handler = Callable[["Call"], Awaitable[Any]]
Authenticator = Callable[[web.Request], Awaitable[Principal]]

_PARAM = re.compile(r"\{(\w+)\}")
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Param:
    pattern: str
    description: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    request: type | None = None
    response: type | None = None
    status: int = 200
    auth: bool = True
    errors: tuple[str, ...] = ()
    params: dict[str, Param] = field(default_factory=dict)

    def aiohttp_path(self) -> str:
        return _PARAM.sub(lambda m: f"{{{m[1]}:{self.params[m[1]].pattern}}}", self.path)


@dataclass(slots=True)
class Call:
    request: web.Request
    principal_or_none: Principal | None
    body: Any
    params: dict[str, str]

    @property
    def principal(self) -> Principal:
        assert self.principal_or_none is not None, "endpoint declared without auth"
        return self.principal_or_none

    def body_as(self, kind: type[T]) -> T:
        assert isinstance(self.body, kind)
        return self.body


class Api:
    """The endpoint table of one API; modules add to it with the ``route`` decorator."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        request: type | None = None,
        response: type | None = None,
        status: int = 200,
        auth: bool = True,
        errors: tuple[str, ...] = (),
        params: dict[str, Param] | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            endpoint = Endpoint(
                method, path, handler, summary, tag, request, response, status, auth,
                errors, params or {},
            )  # fmt: skip
            self.endpoints.append(endpoint)
            return handler

        return register


def decode_body(raw: bytes, content_type: str, kind: type[T]) -> T:
    if content_type != "application/json":
        raise ApiError("unsupported_media_type", "Send the body as application/json.")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError("invalid_request", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ApiError("malformed_json", f"The body is not valid JSON: {exc}.") from exc


def adapt(endpoint: Endpoint, authenticate: Authenticator) -> Callable[..., Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        principal = await authenticate(request) if endpoint.auth else None
        body: Any = None
        if endpoint.request is not None:
            try:
                raw = await request.read()
            except web.RequestPayloadError as exc:
                raise ApiError(
                    "malformed_json", "The body could not be decoded (check Content-Encoding)."
                ) from exc
            body = decode_body(raw, request.content_type, endpoint.request)
        call = Call(request, principal, body, dict(request.match_info))
        result = await endpoint.handler(call)
        if result is None:
            return web.Response(status=endpoint.status, headers={"Cache-Control": "no-store"})
        return web.Response(
            status=endpoint.status,
            body=_encode(result),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    return handle


def register(app: web.Application, endpoints: list[Endpoint], authenticate: Authenticator) -> None:
    for endpoint in endpoints:
        handler = adapt(endpoint, authenticate)
        if endpoint.method == "GET":
            app.router.add_get(endpoint.aiohttp_path(), handler)  # HEAD comes with GET
        else:
            app.router.add_route(endpoint.method, endpoint.aiohttp_path(), handler)
