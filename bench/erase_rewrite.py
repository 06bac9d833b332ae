"""How long the rewrite after an erasure takes: the second term of erase's bound on disk.

Starts an embedded Valkey (as ``callbook serve`` does) in a temporary directory, fills it with
``--accounts`` account-shaped entries (an account hash, a devices hash, a contacts hash and a
handle key each, about 1 KB in all), counts one erasure, and times ``directory.disk``'s rewrite
from the request to the server's report that it has finished, for each of ``--rounds`` rounds.

    .venv/bin/python -m bench.erase_rewrite --accounts 200000
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from directory import disk
from directory.secret import DeploymentSecret
from directory.storage import keys
from directory.storage.connection import connect
from directory.storage.embedded import EmbeddedValkey
from directory.store import Store

_BATCH = 1000


async def _fill(store: Store, accounts: int) -> None:
    for start in range(0, accounts, _BATCH):
        async with store.redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(start + _BATCH, accounts)):
                account = secrets.token_hex(16)
                handle = f"person_{n}"
                pipe.hset(keys.account(account), mapping={
                    "handle": handle, "display_name": f"Person Number {n}",
                    "created_day": "2026-12-02", "who_can_call": "everyone",
                    "recovery_hash": "$argon2id$v=19$m=19456,t=2,p=1$" + secrets.token_hex(32),
                })  # fmt: skip
                pipe.hset(keys.devices(account), secrets.token_hex(16), secrets.token_hex(160))
                pipe.hset(keys.contacts(account), secrets.token_hex(16), secrets.token_hex(40))
                pipe.set(keys.handle_key(store.handle_digest(handle)), account)
            await pipe.execute()


async def _run(accounts: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cb-rewrite-") as tmp:
        valkey = EmbeddedValkey(Path(tmp) / "data")
        valkey.start()
        redis = connect(valkey.url)
        store = Store(redis, secret=DeploymentSecret.from_text(secrets.token_hex(32), "bench"))
        try:
            began = time.perf_counter()
            await _fill(store, accounts)
            filled_s = time.perf_counter() - began
            persistence = await disk.read_persistence(store)
            assert persistence is not None
            info = await redis.info("memory")
            durations = []
            for _ in range(rounds):
                await disk.note_erasure(store)
                began = time.perf_counter()
                assert await disk.rewrite_if_due(store, "bench", persistence)
                durations.append(time.perf_counter() - began)
            files = sum(p.stat().st_size for p in (Path(tmp) / "data" / "appendonlydir").iterdir())
            print(f"accounts {accounts:,}, filled in {filled_s:.1f} s")
            print(
                f"used memory {info['used_memory'] / 2**20:.0f} MiB, files {files / 2**20:.0f} MiB"
            )
            print(
                f"rewrite: median {statistics.median(durations):.2f} s, "
                f"max {max(durations):.2f} s over {rounds} rounds"
            )
        finally:
            await redis.aclose()
            valkey.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(_run(args.accounts, args.rounds))


if __name__ == "__main__":
    main()
