"""Media nodes as real processes (``python -m media.server``) registered in the test store."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from directory.storage import media_nodes
from directory.store import Store
from media.config import SECRET_ENV
from tests.ports import free_port

#: Shared by every media node of a deployment (the registry holds no secrets).
SECRET = secrets.token_urlsafe(24)


class MediaProcess:
    def __init__(self, node_id: str, redis_url: str, *flags: str) -> None:
        self.node_id = node_id
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "media.server", "--host", "127.0.0.1",
            "--port", str(self.port), "--redis-url", redis_url, "--node-id", node_id, *flags,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            env={**os.environ, SECRET_ENV: SECRET},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def media_processes(redis_url: str, *node_ids: str) -> Iterator[list[MediaProcess]]:
    started = [MediaProcess(node_id, redis_url) for node_id in node_ids]
    try:
        yield started
    finally:
        for node in started:
            node.stop()


async def registered(store: Store, node_ids: set[str], timeout_s: float = 60.0) -> None:
    """Wait until each of these nodes is in the registry and healthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = store.clock()
        healthy = {
            n.id for n in await media_nodes.listing(store.redis, store.clock()) if n.healthy(now)
        }
        if node_ids <= healthy:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"media nodes {sorted(node_ids)} did not register")


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


async def until_stored(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """``until`` for a check that reads the store."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)
