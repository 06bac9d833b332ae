"""What an idle connected device costs the server in memory of its own (beyond aiohttp's).

Counted by tracemalloc at the lines of the server's own modules that allocated it, for devices
that connected, heard ``welcome`` and sent nothing: deterministic, unlike RSS. The RSS figure
per device is bench/signaling.py's (docs/benchmarks.md, "Idle memory").
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from contextlib import AsyncExitStack
from pathlib import Path

from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.conftest import Server
from tests.test_calls import _device

#: Bytes allocated at the server's own lines per idle connected device: 6,280 before its queues,
#: the offered token and the upgrade's extra headers were let go, 4,430 after. An empty deque
#: alone is 760 bytes: a queue made per connection "in case" shows here.
OWN_BYTES_PER_IDLE_DEVICE = 4700
DEVICES = 6

_SIGNALING = Path(__file__).resolve().parents[1] / "signaling"


def _servers_own(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    """Allocations at the server's lines: the client side of the test runs in this process
    too (the SDK, signaling/sdk/, is not the server)."""
    return snapshot.filter_traces(
        [
            tracemalloc.Filter(True, str(_SIGNALING / "*")),
            tracemalloc.Filter(False, str(_SIGNALING / "sdk" / "*")),
        ]
    )


async def test_an_idle_device_costs_the_server_little_of_its_own(server: Server) -> None:
    owner = await server.signup("alice")
    devices: list[Client] = [owner]
    for _ in range(DEVICES):
        devices.append(await _device(server, owner))
    for client in devices:
        await client.token()  # signed in (and its HTTP connection open) before counting
    async with AsyncExitStack() as stack:
        first = Line(devices[0])
        await first.open()
        stack.push_async_callback(first.close)
        tracemalloc.start(1)
        try:
            gc.collect()
            before = _servers_own(tracemalloc.take_snapshot())
            for client in devices[1:]:
                line = Line(client)
                await line.open()
                stack.push_async_callback(line.close)
            await asyncio.sleep(0)  # the welcome's writer has finished
            gc.collect()
            after = _servers_own(tracemalloc.take_snapshot())
        finally:
            tracemalloc.stop()
    grown = after.compare_to(before, "lineno")
    per_device = sum(stat.size_diff for stat in grown) / DEVICES
    top = "; ".join(str(stat) for stat in grown[:16])
    assert per_device <= OWN_BYTES_PER_IDLE_DEVICE, top
