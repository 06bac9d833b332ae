"""`callbook serve` on its embedded store, as real processes: kill -9 loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from directory.storage.embedded import EmbeddedValkey
from media.embedded import EmbeddedMediaError
from signaling.cli import describe
from signaling.sdk.cli_failures import EXIT_FAILED
from signaling.sdk.client import Client
from tests.ports import free_port

pytestmark = pytest.mark.slow


async def _start(data_dir: Path, port: int, log: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling.cli", "serve",
        "--port", str(port), "--data-dir", str(data_dir),
        stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/readyz"
    async with aiohttp.ClientSession() as http:
        # Generous: a loaded machine starts Valkey, the SFU and the server one after another.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise AssertionError(f"server exited: {_read(log)}")
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    process.kill()
    raise AssertionError(f"server never became ready: {_read(log)}")


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


def _valkey_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "valkey.pid").read_text())
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, ValueError):
        return None
    return None if state == "Z" else pid


async def test_data_survives_kill_9_of_the_server(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    port = free_port()
    server = await _start(data_dir, port, log)
    url = f"http://127.0.0.1:{port}"
    async with Client(url) as alice:
        _, profile = await alice.signup("alice", "Alice")
    async with Client(url) as bob:
        await bob.signup("bob")
        await bob.add_contact("alice", nickname="A")
        bob_profile = bob.profile
    assert bob_profile is not None
    assert (data_dir / "appendonlydir").is_dir()

    server.send_signal(signal.SIGKILL)
    await server.wait()
    # The store dies with its owner (parent-death signal), flushing its append-only file.
    for _ in range(100):
        if _valkey_pid(data_dir) is None:
            break
        await asyncio.sleep(0.05)
    assert _valkey_pid(data_dir) is None

    server = await _start(data_dir, port, log)
    try:
        async with Client(url, profile) as alice_again:
            assert (await alice_again.me()).display_name == "Alice"
        async with Client(url, bob_profile) as bob_again:
            [contact] = await bob_again.contacts()
            assert (contact.handle, contact.nickname) == ("alice", "A")
    finally:
        server.send_signal(signal.SIGTERM)
        await server.wait()
    assert server.returncode == 0, _read(log)
    assert _valkey_pid(data_dir) is None


async def test_a_leftover_store_does_not_block_the_next_start(tmp_path: Path) -> None:
    """A Valkey that outlived its server (started by hand here) is stopped and its data reused."""
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    orphan = EmbeddedValkey(data_dir)
    orphan.start()
    orphan_pid = _valkey_pid(data_dir)
    assert orphan_pid is not None
    port = free_port()
    server = await _start(data_dir, port, log)
    try:
        assert _valkey_pid(data_dir) not in (None, orphan_pid)
    finally:
        server.send_signal(signal.SIGTERM)
        await server.wait()
        orphan.stop()


def test_an_sfu_that_does_not_start_is_an_operational_failure_not_a_bug() -> None:
    """``callbook serve`` on a machine too loaded for its SFU to come up says so and exits 1."""
    failure = describe(EmbeddedMediaError("the SFU did not answer within 90 s"))
    assert failure.exit_code == EXIT_FAILED
    assert failure.line == "The embedded SFU did not start: the SFU did not answer within 90 s"
