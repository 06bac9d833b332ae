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

from directory.operators import Operator
from signaling.rest.bodies import read_json
from signaling.tokens import Principal

T = TypeVar("T")

Handler = Callable[["Call"], Awaitable[Any]]
Authenticator = Callable[[web.Request], Awaitable[Principal]]
OperatorAuthenticator = Callable[[web.Request], Awaitable[Operator]]

_PARAM = re.compile(r"\{(\w+)\}")
_encode = msgspec.json.Encoder().encode


def wire(value: object, kind: type[T]) -> T:
    """``value`` (a ``directory`` record, or a dict holding some) as the protocol's ``kind``.

    The address book keeps its own storage model; what the API answers is the wire model of
    ``signaling.protocol``. Their fields match (tests/test_protocol_package.py), so the copy is
    by attribute name, checked against ``kind``'s types on the way.
    """
    return msgspec.convert(value, kind, from_attributes=True)


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
    #: Needs an operator token (``/v1/operator/...``) instead of a device's access token.
    operator: bool = False
    #: What the success answer carries when it is not JSON (e.g. ``text/event-stream``).
    media_type: str = "application/json"

    def aiohttp_path(self) -> str:
        return _PARAM.sub(lambda m: f"{{{m[1]}:{self.params[m[1]].pattern}}}", self.path)


@dataclass(slots=True)
class Call:
    request: web.Request
    principal_or_none: Principal | None
    body: Any
    params: dict[str, str]
    operator_or_none: Operator | None = None

    @property
    def principal(self) -> Principal:
        assert self.principal_or_none is not None, "endpoint declared without auth"
        return self.principal_or_none

    @property
    def operator(self) -> Operator:
        assert self.operator_or_none is not None, "endpoint declared without operator auth"
        return self.operator_or_none

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
        operator: bool = False,
        media_type: str = "application/json",
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            endpoint = Endpoint(
                method, path, handler, summary, tag, request, response, status, auth,
                errors, params or {}, operator, media_type,
            )  # fmt: skip
            self.endpoints.append(endpoint)
            return handler

        return register


def adapt(
    endpoint: Endpoint,
    authenticate: Authenticator,
    authenticate_operator: OperatorAuthenticator | None = None,
) -> Callable[..., Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        principal: Principal | None = None
        operator: Operator | None = None
        if endpoint.operator:
            assert authenticate_operator is not None, "operator endpoints need an authenticator"
            operator = await authenticate_operator(request)
        elif endpoint.auth:
            principal = await authenticate(request)
        body: Any = None
        if endpoint.request is not None:
            body = await read_json(request, endpoint.request)
        call = Call(request, principal, body, dict(request.match_info), operator)
        result = await endpoint.handler(call)
        if isinstance(result, web.StreamResponse):
            return result  # a stream the handler wrote itself
        if result is None:
            return web.Response(status=endpoint.status, headers={"Cache-Control": "no-store"})
        return web.Response(
            status=endpoint.status,
            body=_encode(result),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    return handle


def register(
    app: web.Application,
    endpoints: list[Endpoint],
    authenticate: Authenticator,
    authenticate_operator: OperatorAuthenticator | None = None,
) -> None:
    for endpoint in endpoints:
        handler = adapt(endpoint, authenticate, authenticate_operator)
        if endpoint.method == "GET":
            app.router.add_get(endpoint.aiohttp_path(), handler)  # HEAD comes with GET
        else:
            app.router.add_route(endpoint.method, endpoint.aiohttp_path(), handler)
