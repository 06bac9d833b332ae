"""The aiohttp application factory: routes, middleware, and the resources it owns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import metadata

import msgspec
from aiohttp import web

from directory import devices, disk, migrations, operators
from directory.errors import DirectoryError
from directory.operators import Operator
from directory.recovery import HashPool
from directory.storage import keys
from directory.storage.connection import STORE_UNAVAILABLE, connect
from directory.storage.tasks import cancel_until_done
from directory.store import Store
from signaling import pages
from signaling.appkeys import (
    CALLS,
    CONFIG,
    ENROLL_THROTTLE,
    GATE,
    METRICS,
    NODE,
    RECONNECTS,
    SIGNIN_THROTTLE,
    SOCKETS,
    STORE,
    STORE_OUTAGE,
    STREAMS,
    TOKENS,
    WEBHOOK_SINK,
    NodeInfo,
)
from signaling.calls.crossing import Crossing
from signaling.calls.media_pool import MediaPool
from signaling.calls.records import CallRecords
from signaling.calls.service import CallService
from signaling.cluster.drain import DRAIN
from signaling.cluster.drain import install as install_drain
from signaling.cluster.outage import StoreOutage
from signaling.cluster.routing import Router
from signaling.cluster.routing_local import LocalRouter
from signaling.cluster.routing_redis import RedisRouter
from signaling.cluster.solo import SoloWatch
from signaling.config import Config
from signaling.errors import SERVER, ApiError
from signaling.gate import Gate
from signaling.limits import Throttle
from signaling.metrics import CONTENT_TYPE, Metrics
from signaling.openapi import document
from signaling.protocol.bodies import Health
from signaling.push import PushAdapter, Retry
from signaling.push import build as build_push
from signaling.rest import endpoints
from signaling.rest.cluster_view import cluster_view_ctx
from signaling.rest.framework import register
from signaling.stun import stun_ctx
from signaling.tokens import Principal, TokenService
from signaling.webhooks.deliver import Deliverer, Settings
from signaling.webhooks.sink import StreamSink
from signaling.ws.endpoint import close_all, websocket
from signaling.ws.reconnects import ReconnectThrottle

log = logging.getLogger("callbook.signaling")

_KEY_REFRESH_S = 60.0
#: The store does not answer, or the socket to it failed (OSError), or a wait on it ran out.
_UNREACHABLE: tuple[type[Exception], ...] = (*STORE_UNAVAILABLE, OSError, TimeoutError)

_HTTP_CODES = {
    404: ("no_route", "No such endpoint."),
    405: ("method_not_allowed", "This endpoint does not accept that method."),
    413: ("payload_too_large", "The body is larger than this endpoint accepts."),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into problem+json; nothing else ever reaches the client."""
    extra: dict[str, str] | None = None
    try:
        return await handler(request)
    except ApiError as error:
        problem = error
    except DirectoryError as error:
        problem = ApiError.from_directory(error)
    except web.HTTPException as exc:
        if exc.status not in _HTTP_CODES:
            raise
        code, detail = _HTTP_CODES[exc.status]
        extra = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        problem = ApiError(code, detail)
    except STORE_UNAVAILABLE:
        request.app[STORE_OUTAGE].failed("a request")  # warns once per outage
        problem = ApiError("unavailable", "The store is unavailable; try again shortly.", 1)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, _route_of(request))
        problem = ApiError("internal", "Something went wrong on our side.")
    if 400 <= problem.problem_type.status < 500:
        request.app[METRICS].on_rejected(problem.problem_type.code)
    if problem.problem_type.code == "rate_limited":
        await request.app[GATE].hold(problem.retry_after_s or 1)
    return problem.response(extra)


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "-"


async def authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError("token_missing", "Send an access token: Authorization: Bearer <token>.")
    principal = await request.app[TOKENS].verify(token.strip())
    # Checked on every request so a revoked device is refused now, not at token expiry.
    if not await devices.is_active(request.app[STORE], principal.account_id, principal.device_id):
        raise ApiError("device_revoked", "This device was revoked or its account erased.")
    return principal


