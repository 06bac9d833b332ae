"""The store's disk fills up under a running server: a real Valkey whose append-only file lives
on a tmpfs of a few megabytes, filled by a file beside it.

Valkey then refuses writes, and PING, with ``MISCONF``. Sign-ups answer 503 ``unavailable`` with
Retry-After (they were 500 ``internal``), ``/readyz`` 503 (it was 500), and no ERROR is logged.
Once the disk has room again everything works without a restart, and every sign-up that was
acknowledged is still there after Valkey is killed and started again. The same for a store out
of memory (``maxmemory`` with ``noeviction``: OOM), which still answers PING.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from directory import accounts
from directory.storage.connection import connect
from directory.store import Store
from signaling.config import Config
from signaling.sdk.client import new_device_key
from tests.conftest import TEST_DIRECTORY, TEST_SECRET, Server, start_server
from tests.valkey_process import ValkeyProcess

pytestmark = pytest.mark.slow

DISK_BYTES = 4 * 1024 * 1024
#: Sign-ups before the store must have run out of room (each appends ~1 KiB to the AOF).
MAX_SIGNUPS = 400
#: Valkey retries a failed AOF write about once a second; a bound, not an expectation.
RECOVERY_S = 30.0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.fixture
def valkey_on_small_disk(small_disk: Path) -> Iterator[ValkeyProcess]:
    server = ValkeyProcess(small_disk / "valkey")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def full_server(config: Config, valkey_on_small_disk: ValkeyProcess) -> AsyncIterator[Server]:
    test_server, server = await start_server(replace(config, redis_url=valkey_on_small_disk.url))
    yield server
    await server.close()
    await test_server.close()


def fill(disk: Path) -> Path:
    """Take every free byte of the disk with one file."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(chunk)
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as out:
        while True:
            out.write(b"\0")
    with pytest.raises(OSError) as full, (disk / "probe").open("wb", buffering=0) as probe:
        probe.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


async def _sign_up(http: aiohttp.ClientSession, url: str, handle: str) -> aiohttp.ClientResponse:
    _, public_key = new_device_key()
    body = {"handle": handle, "device": {"name": "phone", "public_key": public_key}}
    async with http.post(f"{url}/v1/accounts", json=body) as response:
        await response.read()
        return response


async def _ready(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/readyz") as response:
        return response.status


async def test_a_full_disk_is_503_and_loses_nothing(
    full_server: Server,
    small_disk: Path,
    valkey_on_small_disk: ValkeyProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = full_server.url
    acknowledged: list[str] = []
    async with aiohttp.ClientSession() as http:
        assert (await _ready(http, url)) == 200
        filler = fill(small_disk)
        # The writes in flight when the disk filled may still land; then Valkey refuses.
        refused = None
        for n in range(MAX_SIGNUPS):
            response = await _sign_up(http, url, f"user{n}")
            if response.status != 201:
                refused = response
                break
            acknowledged.append(f"user{n}")
        assert refused is not None, "the store never ran out of room"
        assert refused.status == 503
        problem = await refused.json(content_type=None)
        assert problem["code"] == "unavailable"
        assert refused.headers["Retry-After"] == "1"
        assert (await _ready(http, url)) == 503
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, errors

        # Room again: Valkey writes its buffered AOF on its own, and the server takes writes.
        filler.unlink()
        deadline = asyncio.get_running_loop().time() + RECOVERY_S
        while await _ready(http, url) != 200:
            assert asyncio.get_running_loop().time() < deadline, "still not ready"
            await asyncio.sleep(0.05)  # Valkey retries the AOF write from its cron
        response = await _sign_up(http, url, "after")
        assert response.status == 201
        acknowledged.append("after")

    valkey_on_small_disk.kill()
    valkey_on_small_disk.start()
    redis = connect(valkey_on_small_disk.url)
    try:
        store = Store(redis, TEST_DIRECTORY, secret=TEST_SECRET)
        missing = [h for h in acknowledged if await accounts.owner_of(store, h) is None]
    finally:
        await redis.aclose()
    assert not missing, f"acknowledged but lost: {missing}"


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[ValkeyProcess]:
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


async def test_a_store_out_of_memory_is_503_and_not_ready(
    config: Config, own_valkey: ValkeyProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """``maxmemory`` reached with ``noeviction``: Valkey refuses writes with OOM but still
    answers PING, so readiness must try a write to tell the truth."""
    test_server, server = await start_server(replace(config, redis_url=own_valkey.url))
    admin = connect(own_valkey.url)
    try:
        async with aiohttp.ClientSession() as http:
            assert (await _sign_up(http, server.url, "before")).status == 201
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")
            refused = await _sign_up(http, server.url, "during")
            assert refused.status == 503
            assert (await refused.json(content_type=None))["code"] == "unavailable"
            assert refused.headers["Retry-After"] == "1"
            assert (await _ready(http, server.url)) == 503
            await admin.config_set("maxmemory", "0")
            assert (await _ready(http, server.url)) == 200
            assert (await _sign_up(http, server.url, "after")).status == 201
    finally:
        await admin.aclose()
        await server.close()
        await test_server.close()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
