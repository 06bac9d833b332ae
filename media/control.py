"""The SFU's HTTP control API (driven by signaling over loopback) and its Python client.

Every route but ``/healthz`` needs ``Authorization: Bearer <secret>``. Errors are RFC 9457
``application/problem+json`` with a stable ``code``; bodies are msgspec Structs that reject
unknown fields, so a typo in signaling fails loudly instead of being ignored.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

import aiohttp
import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from media import errors
from media.backend import Rooms
from media.bundle import Offer, offer_from_wire, offer_to_wire
from media.config import MediaConfig
from media.forwarding import Source
from media.metrics import NodeCollector
from media.node import MediaNode, NodeLimits
from media.registry import registration
from media.udpmux import UdpMux

PROBLEM_CONTENT_TYPE = "application/problem+json"
MAX_BODY = 256 * 1024

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=128 * 1024)]


class Description(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["offer", "answer"]
    sdp: Sdp


class CreateRoom(msgspec.Struct, forbid_unknown_fields=True):
    room: Name
    max_participants: Annotated[int, msgspec.Meta(ge=2, le=1000)] = 16


class Join(msgspec.Struct, forbid_unknown_fields=True):
    participant: Name
    offer: Description
    #: One connection for everything: what it receives is added by our offers (``offer``).
    bundle: bool = False


class Subscribe(msgspec.Struct, forbid_unknown_fields=True):
    publisher: Name
    #: Which of the publisher's tracks: its camera (audio + video) or its shared screen.
    source: Literal["camera", "screen"] = "camera"


class PublishScreen(msgspec.Struct, forbid_unknown_fields=True):
    offer: Description


class Answer(msgspec.Struct, forbid_unknown_fields=True):
    answer: Description


class View(msgspec.Struct, forbid_unknown_fields=True):
    """The largest picture a subscriber wants of one publisher's source (issue 16): a simulcast
    publisher is then forwarded in the highest layer no taller than ``max_height`` (0 pauses
    its video, null lifts the limit)."""

    publisher: Name
    source: Literal["camera", "screen"] = "camera"
    max_height: Annotated[int, msgspec.Meta(ge=0, le=100_000)] | None = None


log = logging.getLogger("callbook.media")

#: What the routes drive: the in-process node, or the pool of worker processes.
ROOMS = web.AppKey("media_rooms", Rooms)
#: The in-process node (workers = 0 only; tests reach into it).
NODE = web.AppKey("media_node", MediaNode)
#: Set to write the registry entry now rather than at the next heartbeat.
WAKE = web.AppKey("media_wake", asyncio.Event)
CONFIG = web.AppKey("media_config", MediaConfig)
REGISTRY = web.AppKey("media_registry", CollectorRegistry)

S = TypeVar("S", bound=msgspec.Struct)


def problem(error: errors.MediaError) -> web.Response:
    body = {
        "type": f"urn:callbook:media:problem:{error.code}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    return web.Response(
        status=error.status, body=json.dumps(body), content_type=PROBLEM_CONTENT_TYPE
    )


async def _body(request: web.Request, struct: type[S]) -> S:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise errors.InvalidRequest(f"body larger than {MAX_BODY} bytes") from exc
    try:
        return msgspec.json.decode(raw, type=struct)
    except msgspec.ValidationError as exc:
        raise errors.InvalidRequest(str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise errors.InvalidRequest(f"malformed JSON: {exc}") from exc


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer secret (constant-time compare) and typed errors as problem+json."""
    try:
        if request.path != "/healthz":
            secret = request.app[CONFIG].secret.encode()
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), secret):
                raise errors.Unauthorized("send Authorization: Bearer <secret>")
        return await handler(request)
    except errors.MediaError as exc:
        return problem(exc)
    except web.HTTPNotFound:
        return problem(errors.NotFound(f"no route {request.path}"))
    except web.HTTPMethodNotAllowed:
        return problem(errors.MethodNotAllowed(f"{request.method} is not allowed here"))


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def create_room(request: web.Request) -> web.Response:
    body = await _body(request, CreateRoom)
    created = await request.app[ROOMS].open_room(body.room, body.max_participants)
    return _json({"room": body.room}, status=201 if created else 200)


async def delete_room(request: web.Request) -> web.Response:
    await request.app[ROOMS].delete_room(request.match_info["room"])
    return web.Response(status=204)


async def room_stats(request: web.Request) -> web.Response:
    return _json(await request.app[ROOMS].room_stats(request.match_info["room"]))


async def join(request: web.Request) -> web.Response:
    body = await _body(request, Join)
    if body.offer.type != "offer":
        raise errors.InvalidRequest("offer.type must be 'offer'")
    answer = await request.app[ROOMS].join(
        request.match_info["room"], body.participant, body.offer.sdp, body.bundle
    )
    return _json({"answer": {"type": "answer", "sdp": answer}}, status=201)


async def leave(request: web.Request) -> web.Response:
    info = request.match_info
    await request.app[ROOMS].leave(info["room"], info["participant"])
    return web.Response(status=204)