async def authenticate_operator(request: web.Request) -> Operator:
    """An operator token, or: 401 without a valid token, 403 ``not_operator`` for a device's."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError("token_missing", "Send an operator token: Authorization: Bearer <token>.")
    operator = await operators.authenticate(request.app[STORE], token)
    if operator is not None:
        return operator
    if operators.is_operator_token(token):
        raise ApiError("token_invalid", "This operator token is unknown or was revoked.")
    await request.app[TOKENS].verify(token)  # a device's token: valid, but not an operator's
    raise ApiError("not_operator", "A device's access token cannot use the operator API.")


async def _close_streams(app: web.Application) -> None:
    streams = app[STREAMS]
    for task in tuple(streams):
        task.cancel()


def _version() -> str:
    try:
        return metadata.version("callbook")
    except metadata.PackageNotFoundError:
        return "unknown"


async def healthz(_request: web.Request) -> web.Response:
    return _json(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    if request.app[DRAIN].active:
        return _json(Health(status="draining"), status=503)
    started = time.perf_counter()
    probe = keys.readiness_probe(request.app[NODE].id)
    try:
        # A write, not a PING: a store out of disk or memory still answers some commands.
        await asyncio.wait_for(
            request.app[STORE].redis.set(probe, "1", ex=keys.READINESS_PROBE_TTL_S), timeout=1.0
        )
    except _UNREACHABLE:
        request.app[STORE_OUTAGE].failed("the readiness check")
        return _json(Health(status="unavailable"), status=503)
    request.app[STORE_OUTAGE].ok()
    request.app[METRICS].store_ping.observe(time.perf_counter() - started)
    if not request.app[CALLS].router.listening:
        # Just back from an outage, before its subscription is: what other nodes send it
        # (a call ringing one of its devices) would be lost.
        return _json(Health(status="unavailable"), status=503)
    return _json(Health(status="ok"))


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; aggregates only (no handles, ids or addresses)."""
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"},
    )


def _json(body: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(body), content_type="application/json"
    )


async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(document())


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    if config.redis_url is None:
        raise RuntimeError("create_app needs a store URL; `callbook serve` provides one")
    if config.secret is None:
        raise RuntimeError("create_app needs the deployment secret; `callbook serve` provides one")
    redis = connect(config.redis_url, cluster=config.redis_cluster)
    hashing = HashPool(config.argon2_workers, config.argon2_queue)
    store = app[STORE] = Store(redis, config.directory, secret=config.secret, hashing=hashing)
    tasks = [disk.keep_rewriting(store, app[NODE].id, config.erase_rewrite_s)]
    try:
        await migrations.run(store)
    except _UNREACHABLE:
        tasks.append(_migrate_when_reachable(store))
    running = [asyncio.create_task(task) for task in tasks]
    yield
    await asyncio.gather(*(cancel_until_done(task) for task in running))
    await redis.aclose()
    hashing.close()


async def _migrate_when_reachable(store: Store) -> None:
    while True:
        await asyncio.sleep(1.0)
        with contextlib.suppress(*_UNREACHABLE):
            await migrations.run(store)
            return


async def _tokens_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    tokens = TokenService(
        app[STORE], ttl_s=config.token_ttl_s, rotate_after_s=config.key_rotation_s
    )
    app[TOKENS] = tokens
    with contextlib.suppress(*_UNREACHABLE):
        await tokens.refresh()
    task = asyncio.create_task(_refresh_keys(tokens, app[STORE_OUTAGE]))
    yield
    await cancel_until_done(task)  # it retries on store errors, which can swallow a cancellation


async def _refresh_keys(tokens: TokenService, outage: StoreOutage) -> None:
    while True:
        await asyncio.sleep(_KEY_REFRESH_S)
        try:
            await tokens.refresh()
        except _UNREACHABLE:
            outage.failed("the signing key refresh")  # the keys loaded stay in use


def _push(app: web.Application) -> PushAdapter:
    config = app[CONFIG]
    return build_push(
        app[STORE],
        webhook_url=config.push_webhook_url,
        webhook_secret=config.push_webhook_secret,
        apns=config.apns,
        fcm=config.fcm,
        ttl_s=config.ring_timeout_s,
        retry=Retry(base_s=config.push_backoff_s),
        metrics=app[METRICS],
    )


