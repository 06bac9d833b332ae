"""Erase reaches the disk: after ``DELETE /v1/me`` and the rewrite it asks for, no file of the
embedded store's data directory holds the person's handle, display name, ids, device keys or
push token (issue 12, finding 2). And the store's persistence settings are checked at start-up.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from directory import disk
from directory.storage.connection import connect
from directory.storage.embedded import EmbeddedValkey
from directory.store import Store
from signaling.config import Config
from signaling.protocol.bodies import AccountUpdate, PushRegister
from tests.conftest import TEST_DIRECTORY, TEST_SECRET, Server, start_server, stop_server
from tests.redis_cluster import EmbeddedCluster
from tests.workload import add_device, missed_call

HANDLE = "bob_the_builder_77"
DISPLAY_NAME = "Bob Builder of Erasable Things"
PUSH_TOKEN = "apns-token-of-bob-0f9e8d7c6b5a"
#: What the test gives the rewrite: the check interval it configures (0.1 s) plus the
#: rewrite of a store this small, with room for a busy machine. docs/privacy.md states the
#: bound for the defaults.
BOUND_S = 60.0


@pytest.fixture
async def own_store(tmp_path: Path) -> AsyncIterator[EmbeddedValkey]:
    """An embedded store with a data directory of this test's, as ``callbook serve`` runs it
    (on the server CALLBOOK_TEST_STORE_BINARY names, like the session's store)."""
    binary = os.environ.get("CALLBOOK_TEST_STORE_BINARY")
    valkey = EmbeddedValkey(tmp_path / "data", Path(binary) if binary else None)
    await asyncio.to_thread(valkey.start)
    yield valkey
    await asyncio.to_thread(valkey.stop)


@pytest.fixture
async def own_server(own_store: EmbeddedValkey, config: Config) -> AsyncIterator[Server]:
    changes: dict[str, Any] = {"redis_url": own_store.url, "redis_cluster": False}
    test_server, running = await start_server(replace(config, erase_rewrite_s=0.1, **changes))
    yield running
    await stop_server(test_server, running)


def _files(data_dir: Path) -> list[Path]:
    return [path for path in data_dir.rglob("*") if path.is_file()]


def _holding(data_dir: Path, needles: list[str]) -> dict[str, list[str]]:
    """Which needles occur (as bytes, anywhere) in which files of the data directory."""
    found: dict[str, list[str]] = {}
    for path in _files(data_dir):
        if path.is_socket():
            continue
        content = path.read_bytes()
        for needle in needles:
            if needle.encode() in content:
                found.setdefault(needle, []).append(path.name)
    return found


async def _info(redis: Any) -> dict[str, Any]:
    info: dict[str, Any] = await redis.info("persistence")
    return info


async def _rewritten_after(redis: Any, rewrites_before: int) -> None:
    """Wait until the store has finished an append-only rewrite begun after the erasure."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        info = await _info(redis)
        busy = info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]
        if info["aof_rewrites"] > rewrites_before and not busy:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no rewrite of the append-only file within {BOUND_S:.0f} s of erase")


async def _old_files_gone(data_dir: Path) -> None:
    """The server deletes the files the rewrite replaced in a background thread: wait for it."""
    aof_dir = data_dir / "appendonlydir"
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        manifest = next(aof_dir.glob("*.manifest")).read_text()
        listed = {line.split()[1] for line in manifest.splitlines() if line.startswith("file ")}
        if {path.name for path in aof_dir.iterdir() if path.suffix != ".manifest"} <= listed:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the append-only files the rewrite replaced are still there")


async def test_erase_leaves_nothing_in_the_store_files(
    own_store: EmbeddedValkey, own_server: Server
) -> None:
    person = await own_server.signup(HANDLE, DISPLAY_NAME)
    alice = await own_server.signup("alice")
    await person.update(AccountUpdate(who_can_call="contacts"))
    tablet = await add_device(person)
    await person.add_contact("alice", nickname="Al")
    await alice.add_contact(HANDLE, nickname="Bobby the Builder")
    await missed_call(person, alice, "alice")
    await missed_call(alice, person, HANDLE)
    assert person.profile is not None
    await person.request(
        "PUT",
        f"/v1/devices/{person.profile.device_id}/push",
        None,
        PushRegister(provider="apns", token=PUSH_TOKEN),
    )
    devices = await person.devices()
    needles = [HANDLE, DISPLAY_NAME, "Bobby the Builder", PUSH_TOKEN, person.profile.account_id]
    needles += [d.id for d in devices] + [d.public_key for d in devices] + [tablet.public_key]
    redis = connect(own_store.url)
    try:
        # The person is on disk now: what the test looks for is there to be found.
        assert HANDLE in await _until_on_disk(own_store.data_dir, needles)
        rewrites_before = (await _info(redis))["aof_rewrites"]
        await person.erase()
        await _rewritten_after(redis, rewrites_before)
        await _old_files_gone(own_store.data_dir)
        assert _holding(own_store.data_dir, needles) == {}
        # Alice is still there: the rewrite kept the store, not just emptied it.
        assert (await alice.me()).handle == "alice"
    finally:
        await redis.aclose()


async def _until_on_disk(data_dir: Path, needles: list[str]) -> dict[str, list[str]]:
    """The append-only file is written by the second (appendfsync everysec): wait for it."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        found = _holding(data_dir, needles)
        if HANDLE in found:
            return found
        await asyncio.sleep(0.05)
    return {}


async def test_a_burst_of_erasures_costs_one_rewrite(
    own_store: EmbeddedValkey, config: Config
) -> None:
    # The node's own check waits an hour: this test runs the check itself.
    changes: dict[str, Any] = {"redis_url": own_store.url, "redis_cluster": False}
    test_server, running = await start_server(replace(config, erase_rewrite_s=3600, **changes))
    people = [await running.signup(f"erased_{n}") for n in range(5)]
    redis = connect(own_store.url)
    try:
        store = Store(redis, TEST_DIRECTORY, secret=TEST_SECRET)
        persistence = await disk.read_persistence(store)
        assert persistence == disk.Persistence(
            append_only=True, snapshots=False, keeps_old_files=False
        )
        await asyncio.gather(*(person.erase() for person in people))
        counted, _ = await disk.pending(store)
        assert counted == 5
        before = (await _info(redis))["aof_rewrites"]
        assert await disk.rewrite_if_due(store, "test-node", persistence)
        assert await disk.pending(store) == (5, 5)
        assert not await disk.rewrite_if_due(store, "test-node", persistence)
        assert (await _info(redis))["aof_rewrites"] == before + 1
    finally:
        await redis.aclose()
        await stop_server(test_server, running)


@pytest.mark.parametrize(
    ("settings", "warned"),
    [
        ({"appendonly": "yes", "save": "", "aof-disable-auto-gc": "no"}, False),
        ({"appendonly": "no", "save": "3600 1", "aof-disable-auto-gc": "no"}, False),
        ({"appendonly": "no", "save": ""}, False),
        ({"appendonly": "yes", "save": "", "aof-disable-auto-gc": "yes"}, True),
    ],
)
def test_unsafe_persistence_settings_are_named(settings: dict[str, str], warned: bool) -> None:
    assert bool(disk.warnings(disk.assess(settings))) is warned


def test_a_store_that_refuses_config_gets_a_warning_not_a_failure() -> None:
    assert disk.warnings(None)
    assert "docs/deploy.md" in disk.warnings(None)[0]


@pytest.mark.parametrize(
    ("command", "warning"),
    [("CONFIG", "CONFIG GET is refused"), ("BGREWRITEAOF", "refuses to rewrite its files")],
)
async def test_a_store_that_forbids_the_commands_gets_one_warning_and_serves(
    tmp_path: Path, config: Config, caplog: pytest.LogCaptureFixture, command: str, warning: str
) -> None:
    """A managed Redis often renames such commands away: the node warns once and serves."""
    valkey = _Forbidding(tmp_path / "managed", command)
    await asyncio.to_thread(valkey.start)
    try:
        changes: dict[str, Any] = {"redis_url": valkey.url, "redis_cluster": False}
        test_server, running = await start_server(replace(config, erase_rewrite_s=0.1, **changes))
        try:
            person = await running.signup("managed_person")
            await person.erase()
            await _logged(caplog, warning)
            assert caplog.text.count(warning) == 1
            assert (await (await running.signup("still_served")).me()).handle == "still_served"
        finally:
            await stop_server(test_server, running)
    finally:
        await asyncio.to_thread(valkey.stop)


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        if text in caplog.text:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no warning {text!r} within {BOUND_S:.0f} s")


class _Forbidding(EmbeddedValkey):
    """The embedded store with one command renamed away, as managed Redis services do."""

    def __init__(self, data_dir: Path, command: str) -> None:
        super().__init__(data_dir)
        self.command = command

    def _arguments(self) -> list[str]:
        return [*super()._arguments(), "--rename-command", self.command, ""]


async def test_on_a_redis_cluster_every_primary_rewrites(redis_cluster: EmbeddedCluster) -> None:
    redis = connect(redis_cluster.url, cluster=True)
    try:
        store = Store(redis, TEST_DIRECTORY, secret=TEST_SECRET)
        await redis.initialize()
        primaries = redis.get_primaries()
        assert len(primaries) == 3

        async def rewrites() -> list[int]:
            infos = [await redis.info("persistence", target_nodes=node) for node in primaries]
            return [info["aof_rewrites"] for info in infos]

        before = await rewrites()
        await disk.note_erasure(store)
        # The test cluster keeps no files; a deployment's primaries would (docs/deploy.md).
        writes = disk.Persistence(append_only=True, snapshots=False, keeps_old_files=False)
        assert await disk.rewrite_if_due(store, "test-node", writes)
        assert await rewrites() == [n + 1 for n in before]
    finally:
        await redis.aclose()


class _Snapshotting(EmbeddedValkey):
    """A store that keeps RDB snapshots instead of an append-only file."""

    def _arguments(self) -> list[str]:
        return [*super()._arguments(), "--appendonly", "no", "--save", "3600 1"]


async def test_with_snapshots_erase_leaves_the_snapshot_too(tmp_path: Path, config: Config) -> None:
    valkey = _Snapshotting(tmp_path / "snapshots")
    await asyncio.to_thread(valkey.start)
    redis = connect(valkey.url)
    try:
        changes: dict[str, Any] = {"redis_url": valkey.url, "redis_cluster": False}
        test_server, running = await start_server(replace(config, erase_rewrite_s=0.1, **changes))
        try:
            person = await running.signup(HANDLE, DISPLAY_NAME)
            await redis.bgsave()  # the snapshot the store's own schedule would take
            saves = await _snapshot_done(redis, 0)
            assert HANDLE in _holding(valkey.data_dir, [HANDLE])
            await person.erase()
            await _snapshot_done(redis, saves)
            assert _holding(valkey.data_dir, [HANDLE, DISPLAY_NAME]) == {}
        finally:
            await stop_server(test_server, running)
    finally:
        await redis.aclose()
        await asyncio.to_thread(valkey.stop)


async def _snapshot_done(redis: Any, saves_before: int) -> int:
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        info = await _info(redis)
        if info["rdb_saves"] > saves_before and not info["rdb_bgsave_in_progress"]:
            return int(info["rdb_saves"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no snapshot within {BOUND_S:.0f} s")