async def subscribe(request: web.Request) -> web.Response:
    body = await _body(request, Subscribe)
    info = request.match_info
    sub_id, offer = await request.app[ROOMS].subscribe(
        info["room"], info["participant"], body.publisher, Source(body.source)
    )
    described = None if offer is None else {"type": "offer", "sdp": offer}
    return _json({"subscription": sub_id, "offer": described, "bundle": offer is None}, status=201)


def _offer_response(offer: Offer | None) -> web.Response:
    return web.Response(status=204) if offer is None else _json(offer_to_wire(offer))


async def bundle_offer(request: web.Request) -> web.Response:
    info = request.match_info
    return _offer_response(await request.app[ROOMS].offer(info["room"], info["participant"]))


async def bundle_answer(request: web.Request) -> web.Response:
    body = await _body(request, Answer)
    if body.answer.type != "answer":
        raise errors.InvalidRequest("answer.type must be 'answer'")
    info = request.match_info
    try:
        revision = int(info["revision"])
    except ValueError:
        raise errors.InvalidRequest("the revision must be a number") from None
    offer = await request.app[ROOMS].accept_offer_answer(
        info["room"], info["participant"], revision, body.answer.sdp
    )
    return _offer_response(offer)


async def publish_screen(request: web.Request) -> web.Response:
    body = await _body(request, PublishScreen)
    if body.offer.type != "offer":
        raise errors.InvalidRequest("offer.type must be 'offer'")
    info = request.match_info
    answer = await request.app[ROOMS].publish_screen(
        info["room"], info["participant"], body.offer.sdp
    )
    return _json({"answer": {"type": "answer", "sdp": answer}}, status=201)


async def unpublish_screen(request: web.Request) -> web.Response:
    info = request.match_info
    await request.app[ROOMS].unpublish_screen(info["room"], info["participant"])
    return web.Response(status=204)


async def answer(request: web.Request) -> web.Response:
    body = await _body(request, Answer)
    if body.answer.type != "answer":
        raise errors.InvalidRequest("answer.type must be 'answer'")
    info = request.match_info
    await request.app[ROOMS].accept_answer(
        info["room"], info["participant"], info["subscription"], body.answer.sdp
    )
    return web.Response(status=204)


async def set_view(request: web.Request) -> web.Response:
    body = await _body(request, View)
    info = request.match_info
    await request.app[ROOMS].set_view(
        info["room"], info["participant"], body.publisher, Source(body.source), body.max_height
    )
    return web.Response(status=204)


async def node_stats(request: web.Request) -> web.Response:
    await request.app[ROOMS].refresh()
    return _json(request.app[ROOMS].node_stats())