async def _calls_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    push = _push(app)
    media = None
    if config.media_registry:
        media = MediaPool(config.media_secret or "", store=app[STORE], outage=app[STORE_OUTAGE])
    elif config.media_url:
        media = MediaPool(config.media_secret or "", fixed_url=config.media_url)
    if media is not None:
        media.start()
    router: Router
    records = crossing = None
    if config.routing == "redis":
        router = RedisRouter(app[STORE], app[NODE].id, outage=app[STORE_OUTAGE])
        records = CallRecords(app[STORE], app[NODE].id, outage=app[STORE_OUTAGE])
        crossing = Crossing(app[STORE], app[NODE].id, config.ring_timeout_s)
    else:
        router = LocalRouter(node_id=app[NODE].id)
    app[CALLS] = CallService(
        app[STORE],
        push,
        ring_timeout_s=config.ring_timeout_s,
        resume_window_s=config.resume_window_s,
        resume_queue_max=config.resume_queue_max,
        metrics=app[METRICS],
        media=media,
        turn_configured=bool(config.turn_uris),
        events=app.get(WEBHOOK_SINK),
        router=router,
        records=records,
        crossing=crossing,
    )
    await app[CALLS].start()
    yield
    await app[CALLS].close()
    await push.close()
    if media is not None:
        await media.close()


async def _solo_ctx(app: web.Application) -> AsyncIterator[None]:
    """Routing locally: warn when another node shares the store (signaling/cluster/solo.py)."""
    if app[CONFIG].routing != "local":
        yield
        return
    watch = SoloWatch(app[STORE], app[NODE].id)
    watch.start()
    yield
    await watch.close()


async def _webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Lifecycle webhooks: this node's producer, and its deliverer (active while it holds the
    lease); nothing at all without CALLBOOK_WEBHOOK_URLS."""
    config = app[CONFIG]
    if not config.webhook_urls:
        yield
        return
    sink = StreamSink(
        app[STORE],
        retention_s=config.webhook_retention_s,
        metrics=app[METRICS],
        outage=app[STORE_OUTAGE],
    )
    settings = Settings(
        urls=config.webhook_urls,
        secret=(config.webhook_secret or "").encode(),
        max_attempts=config.webhook_max_attempts,
        backoff_s=config.webhook_backoff_s,
        backoff_max_s=config.webhook_backoff_max_s,
        timeout_s=config.webhook_timeout_s,
        lease_s=config.webhook_lease_s,
        retention_s=config.webhook_retention_s,
        poll_s=config.webhook_poll_s,
    )
    deliverer = Deliverer(
        app[STORE], settings, app[NODE].id, metrics=app[METRICS], outage=app[STORE_OUTAGE]
    )
    app[WEBHOOK_SINK] = sink
    sink.start()
    deliverer.start()
    yield
    await sink.close()  # after the call service closed: its last events are written first
    await deliverer.stop()


async def _anonymous_server(_request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp names itself and Python with their versions: nothing a client needs.
    response.headers["Server"] = SERVER


def create_app(config: Config) -> web.Application:
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[problem_middleware],
        handler_args={
            # Bodies are inflated by signaling/rest/bodies.py, within the limit; the transport
            # would inflate all of an unread body while discarding it (up to 10 s of a bomb).
            "auto_decompress": False,
            # Idle connections close (signaling/connections.py for the first request's head).
            "keepalive_timeout": config.idle_timeout_s,
        },
    )
    app[CONFIG] = config
    app[ENROLL_THROTTLE] = Throttle(config.enroll_rate_per_s, config.enroll_burst)
    app[SIGNIN_THROTTLE] = Throttle(config.signin_rate_per_s, config.signin_burst)
    app[GATE] = Gate(config)
    app[RECONNECTS] = ReconnectThrottle(config.reconnect_burst, config.reconnect_every_s)
    app[SOCKETS] = weakref.WeakSet()
    app[METRICS] = Metrics()
    app[NODE] = NodeInfo(
        id=config.node_id or f"node-{secrets.token_hex(4)}",
        version=_version(),
        started_at=time.time(),
    )
    app[STREAMS] = set()
    app[STORE_OUTAGE] = StoreOutage()
    install_drain(app)
    app.cleanup_ctx.extend(
        [_store_ctx, _tokens_ctx, _webhooks_ctx, _calls_ctx, _solo_ctx, cluster_view_ctx, stun_ctx]
    )
    app.on_shutdown.append(close_all)
    app.on_shutdown.append(_close_streams)
    register(app, endpoints(), authenticate, authenticate_operator)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/v1/ws", websocket)
    pages.install(app)
    app.on_response_prepare.append(_anonymous_server)
    return app
