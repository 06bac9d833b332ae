"""Reconnect storm: what one device reconnecting in a loop costs everybody else.

It starts ``callbook serve`` on a free loopback port with a fresh embedded Valkey, signs up one
"storming" account and ``--others`` other accounts, connects each other device's call WebSocket,
then measures the others' latency (a WebSocket ``ping`` -> ``pong``, and ``GET /v1/me``, one at a
time per device) for ``--duration`` seconds twice: quiet, then while the storming device runs
``--loops`` concurrent reconnect loops in a process of their own (open the call WebSocket with
its token, read the first frame, close, again; ``--rate`` paces them). It reports the storm's
attempts per second, the server's CPU (also per storm attempt) and the others' p50 / p95 latency
in both phases, and their ratio. ``--profile FILE`` runs the server under cProfile and prints
where its time went.

Run from the repository root::

    .venv/bin/python -m bench.reconnect            # table;  --json for one JSON line

Everything stays on 127.0.0.1; the server is stopped at the end, whatever happens.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import pstats
import statistics
import tempfile
import time
from collections import Counter
from typing import Any

import aiohttp

from bench.directory import (
    cpu_seconds,
    free_port,
    log,
    server_command,
    supervised_server,
    wait_ready,
)
from signaling.sdk.client import Client

#: Each other device pings this often, and requests GET /v1/me this often.
PING_EVERY_S = 0.1
REST_EVERY_S = 0.05


async def _ping_loop(url: str, token: str, stop: asyncio.Event, out: list[float]) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, protocols=("callbook.v1", f"bearer.{token}")) as ws,
    ):
        await ws.receive_json()  # welcome
        while not stop.is_set():
            started = time.perf_counter()
            await ws.send_str('{"type":"ping"}')
            while (await ws.receive_json())["type"] != "pong":
                pass
            out.append(time.perf_counter() - started)
            await asyncio.sleep(PING_EVERY_S)  # under the socket's message limit (20/s)


async def _rest_loop(base: str, token: str, stop: asyncio.Event, out: list[float]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            started = time.perf_counter()
            async with http.get(base + "/v1/me", headers=headers) as response:
                await response.read()
            out.append(time.perf_counter() - started)
            await asyncio.sleep(REST_EVERY_S)


async def _storm_loop(
    url: str, token: str, stop: asyncio.Event, outcomes: Counter[str], every_s: float
) -> None:
    async with aiohttp.ClientSession() as http:
        next_at = time.perf_counter()
        while not stop.is_set():
            if every_s:
                next_at += every_s
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            try:
                async with http.ws_connect(url, protocols=("callbook.v1", f"bearer.{token}")) as ws:
                    first = await ws.receive()
                    kind = "welcome"
                    if first.type is aiohttp.WSMsgType.TEXT:
                        kind = json.loads(first.data).get("code", json.loads(first.data)["type"])
                    else:
                        kind = f"close {ws.close_code}"
                    outcomes[kind] += 1
            except aiohttp.ClientError as exc:
                outcomes[type(exc).__name__] += 1


def _storm_process(
    url: str, token: str, loops: int, rate: float, duration: float, out: Any
) -> None:
    """The storming device, in a process of its own: its client work must not slow the
    measuring loop, only the server."""

    async def storm() -> Counter[str]:
        stop = asyncio.Event()
        outcomes: Counter[str] = Counter()
        every_s = loops / rate if rate else 0.0
        tasks = [
            asyncio.create_task(_storm_loop(url, token, stop, outcomes, every_s))
            for _ in range(loops)
        ]
        await asyncio.sleep(duration)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        return outcomes

    out.put(dict(asyncio.run(storm())))


def _summary(samples: list[float]) -> dict[str, float]:
    if len(samples) < 2:
        return {"n": len(samples), "p50_ms": float("nan"), "p95_ms": float("nan")}
    cuts = statistics.quantiles(samples, n=20)
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 2),
        "p95_ms": round(cuts[18] * 1000, 2),
    }


async def _phase(
    base: str, others: list[str], storm: str | None, args: argparse.Namespace, pid: int
) -> dict[str, Any]:
    duration = args.duration
    ws_url = base.replace("http", "ws", 1) + "/v1/ws"
    stop = asyncio.Event()
    pings: list[float] = []
    rests: list[float] = []
    outcomes: Counter[str] = Counter()
    tasks = [asyncio.create_task(_ping_loop(ws_url, t, stop, pings)) for t in others]
    tasks += [asyncio.create_task(_rest_loop(base, t, stop, rests)) for t in others]
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    stormer = None
    if storm is not None:
        stormer = spawn.Process(
            target=_storm_process,
            args=(ws_url, storm, args.loops, args.rate, duration, results),
            daemon=True,
        )
        stormer.start()
    cpu_before, wall_before = cpu_seconds(pid) or 0.0, time.perf_counter()
    await asyncio.sleep(duration)
    cpu_after, wall_after = cpu_seconds(pid) or 0.0, time.perf_counter()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    if stormer is not None:
        outcomes.update(await asyncio.to_thread(results.get, True, 30))
        stormer.join(10)
    elapsed = wall_after - wall_before
    attempts = sum(outcomes.values())
    return {
        "ping": _summary(pings),
        "me": _summary(rests),
        "server_cpu_pct": round(100 * (cpu_after - cpu_before) / elapsed, 1),
        "storm_per_s": round(attempts / elapsed, 1),
        "server_cpu_ms": round(1000 * (cpu_after - cpu_before), 1),
        "storm_outcomes": dict(outcomes),
    }


async def _run(args: argparse.Namespace, base: str, pid: int) -> dict[str, Any]:
    clients = [Client(base) for _ in range(args.others + 1)]
    try:
        for i, client in enumerate(clients):
            await client.signup(f"storm_{i:03d}")
        tokens = [await client.token() for client in clients]
        storm, others = tokens[0], tokens[1:]
        log(f"quiet phase, {args.duration:g} s")
        quiet = await _phase(base, others, None, args, pid)
        log(f"storm phase: {args.loops} reconnect loops of one device, {args.duration:g} s")
        stormy = await _phase(base, others, storm, args, pid)
    finally:
        for client in clients:
            await client.close()
    ratio = {
        kind: round(stormy[kind]["p50_ms"] / quiet[kind]["p50_ms"], 2) for kind in ("ping", "me")
    }
    extra_ms = stormy["server_cpu_ms"] - quiet["server_cpu_ms"]
    attempts = stormy["storm_per_s"] * args.duration
    per_attempt = round(extra_ms / attempts, 3) if attempts else None
    return {
        "quiet": quiet,
        "storm": stormy,
        "p50_ratio": ratio,
        "server_cpu_ms_per_attempt": per_attempt,
    }


def _print_profile(path: Path) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--others", type=int, default=8)
    parser.add_argument("--loops", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="storm attempts per second in all (0: unpaced)"
    )
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="cb-reconnect-") as tmp:
        data_dir = Path(tmp) / "data"
        settings = {"CALLBOOK_DRAIN_GRACE_S": "0", "CALLBOOK_TOKEN_TTL_S": "900"}
        command = server_command(port, data_dir, args.profile)
        with supervised_server(command, data_dir, settings) as process:
            asyncio.run(wait_ready(base, process))
            log("server ready; signing up")
            report = asyncio.run(_run(args, base, process.pid))
    report["command"] = " ".join(sys.argv)
    if args.json:
        print(json.dumps(report))
    else:
        for phase in ("quiet", "storm"):
            r = report[phase]
            print(
                f"{phase:6} ping p50 {r['ping']['p50_ms']} ms p95 {r['ping']['p95_ms']} ms | "
                f"GET /v1/me p50 {r['me']['p50_ms']} ms p95 {r['me']['p95_ms']} ms | "
                f"server CPU {r['server_cpu_pct']} % | storm {r['storm_per_s']}/s "
                f"{r['storm_outcomes']}"
            )
        print(f"p50 ratio storm/quiet: {report['p50_ratio']}")
        print(f"server CPU per storm attempt: {report['server_cpu_ms_per_attempt']} ms")
    if args.profile is not None:
        with contextlib.suppress(OSError):
            _print_profile(args.profile)


if __name__ == "__main__":
    main()
