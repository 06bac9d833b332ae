"""A real Callbook server for property tests: hypothesis drives plain functions, so the server
runs on an event loop of its own in a thread, and each example runs its requests there.

It is the server ``callbook serve`` runs (the same app factory, runner and access log), on the
session's Valkey and SFU; one per test module, since hypothesis runs many examples per test.
Also the corpus convention shared by the fuzz tests: ``tests/data/fuzz/<target>/``, one input
per file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings

from media.embedded import EmbeddedMedia
from signaling.accesslog import PrivateAccessLogger
from signaling.app import create_app
from signaling.config import Config
from signaling.connections import Runner
from tests.conftest import suite_config

T = TypeVar("T")

EXAMPLES = int(os.environ.get("CALLBOOK_FUZZ_EXAMPLES", "100"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

CORPUS_ROOT = Path(__file__).parent / "data" / "fuzz"


def corpus(target: str) -> list[Any]:
    """The corpus files of one target, as pytest params named by file."""
    files = sorted(p for p in (CORPUS_ROOT / target).iterdir() if p.is_file())
    assert files, f"no corpus in tests/data/fuzz/{target}/"
    return [pytest.param(p, id=p.name) for p in files]


class ThreadServer:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: Runner | None = None
        self.url = ""
        self.app: web.Application | None = None

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self.app = create_app(self._config)
        self._runner = Runner(self.app, access_log_class=PrivateAccessLogger)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run ``coroutine`` on the server's loop (clients included) and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def stop(self) -> None:
        if self._runner is not None:
            self.run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def serving(redis_url: str, sfu: EmbeddedMedia) -> Iterator[ThreadServer]:
    """A module fixture's body: the suite's configuration, on its own thread, until torn down."""
    server = ThreadServer(suite_config(redis_url, sfu))
    server.start()
    yield server
    server.stop()


def errors_in(records: list[logging.LogRecord]) -> list[str]:
    """ERROR lines, and any line with the client's address: a fuzz input must cause neither."""
    return [
        r.getMessage()
        for r in records
        if r.levelno >= logging.ERROR or "127.0.0.1" in r.getMessage()
    ]
