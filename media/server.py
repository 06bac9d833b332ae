"""``callbook-media`` / ``callbook media``: the SFU's control API on uvloop."""

from __future__ import annotations

import asyncio
import logging

import aioice.ice
from aiohttp import web

from media.config import MediaConfig, parse_args
from media.control import create_app

log = logging.getLogger("callbook.media")


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
    aioice.ice.get_host_addresses = with_loopback


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve(config: MediaConfig) -> None:
    if config.loopback_ice:
        allow_loopback_ice()
    web.run_app(
        create_app(config),
        loop=_new_loop(),
        host=config.host,
        port=config.port,
        access_log=None,
        shutdown_timeout=5.0,
        print=lambda _msg: log.info(
            "media node listening on http://%s:%d", config.host, config.port
        ),
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # aioice logs every connectivity check at INFO: noise, and CPU, with many peers.
    logging.getLogger("aioice").setLevel(logging.WARNING)
    serve(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
