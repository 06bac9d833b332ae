"""What erasing a person costs the audit log: one pass to find their entries, one script that
rebuilds the stream with their ids replaced (``directory.audit.forget``).

It starts the embedded Valkey in a temporary directory, fills the audit log with N operator
actions of which one in a hundred targets the person, and times ``forget``: the whole call, and
the rebuild script alone (Valkey's own count of microseconds in EVALSHA/EVAL, during which the
store answers nobody else).

Run from the repository root::

    .venv/bin/python -m bench.audit_erase                # 10k, 100k entries
    .venv/bin/python -m bench.audit_erase 1000 50000     # other sizes
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

from directory import audit
from directory.storage import keys
from directory.storage.connection import connect
from directory.storage.embedded import EmbeddedValkey
from directory.store import DirectoryConfig, Store

PERSON = "0123456789abcdef0123456789abcdef"


async def _fill(store: Store, count: int) -> None:
    batch = 1000
    for start in range(0, count, batch):
        async with store.redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + batch, count)):
                target = PERSON if i % 100 == 0 else secrets.token_hex(16)
                fields = {"at": "1", "operator": "olga", "action": "suspend", "target": target,
                          "reason": "Investigating a reported harassment case."}  # fmt: skip
                pipe.xadd(keys.audit_log(), fields)
            await pipe.execute()


async def _script_usec(store: Store) -> int:
    stats = await store.redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in ("evalsha", "eval"))


async def measure(url: str, count: int) -> tuple[float, float]:
    store = Store(connect(url), DirectoryConfig())
    try:
        await store.redis.flushdb()
        await _fill(store, count)
        await store.redis.config_resetstat()
        started = time.perf_counter()
        changed = await audit.forget(store, PERSON, [], "person")
        total = time.perf_counter() - started
        assert changed == (count + 99) // 100
        return total, await _script_usec(store) / 1e6
    finally:
        await store.redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    sizes = parser.parse_args().sizes
    with tempfile.TemporaryDirectory(prefix="cb-bench-") as data_dir:
        valkey = EmbeddedValkey(Path(data_dir))
        valkey.start()
        try:
            print("| audit entries | forget (s) | of which the rebuild script (s) |")
            print("|---|---|---|")
            for size in sizes:
                total, script = asyncio.run(measure(valkey.url, size))
                print(f"| {size:,} | {total:.2f} | {script:.2f} |")
        finally:
            valkey.stop()


if __name__ == "__main__":
    main()