async def metrics(request: web.Request) -> web.Response:
    await request.app[ROOMS].refresh()
    return web.Response(
        body=generate_latest(request.app[REGISTRY]),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


def create_app(config: MediaConfig) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[CONFIG] = config
    registry = CollectorRegistry(auto_describe=True)
    registry.register(NodeCollector(lambda: app[ROOMS].node_stats() if ROOMS in app else None))
    app[REGISTRY] = registry
    app[WAKE] = asyncio.Event()
    app.cleanup_ctx.append(_workers(config, app) if config.workers else _media_node(config, app))
    app.cleanup_ctx.append(registration(config, lambda: app[ROOMS].node_stats(), app[WAKE]))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/stats", node_stats)
    app.router.add_post("/v1/rooms", create_room)
    room = "/v1/rooms/{room}"
    app.router.add_get(room, room_stats)
    app.router.add_delete(room, delete_room)
    app.router.add_post(f"{room}/participants", join)
    participant = f"{room}/participants/{{participant}}"
    app.router.add_delete(participant, leave)
    app.router.add_post(f"{participant}/subscriptions", subscribe)
    app.router.add_put(f"{participant}/screen", publish_screen)
    app.router.add_delete(f"{participant}/screen", unpublish_screen)
    app.router.add_put(f"{participant}/subscriptions/{{subscription}}", answer)
    app.router.add_post(f"{participant}/offer", bundle_offer)
    app.router.add_put(f"{participant}/offer/{{revision}}", bundle_answer)
    app.router.add_put(f"{participant}/view", set_view)
    return app


def _media_node(
    config: MediaConfig, app: web.Application
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        mux = (
            None
            if config.udp_port is None
            else await UdpMux().start(config.udp_port, ipv6=config.ice_ipv6)
        )
        node = MediaNode(
            NodeLimits(
                config.max_rooms,
                config.max_participants,
                config.caps,
                config.public_ip,
                config.padding_probes,
            ),
            mux,
        )
        app[NODE] = node
        app[ROOMS] = node
        if mux is not None:
            log.info("media on UDP port %d", mux.port)
        yield
        await node.close()  # closes every peer connection
        if mux is not None:
            mux.close()

    return ctx


def _workers(
    config: MediaConfig, app: web.Application
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        # Imported here: the pool drives its workers with this module's client.
        from media.workers import WorkerPool

        pool = WorkerPool(config, changed=app[WAKE].set)
        await pool.start()  # every worker answers before the node listens
        app[ROOMS] = pool
        yield
        await pool.close()

    return ctx


# --- client ----------------------------------------------------------------------------------


class MediaControlError(Exception):
    """A problem+json answer from the media node; ``code`` is the stable wire code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class MediaControl:
    """What signaling calls: one method per endpoint, SDP strings in and out."""

    def __init__(
        self, base_url: str, secret: str, timeout_s: float = 30.0, unix_socket: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: A worker process's control API listens on a Unix socket (media/workers.py).
        self._unix_socket = unix_socket
        self._headers = {"Authorization": f"Bearer {secret}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> MediaControl:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            unix = self._unix_socket
            connector = None if unix is None else aiohttp.UnixConnector(unix)
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout, connector=connector
            )
        async with self._session.request(method, self.base_url + path, json=body) as response:
            if response.status >= 400:
                try:
                    data = await response.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    data = {}
                raise MediaControlError(
                    response.status, str(data.get("code", "unknown")), str(data.get("detail", ""))
                )
            if response.status == 204:
                return None
            return await response.json()

    async def health(self) -> bool:
        data = await self._request("GET", "/healthz")
        return bool(data.get("status") == "ok")

    async def create_room(self, room: str, max_participants: int = 16) -> None:
        await self._request(
            "POST", "/v1/rooms", {"room": room, "max_participants": max_participants}
        )

    async def delete_room(self, room: str) -> None:
        await self._request("DELETE", f"/v1/rooms/{room}")

    async def join(self, room: str, participant: str, offer_sdp: str, bundle: bool = False) -> str:
        """Publishes ``participant``'s offer; returns the SFU's answer SDP. ``bundle``: its
        one connection will also carry what it receives (``offer``/``answer_offer``)."""
        body: dict[str, Any] = {
            "participant": participant,
            "offer": {"type": "offer", "sdp": offer_sdp},
        }
        if bundle:
            body["bundle"] = True
        data = await self._request("POST", f"/v1/rooms/{room}/participants", body)
        return str(data["answer"]["sdp"])

    async def leave(self, room: str, participant: str) -> None:
        await self._request("DELETE", f"/v1/rooms/{room}/participants/{participant}")

    async def publish_screen(self, room: str, participant: str, offer_sdp: str) -> str:
        """``participant``'s shared screen (an offer of one video track); the SFU's answer."""
        data = await self._request(
            "PUT",
            f"/v1/rooms/{room}/participants/{participant}/screen",
            {"offer": {"type": "offer", "sdp": offer_sdp}},
        )
        return str(data["answer"]["sdp"])

    async def unpublish_screen(self, room: str, participant: str) -> None:
        await self._request("DELETE", f"/v1/rooms/{room}/participants/{participant}/screen")

    async def subscribe(
        self, room: str, participant: str, publisher: str, source: str = "camera"
    ) -> tuple[str, str | None]:
        """A downlink of ``publisher``'s ``source`` (camera or screen) to ``participant``:
        (subscription id, SFU offer SDP); no offer when ``participant`` is bundled."""
        data = await self._request(
            "POST",
            f"/v1/rooms/{room}/participants/{participant}/subscriptions",
            {"publisher": publisher, "source": source},
        )
        offer = data.get("offer")
        return str(data["subscription"]), None if offer is None else str(offer["sdp"])

    async def offer(self, room: str, participant: str) -> Offer | None:
        """A bundled participant's outstanding offer, made now if anything changed; None when
        there is nothing to negotiate (or the participant is not bundled)."""
        data = await self._request("POST", f"/v1/rooms/{room}/participants/{participant}/offer")
        return None if data is None else offer_from_wire(data)

    async def answer_offer(
        self, room: str, participant: str, revision: int, answer_sdp: str
    ) -> Offer | None:
        """The answer to offer ``revision``; returns the next offer when one is due."""
        data = await self._request(
            "PUT",
            f"/v1/rooms/{room}/participants/{participant}/offer/{revision}",
            {"answer": {"type": "answer", "sdp": answer_sdp}},
        )
        return None if data is None else offer_from_wire(data)

    async def answer(self, room: str, participant: str, subscription: str, answer_sdp: str) -> None:
        await self._request(
            "PUT",
            f"/v1/rooms/{room}/participants/{participant}/subscriptions/{subscription}",
            {"answer": {"type": "answer", "sdp": answer_sdp}},
        )

    async def set_view(
        self,
        room: str,
        participant: str,
        publisher: str,
        source: str = "camera",
        max_height: int | None = None,
    ) -> None:
        """The largest height ``participant`` wants of ``publisher``'s ``source``."""
        await self._request(
            "PUT",
            f"/v1/rooms/{room}/participants/{participant}/view",
            {"publisher": publisher, "source": source, "max_height": max_height},
        )

    async def room_stats(self, room: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._request("GET", f"/v1/rooms/{room}")
        return data

    async def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = await self._request("GET", "/v1/stats")
        return data
