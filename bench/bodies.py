"""Compression bombs against a signed-in user's latency (issue 11, finding 2).

It starts ``callbook serve`` on a free loopback port with a fresh embedded Valkey, signs up one
account, and for a fixed time measures ``GET /v1/me`` one request after another (the signed-in
user), first alone, then while a few attackers send, each on a new connection, a small deflate
body that inflates to a large one and then turns into garbage. A server that inflates what it
discards (up to 10 s of lingering per request) spends its event loop on the bombs; one that
inflates at most the body limit does not. It prints the user's latency in both phases.

Run from the repository root (PYTHONPATH picks the code under test)::

    PYTHONPATH=. .venv/bin/python -m bench.bodies            # table
    PYTHONPATH=. .venv/bin/python -m bench.bodies --json     # one JSON line

Everything stays on 127.0.0.1; the server is stopped with SIGTERM at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator

import aiohttp

from signaling.sdk.client import Client

STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(port: int) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="cb-bodies-") as data:
        env = {**os.environ, "CALLBOOK_PORT": str(port), "CALLBOOK_DATA_DIR": data}
        process = subprocess.Popen(
            [sys.executable, "-m", "signaling.cli", "serve"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_ready(url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready")
            await asyncio.sleep(0.1)


def bomb(inflated_mb: int) -> bytes:
    packer = zlib.compressobj(9)
    body = packer.compress(b"[" * (inflated_mb * 1024 * 1024))
    return body + packer.flush(zlib.Z_SYNC_FLUSH) + b"\xff" * 64


async def user(url: str, token: str, until: float) -> list[float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < until:
            started = time.perf_counter()
            async with http.get(f"{url}/v1/me", headers=headers) as response:
                await response.read()
                assert response.status == 200
            latencies.append(time.perf_counter() - started)
    return latencies


async def attacker(url: str, body: bytes, until: float) -> int:
    sent = 0
    headers = {"Content-Type": "application/json", "Content-Encoding": "deflate"}
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        while time.monotonic() < until:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.post(f"{url}/v1/contacts", data=body, headers=headers) as r:
                    await r.read()
            sent += 1
    return sent


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(len(ordered) * 0.95)] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def run(seconds: float, attackers: int, inflated_mb: int) -> dict[str, object]:
    with serve(free_port()) as url:
        await wait_ready(url)
        client = Client(url)
        try:
            await client.signup("benchuser")
            token = await client.token()
        finally:
            await client.close()
        alone = await user(url, token, time.monotonic() + seconds)
        body = bomb(inflated_mb)
        until = time.monotonic() + seconds
        results = await asyncio.gather(
            user(url, token, until), *(attacker(url, body, until) for _ in range(attackers))
        )
        under_attack, bombs = results[0], results[1:]
    return {
        "alone": summary(alone),
        "under_bombs": summary(under_attack),  # type: ignore[arg-type]
        "bombs_sent": sum(bombs),  # type: ignore[arg-type]
        "bomb_bytes": len(body),
        "bomb_inflated_mb": inflated_mb,
        "attackers": attackers,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--inflated-mb", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(run(args.seconds, args.attackers, args.inflated_mb))
    if args.json:
        print(json.dumps(report))
        return
    print(f"{args.attackers} attackers, bombs of {report['bomb_bytes']:,} bytes inflating to "
          f"{args.inflated_mb} MiB; {report['bombs_sent']} sent in {args.seconds:g} s")  # fmt: skip
    print("GET /v1/me       requests   p50 ms   p95 ms   max ms")
    for phase in ("alone", "under_bombs"):
        row = report[phase]
        assert isinstance(row, dict)
        print(f"{phase:<16} {row['requests']:>8} {row['p50_ms']:>8} {row['p95_ms']:>8} "
              f"{row['max_ms']:>8}")  # fmt: skip


if __name__ == "__main__":
    main()
