"""One worker process of a media node (``python -m media.worker``, started by media/workers.py).

It is the in-process node (``create_app`` with ``workers = 0``) on a Unix socket: the rooms the
node places here, their peer connections and UDP sockets, and nothing else (no registry, no
drain: the node does both). It dies with the node, even after a SIGKILL of the node.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal

import msgspec
from aiohttp import web

from media.control import create_app
from media.server import SHUTDOWN_GRACE_S, allow_loopback_ice, new_loop, quiet_gc, signalled
from media.workers import WORKER_ENV, WorkerSpec

log = logging.getLogger("callbook.media.worker")

_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the node died before we asked to follow it
        raise SystemExit(1)


async def _run(spec: WorkerSpec) -> None:
    runner = web.AppRunner(
        create_app(spec.config),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=SHUTDOWN_GRACE_S,
    )
    await runner.setup()
    quiet_gc()  # the worker is where packets are forwarded
    try:
        await web.UnixSite(runner, spec.socket).start()
        log.info("media worker %d running", spec.index)
        await signalled()  # the node stops us once its own drain is over: stop now
    finally:
        await runner.cleanup()


def main() -> int:
    spec = msgspec.json.decode(os.environ[WORKER_ENV], type=WorkerSpec)
    _die_with(spec.parent)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    if spec.config.loopback_ice:
        allow_loopback_ice()
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(_run(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
