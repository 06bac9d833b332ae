"""``GET /v1/ws``: one WebSocket per device, carrying the call protocol.

Authentication is the access token, either in ``Sec-WebSocket-Protocol`` (``bearer.<token>``
next to ``callbook.v1``) or in a first ``auth`` message; never in the URL. An upgrade that does
not offer ``callbook.v1`` is refused before it opens. Each connection is limited in message size
and rate; a bad frame gets a typed error or a close code and never disturbs another connection.
A device that goes away (a reset, even in the middle of a pong) is a disconnect, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from directory import devices
from directory.errors import DirectoryError
from directory.storage.connection import STORE_UNAVAILABLE
from signaling.appkeys import (
    CALLS,
    CONFIG,
    METRICS,
    RECONNECTS,
    SOCKETS,
    STORE,
    STORE_OUTAGE,
    TOKENS,
)
from signaling.calls.errors import CallError
from signaling.calls.machine import DeviceRef
from signaling.cluster.drain import DRAIN
from signaling.errors import ApiError
from signaling.limits import Throttle
from signaling.metrics import Metrics
from signaling.protocol import messages as m
from signaling.protocol.closes import (
    CLOSE_DRAINING,
    CLOSE_OPERATOR,
    CLOSE_REPLACED,
    CLOSE_REVOKED,
    MAX_MESSAGE_BYTES,
    SUBPROTOCOL,
)
from signaling.tokens import Principal
from signaling.ws.masking import ClientSocket

log = logging.getLogger("callbook.ws")

AUTH_TIMEOUT_S = 10.0
HEARTBEAT_S = 20.0
RATE_PER_S = 20.0
BURST = 60
#: Over-limit messages tolerated before the connection is closed (1008).
MAX_VIOLATIONS = 20
OUTBOX = 512
TRY_AGAIN = WSCloseCode.TRY_AGAIN_LATER
#: Retry-After of a WebSocket refused while draining: another node answers by then.
DRAIN_RETRY_S = 1

_decode = msgspec.json.Decoder(m.ClientMessages).decode
#: With ``CALLBOOK_SFU_BUNDLE=off`` a ``publish {bundle: true}`` is refused exactly as a server
#: from before 11.15.2 refused the field it did not know (msgspec's words, no call named), so
#: that clients take the fallback they have for such servers: ``publish`` without ``bundle``.
NO_BUNDLE = "Object contains unknown field `bundle` (one connection per participant is off)"
_encode = msgspec.json.Encoder().encode


class WsLink:
    """Outbound side of one connection: messages in order, written at once when the socket
    takes them, else queued for a task that exists only while there is something to write (an
    idle device costs no queue and no task: an empty deque alone is 760 bytes)."""

    __slots__ = ("_closing", "_metrics", "_outbox", "_writer", "_ws", "close_code")

    def __init__(self, ws: ClientSocket, metrics: Metrics) -> None:
        self._ws = ws
        self._metrics = metrics
        self._outbox: deque[bytes] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self._closing: asyncio.Future[bool] | None = None

    def send(self, message: m.ServerMessage) -> None:
        if self.close_code is not None:
            return
        data = _encode(message)
        outbox = self._outbox
        if outbox is None:
            try:
                if self._ws.write_now(data):
                    return
            except ConnectionError:
                return  # gone: nobody to tell
            outbox = self._outbox = deque()
        elif len(outbox) >= OUTBOX:
            self.close(WSCloseCode.POLICY_VIOLATION)  # a reader this slow is gone
            return
        outbox.append(data)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())

    def error(self, *, code: str, detail: str) -> None:
        """Send a typed error frame: the input was refused, which the metrics count."""
        self.refuse(m.Error(code=code, detail=detail))

    def refuse(self, error: m.Error) -> None:
        self._metrics.on_rejected(error.code)
        self.send(error)

    def replaced(self) -> None:
        self.close(CLOSE_REPLACED)

    def revoked(self) -> None:
        self.close(CLOSE_REVOKED)

    def disconnected(self) -> None:
        self.close(CLOSE_OPERATOR)

    def drained(self) -> None:
        self.close(CLOSE_DRAINING)

    def close(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
            self._outbox = None
            self._closing = asyncio.ensure_future(self._ws.close(code=code))

    async def _write(self) -> None:
        try:
            while self._outbox:
                await self._ws.send_frame(self._outbox.popleft(), WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            pass  # gone: what is left is for nobody
        finally:
            self._outbox = None
            self._writer = None

    async def flush(self) -> None:
        """Wait (briefly) until every queued message is written: errors before a close."""
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(writer), 2.0)

    async def drain_and_stop(self) -> None:
        await self.flush()


def _origin_allowed(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # native clients send none
    own = f"{request.scheme}://{request.host}"
    return origin == own or origin in request.app[CONFIG].allowed_origins


class _Offer:
    """What the upgrade request offered to sign in with, until the sign-in has used it: the
    frames of a connection live as long as it does, and an idle device should not keep its
    token and the parsed header in them."""

    __slots__ = ("resume", "token", "verified")

    def __init__(self, protocols: list[str]) -> None:
        self.token = _offered(protocols, "bearer.")
        self.resume = _offered(protocols, "resume.")
        self.verified: Principal | ApiError | None = None

    def take(self) -> tuple[str | None, str | None, Principal | ApiError | None]:
        taken = self.token, self.resume, self.verified
        self.token = self.resume = self.verified = None
        return taken


def _protocols(request: web.Request) -> list[str]:
    return [item.strip() for item in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]


def _offered(protocols: list[str], prefix: str) -> str | None:
    for item in protocols:
        if item.startswith(prefix):
            return item[len(prefix) :]
    return None


def _offer(request: web.Request) -> _Offer:
    protocols = _protocols(request)
    if SUBPROTOCOL not in protocols:
        # Refused here, before aiohttp would accept the upgrade without a subprotocol.
        raise ApiError(
            "subprotocol_required", f"Offer the {SUBPROTOCOL} subprotocol (Sec-WebSocket-Protocol)."
        )
    return _Offer(protocols)


async def websocket(request: web.Request) -> web.StreamResponse:
    if not _origin_allowed(request):
        raise ApiError("forbidden_origin", "This origin may not open the call WebSocket.")
    if request.app[DRAIN].active:
        raise ApiError("draining", "This server is shutting down; connect again.", DRAIN_RETRY_S)
    offer = _offer(request)
    offer.verified = await _verify_offered(request, offer.token)
    # aiohttp refuses a frame of exactly max_msg_size bytes (and lets a compressed message of
    # that size through): one byte more here, the exact limit in _too_big.
    ws = ClientSocket(
        protocols=(SUBPROTOCOL,), heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES + 1
    )
    await ws.prepare(request)
    # The device may go away while a frame is being written (a reset while a pong is sent):
    # a disconnect, not an error.
    with contextlib.suppress(ConnectionError):
        await _session(request, ws, offer)
    return ws


async def _verify_offered(request: web.Request, token: str | None) -> Principal | ApiError | None:
    """The ``bearer.`` token's device, checked before the upgrade so that a device reconnecting
    in a loop is refused (429) before it costs a handshake. A bad token is refused after the
    upgrade as documented; None (no token, or the store was needed and is away) leaves every
    check to the sign-in."""
    if token is None:
        return None
    try:
        principal = await request.app[TOKENS].verify(token)
    except ApiError as error:
        return error
    except STORE_UNAVAILABLE:
        return None
    _charge_reconnect(request, principal)
    return principal


def _charge_reconnect(request: web.Request, principal: Principal) -> None:
    wait = request.app[RECONNECTS].try_connect(principal.device_id)
    if wait:
        raise ApiError("rate_limited", f"This device connects too often; wait {wait} s.", wait)


async def _session(request: web.Request, ws: ClientSocket, offer: _Offer) -> None:
    request.app[SOCKETS].add(ws)
    metrics = request.app[METRICS]
    link = WsLink(ws, metrics)
    device: DeviceRef | None = None
    calls = request.app[CALLS]
    connections = metrics.websocket_connections
    connections.inc()
    try:
        authed = await _authenticate(request, ws, link, *offer.take())
        if authed is None:
            return
        device = DeviceRef(authed[0].account_id, authed[0].device_id)
        resume = authed[1]
        authed = None  # nor the principal: this frame lives as long as the connection
        try:
            await calls.connect(device, link, resume)
        except STORE_UNAVAILABLE:
            await _refuse_unavailable(request, ws, link)
            return
        await _serve(request, ws, link, device)
    finally:
        connections.dec()
        if device is not None:
            calls.disconnect(device, link)
        await link.drain_and_stop()


async def _authenticate(
    request: web.Request,
    ws: web.WebSocketResponse,
    link: WsLink,
    token: str | None,
    resume: str | None,
    verified: Principal | ApiError | None,
) -> tuple[Principal, str | None] | None:
    if token is None:
        try:
            frame = await ws.receive(timeout=AUTH_TIMEOUT_S)
        except TimeoutError:
            await _refuse(ws, link, "auth_timeout", "Send an auth message first.")
            return None
        if frame.type is not WSMsgType.TEXT:
            await _refuse(ws, link, "auth_required", "Send an auth message first.")
            return None
        try:
            first = _decode(frame.data)
        except msgspec.DecodeError:
            await _refuse(ws, link, "auth_required", "Send an auth message first.")
            return None
        request.app[METRICS].on_ws_message(first)
        if not isinstance(first, m.Auth):
            await _refuse(ws, link, "auth_required", "Send an auth message first.")
            return None
        token, resume = first.token, first.resume
    try:
        if isinstance(verified, ApiError):
            raise verified
        principal = verified
        if principal is None:
            principal = await request.app[TOKENS].verify(token)
            _charge_reconnect(request, principal)
        if not await devices.is_active(
            request.app[STORE], principal.account_id, principal.device_id
        ):
            raise ApiError("device_revoked", "This device was revoked.")
    except ApiError as error:
        code = error.problem_type.code
        close = TRY_AGAIN if code == "rate_limited" else WSCloseCode.POLICY_VIOLATION
        await _refuse(ws, link, code, error.detail, close)
        return None
    except STORE_UNAVAILABLE:
        await _refuse_unavailable(request, ws, link)
        return None
    return principal, resume


async def _refuse(
    ws: web.WebSocketResponse,
    link: WsLink,
    code: str,
    detail: str,
    close_code: WSCloseCode = WSCloseCode.POLICY_VIOLATION,
) -> None:
    link.error(code=code, detail=detail)
    await link.drain_and_stop()
    await ws.close(code=close_code, message=code.encode())


async def _refuse_unavailable(
    request: web.Request, ws: web.WebSocketResponse, link: WsLink
) -> None:
    """The store is away while signing in: nothing to serve this connection with (1013)."""
    request.app[STORE_OUTAGE].failed("a WebSocket sign-in")
    detail = "The store is unavailable; connect again shortly."
    await _refuse(ws, link, "unavailable", detail, WSCloseCode.TRY_AGAIN_LATER)


async def _serve(
    request: web.Request, ws: web.WebSocketResponse, link: WsLink, device: DeviceRef
) -> None:
    calls = request.app[CALLS]
    metrics = request.app[METRICS]
    bundling = request.app[CONFIG].sfu_bundle
    throttle = Throttle(RATE_PER_S, BURST)
    violations = 0
    async for frame in ws:
        if frame.type is WSMsgType.BINARY:
            await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"text frames only")
            return
        if frame.type is not WSMsgType.TEXT:
            continue
        if _too_big(frame.data):
            await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=b"message too big")
            return
        if throttle.try_take():
            violations += 1
            link.error(code="rate_limited", detail="Too many messages; slow down.")
            if violations > MAX_VIOLATIONS:
                await link.flush()
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"flood")
                return
            continue
        try:
            message = _decode(frame.data)
        except msgspec.ValidationError as exc:
            link.error(code="invalid_message", detail=str(exc))
            continue
        except msgspec.DecodeError:
            await ws.close(code=WSCloseCode.INVALID_TEXT, message=b"frames are JSON")
            return
        metrics.on_ws_message(message)
        if not bundling and isinstance(message, m.Publish) and message.bundle:
            link.error(code="invalid_message", detail=NO_BUNDLE)
            continue
        if isinstance(message, m.Auth):
            link.error(code="already_authenticated", detail="This connection is signed in.")
            continue
        try:
            await calls.handle(device, message)
        except STORE_UNAVAILABLE:
            link.refuse(m.refusal(message, "unavailable", "The store is unavailable; try again."))
        except DirectoryError as error:
            link.refuse(m.refusal(message, error.code, error.detail))
        except CallError as error:
            link.refuse(m.refusal(message, error.code, error.detail, error.call_id))


def _too_big(text: str) -> bool:
    """Over MAX_MESSAGE_BYTES as UTF-8 (a character is at most 4 bytes: most never encode)."""
    return len(text) > MAX_MESSAGE_BYTES // 4 and len(text.encode()) > MAX_MESSAGE_BYTES


async def close_all(app: web.Application) -> None:
    """On shutdown: tell every device to reconnect elsewhere, then close with 1001."""
    sockets = app[SOCKETS]
    for ws in list(sockets):
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
