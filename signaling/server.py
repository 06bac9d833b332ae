"""``callbook serve``: the whole system on one machine, or one node against a shared store."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from aiohttp import web

from directory.embedded import EmbeddedValkey
from media.embedded import EmbeddedMedia
from signaling.accesslog import PrivateAccessLogger
from signaling.app import create_app
from signaling.config import Config
from signaling.logs import configure

log = logging.getLogger("callbook")

SHUTDOWN_GRACE_S = 10.0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve(config: Config) -> None:
    configure(logging.INFO)
    embedded: EmbeddedValkey | None = None
    if config.redis_url is None:
        embedded = EmbeddedValkey(config.data_dir)
        config = replace(config, redis_url=embedded.start())
        log.info("embedded Valkey running, data in %s", embedded.data_dir)
    else:
        log.info("using the store at REDIS_URL")
    sfu: EmbeddedMedia | None = None
    if config.media_url is None and not config.media_registry:
        sfu = EmbeddedMedia()
        url, secret = sfu.start()
        config = replace(config, media_url=url, media_secret=secret)
        log.info("embedded SFU running")
    try:
        web.run_app(
            create_app(config),
            loop=_new_loop(),
            host=config.host,
            port=config.port,
            access_log_class=PrivateAccessLogger,
            shutdown_timeout=SHUTDOWN_GRACE_S,
            print=lambda _msg: log.info(
                "Callbook listening on http://%s:%d", config.host, config.port
            ),
        )
    finally:
        if sfu is not None:
            sfu.stop()
        if embedded is not None:
            embedded.stop()
            log.info("embedded Valkey stopped")
