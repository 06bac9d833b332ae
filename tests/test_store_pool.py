"""The store's connection pool after an outage: the connections it pooled before are found closed
and replaced when taken, so no command fails for having been given one (every one of them
failed its next command once: redis-py skipped that check while its maintenance notifications
were on, which they were by default with RESP3 even on a server that does not know them)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from directory.storage.connection import STORE_UNAVAILABLE, connect
from tests.valkey_process import ValkeyProcess

pytestmark = pytest.mark.slow

#: Commands at once: as many pooled connections.
AT_ONCE = 30


@pytest.fixture
def owned_valkey(tmp_path: Path) -> Iterator[ValkeyProcess]:
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


async def test_connections_pooled_before_an_outage_are_not_used_after_it(
    owned_valkey: ValkeyProcess,
) -> None:
    redis = connect(owned_valkey.url)
    keys = [f"cb:{{t:pool}}:{n}" for n in range(AT_ONCE)]
    try:
        await asyncio.gather(*(redis.set(key, "1") for key in keys))
        owned_valkey.kill()
        with pytest.raises(STORE_UNAVAILABLE):
            await redis.ping()  # the client has seen the store go
        owned_valkey.start()
        results = await asyncio.gather(*(redis.get(key) for key in keys), return_exceptions=True)
        assert not [r for r in results if isinstance(r, Exception)], results
    finally:
        await redis.aclose()
