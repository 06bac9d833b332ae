"""``callbook-media`` / ``callbook media``: the SFU's control API on uvloop."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket

import aioice.ice
from aiohttp import web

from media.config import MediaConfig, parse_args
from media.control import create_app
from media.drain import drain

log = logging.getLogger("callbook.media")

#: After the drain: how long requests in flight get before the control API closes.
SHUTDOWN_GRACE_S = 5.0


def allow_loopback_ice() -> None:
    """aioice skips loopback addresses; on a loopback-only machine nothing would connect."""
    original = aioice.ice.get_host_addresses
    if getattr(original, "callbook_loopback", False):
        return

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses: list[str] = original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    with_loopback.callbook_loopback = True  # type: ignore[attr-defined]
    with_loopback.__wrapped__ = original  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = with_loopback


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def _run(config: MediaConfig) -> None:
    """Serve until SIGTERM (drain first, ``media/drain.py``) or SIGINT (stop now)."""
    app = create_app(config)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S
    )
    await runner.setup()
    quiet_gc()
    try:
        site = (
            web.SockSite(runner, socket.socket(fileno=config.listen_fd))
            if config.listen_fd is not None
            else web.TCPSite(runner, config.host, config.port)
        )
        await site.start()
        log.info(
            "media node listening on http://%s:%d (%s)",
            config.host, config.port,
            f"{config.workers} worker processes" if config.workers else "rooms in this process",
        )  # fmt: skip
        stopping = await signalled()
        if stopping is signal.SIGTERM and config.drain_grace_s > 0:
            log.info("SIGTERM: draining (at most %g s)", config.drain_grace_s)
            draining = asyncio.create_task(drain(app, config.drain_grace_s))
            interrupted = asyncio.create_task(signalled())
            await asyncio.wait((draining, interrupted), return_when=asyncio.FIRST_COMPLETED)
            for task in (draining, interrupted):
                task.cancel()
    finally:
        log.info("shutting down")
        await runner.cleanup()


#: Allocations between two young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000


def quiet_gc() -> None:
    """Forwarding allocates a few short-lived objects per packet and subscriber, and at the
    default threshold CPython's cyclic collector ran hundreds of times a second, 14 % of the
    node's CPU at 1→8 (issue 15's profile). A larger young generation and the start-up heap
    frozen out of every collection keep it to a few runs a second; what forwarding allocates
    is freed by reference counting anyway."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


async def signalled() -> signal.Signals:
    """The next SIGTERM or SIGINT (a second one during the drain stops at once)."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()
    for kind in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(kind, _settle, received, kind)
    try:
        return await received
    finally:
        for kind in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(kind)


def _settle(future: asyncio.Future[signal.Signals], kind: signal.Signals) -> None:
    if not future.done():
        future.set_result(kind)


def serve(config: MediaConfig) -> None:
    if config.loopback_ice:
        allow_loopback_ice()
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(_run(config))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # aioice logs every connectivity check at INFO: noise, and CPU, with many peers.
    logging.getLogger("aioice").setLevel(logging.WARNING)
    serve(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
