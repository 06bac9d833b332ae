"""The store's append-only file (``appendfsync everysec``, as ``callbook serve``'s embedded Valkey
runs it): every write acknowledged before a ``kill -9`` is there after the restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from directory import audit
from directory.storage.connection import connect
from directory.storage.embedded import EmbeddedValkey
from directory.store import Store
from tests.conftest import TEST_DIRECTORY
from tests.valkey_process import ValkeyProcess

pytestmark = pytest.mark.slow

WRITES = 10_000
#: Writes in flight at once: acknowledged one by one, as clients' requests are.
CONCURRENCY = 50


@pytest.fixture
def owned_valkey(tmp_path: Path) -> Iterator[ValkeyProcess]:
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


async def _append_all(store: Store) -> set[str]:
    """WRITES audit-log entries through the directory layer; the ids Valkey acknowledged."""
    acknowledged: set[str] = set()

    async def writer(first: int) -> None:
        for n in range(first, WRITES, CONCURRENCY):
            acknowledged.add(await audit.append(store, "op", "suspend", f"t{n}", f"write {n}"))

    await asyncio.gather(*(writer(i) for i in range(CONCURRENCY)))
    return acknowledged


async def _read_all(store: Store) -> list[audit.AuditEntry]:
    entries: list[audit.AuditEntry] = []
    after: str | None = None
    while batch := await audit.read(store, after, 1000):
        entries += batch
        after = batch[-1].id
    return entries


async def test_acknowledged_writes_survive_kill_9(owned_valkey: ValkeyProcess) -> None:
    redis = connect(owned_valkey.url)
    try:
        acknowledged = await _append_all(Store(redis, TEST_DIRECTORY))
    finally:
        await redis.aclose()
    assert len(acknowledged) == WRITES
    owned_valkey.kill()  # at once: no shutdown, no last fsync
    owned_valkey.start()
    redis = connect(owned_valkey.url)
    try:
        entries = await _read_all(Store(redis, TEST_DIRECTORY))
    finally:
        await redis.aclose()
    assert {entry.id for entry in entries} == acknowledged
    assert sorted(entry.target for entry in entries) == sorted(f"t{n}" for n in range(WRITES))


def test_the_embedded_store_runs_with_an_everysec_append_only_file(tmp_path: Path) -> None:
    """What ``callbook serve`` starts without REDIS_URL is the configuration tested above."""
    server = EmbeddedValkey(tmp_path / "data")
    url = server.start()
    try:
        with sync_redis.Redis.from_url(url, decode_responses=True) as client:
            config = client.config_get("append*")
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "everysec"
    finally:
        server.stop()
