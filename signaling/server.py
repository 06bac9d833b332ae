"""``callbook serve``: the whole system on one machine, or one node against a shared store."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from asyncio import FIRST_COMPLETED
from dataclasses import replace

from aiohttp import web

from directory import secret
from directory.storage.embedded import EmbeddedValkey
from media.embedded import EmbeddedMedia
from signaling.accesslog import PrivateAccessLogger
from signaling.app import create_app
from signaling.cluster.drain import drain
from signaling.config import Config, ConfigError
from signaling.connections import Runner
from signaling.logs import configure
from signaling.store_keeper import StoreKeeper

log = logging.getLogger("callbook")

SHUTDOWN_GRACE_S = 10.0
#: The embedded store could not be kept running (``signaling/store_keeper.py``).
EXIT_STORE_LOST = 1


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def _run(config: Config, embedded: EmbeddedValkey | None = None) -> int:
    """Serve until SIGTERM (drain first, ``signaling/cluster/drain.py``) or SIGINT (stop now), or
    until the embedded store is lost for good (``signaling/store_keeper.py``): the exit code."""
    app = create_app(config)
    runner = Runner(
        app,
        handle_signals=False,
        access_log_class=PrivateAccessLogger,
        shutdown_timeout=SHUTDOWN_GRACE_S,
    )
    keeper = None if embedded is None else asyncio.create_task(StoreKeeper(embedded).run())
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        # The port only: the log's filter would redact the address anyway (it cannot tell ours
        # from a client's); CALLBOOK_HOST says which it is.
        log.info("Callbook listening on port %d", config.port)
        signalled = asyncio.create_task(_signalled())
        await asyncio.wait([t for t in (signalled, keeper) if t], return_when=FIRST_COMPLETED)
        if not signalled.done():
            signalled.cancel()
            log.error("%s: stopping", _lost(keeper))
            return EXIT_STORE_LOST
        if signalled.result() is signal.SIGTERM:
            log.info("SIGTERM: draining (at most %g s)", config.drain_grace_s)
            draining = asyncio.create_task(drain(app))
            interrupted = asyncio.create_task(_signalled())
            await asyncio.wait((draining, interrupted), return_when=FIRST_COMPLETED)
            for task in (draining, interrupted):
                task.cancel()
        return 0
    finally:
        if keeper is not None:
            keeper.cancel()  # a store stopped with the server is not started again
        log.info("shutting down")
        await runner.cleanup()
        log.info("server closed")


def _lost(keeper: asyncio.Task[None] | None) -> BaseException | None:
    return None if keeper is None else keeper.exception()


async def _signalled() -> signal.Signals:
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


def _data_dir_secret(config: Config) -> secret.DeploymentSecret:
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return secret.embedded(config.data_dir)
    except secret.SecretError as exc:
        raise ConfigError(str(exc)) from exc


def serve(config: Config) -> None:
    configure(logging.INFO)
    embedded: EmbeddedValkey | None = None
    if config.redis_url is None:
        if config.secret is None:
            config = replace(config, secret=_data_dir_secret(config))
        embedded = EmbeddedValkey(config.data_dir)
        config = replace(config, redis_url=embedded.start())
        log.info("embedded Valkey running, data in %s", embedded.data_dir)
    else:
        log.info("using the store at REDIS_URL")
    sfu: EmbeddedMedia | None = None
    if config.media_url is None and not config.media_registry:
        # Through `callbook media`, so the SFU's records (aiortc's, aioice's) pass the same
        # redacting handler as this process's.
        sfu = EmbeddedMedia(launcher=(sys.executable, "-m", "signaling.cli", "media"))
        url, secret = sfu.start()
        config = replace(config, media_url=url, media_secret=secret)
        log.info("embedded SFU running")
    try:
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            code = runner.run(_run(config, embedded))
        # Closing the loop waits for leftover tasks and executor threads: said, so a log that
        # ends at "server closed" points there.
        log.info("stopped")
    finally:
        if sfu is not None:
            sfu.stop()
        if embedded is not None:
            embedded.stop()
            log.info("embedded Valkey stopped")
    if code:
        raise SystemExit(code)
