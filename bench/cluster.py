"""Cluster benchmark: 1:1 call set-ups on one and on two signaling nodes sharing one Valkey.

It starts its own Valkey (loopback TCP, append-only file fsynced every second, as in production)
and ``callbook serve`` nodes with ``CALLBOOK_ROUTING=redis`` and node ids of their own, creates
accounts through the REST API, connects one WebSocket per device from load-generator processes of
its own, and measures, for each layout:

* ``1-node``: every device on node A;
* ``2-node-cross``: callers on node A, callees on node B (every message crosses the store);
* ``2-node-same``: half the pairs on A, half on B, each call inside one node;

an idle window (devices connected, no calls: the presence and heartbeat commands), an unpaced
window at ``--pairs`` calls in flight (call set-ups per node CPU-second), and a window paced at
``--rate`` set-ups/s (ring latency without queueing). A set-up is invite -> ringing / incoming ->
accept -> accepted (both) -> SDP offer/answer -> two ICE candidates each way -> hangup -> ended
(both). Ring latency is invite sent -> ``incoming`` received by the callee.

Store load comes from ``INFO commandstats``: a window's commands, less the idle rate, divided by
the set- ups. CPU comes from ``/proc/<pid>/stat`` for each node, Valkey, the bots and the rest of
the machine ("others": other people's work on a shared machine; a window where it passes 10 % of
a core is flagged noisy). Finally the store's ceiling on this machine: ``redis-benchmark`` when
installed, and a redis-py pipeline loop.

    .venv/bin/python -m bench.cluster              # table;  --json for one JSON line
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder would shadow the ``signaling`` package; put the repository first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bench import cluster_store as st
from bench.cluster_load import Device, LoadGenerators, PairSpec
from bench.cluster_report import report
from bench.directory import (
    UNTHROTTLED_ADMISSION,
    cpu_model,
    free_port,
    log,
    server_command,
    supervised_server,
)
from bench.directory import wait_ready as wait_node_ready
from bench.signaling import (
    BUSY_MACHINE_PERCENT,
    LOOKUP_BURST,
    LOOKUPS_PER_MINUTE,
    TOKEN_TTL_S,
    CpuMeter,
    Member,
    RunStats,
    make_accounts,
    percentile_ms,
    raise_open_files,
    source_version,
    wait_quiet,
)
from signaling.sdk.client import ClientError

REPO = Path(__file__).resolve().parents[1]
MODES = ("1-node", "2-node-cross", "2-node-same")
NODE_IDS = ("bench-a", "bench-b")
RESUME_WINDOW_S = 1
#: The deployment secret the bench's nodes share (a real deployment keeps its own secret).
BENCH_SECRET = "callbook-bench-" + "b3" * 16


@dataclass
class Node:
    node_id: str
    url: str
    process: subprocess.Popen[bytes]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/v1/ws"


@contextlib.contextmanager
def running_node(tmp: Path, node_id: str, redis_url: str, media_port: int) -> Iterator[Node]:
    """A signaling node on the shared store. Its media URL points at a closed port: the set-ups
    are peer to peer, the node never calls it, and no SFU process competes for the cores."""
    home = tmp / node_id
    data_dir = home / "data"
    data_dir.mkdir(parents=True, mode=0o700)
    port = free_port()
    settings = {
        "REDIS_URL": redis_url,
        "CALLBOOK_SECRET": BENCH_SECRET,
        "CALLBOOK_ROUTING": "redis",
        "CALLBOOK_NODE_ID": node_id,
        "CALLBOOK_MEDIA_URL": f"http://127.0.0.1:{media_port}",
        "CALLBOOK_MEDIA_SECRET": "bench-unused",
        "CALLBOOK_LOOKUP_BURST": str(LOOKUP_BURST),
        "CALLBOOK_LOOKUPS_PER_MINUTE": str(LOOKUPS_PER_MINUTE),
        "CALLBOOK_TOKEN_TTL_S": str(TOKEN_TTL_S),
        **UNTHROTTLED_ADMISSION,
        # Bots that left are forgotten a second later, so the next layout's idle window
        # counts only the devices connected then (a node refreshes the resumable ones too).
        "CALLBOOK_RESUME_WINDOW_S": str(RESUME_WINDOW_S),
    }
    # ``-m`` from the repository root: this checkout's code, not whatever ``callbook`` the
    # environment installed (an editable install may point at another worktree).
    serve = server_command(port, data_dir, None)
    command = [sys.executable, "-m", "signaling.cli", *serve[serve.index("serve") :]]
    with supervised_server(command, data_dir, settings, cwd=REPO) as process:
        yield Node(node_id, f"http://127.0.0.1:{port}", process)


# --- layouts -----------------------------------------------------------------------------------


def layout(mode: str, accounts: list[Member], nodes: list[Node], args: Any) -> list[PairSpec]:
    """Pair i takes the next callers-per-pair accounts as callers and callees-per-pair as
    callees; the mode says on which node each side connects."""
    per_pair = args.callers_per_pair + args.callees_per_pair
    specs = []
    for i in range(args.pairs):
        group = accounts[i * per_pair : (i + 1) * per_pair]
        callers, callees = group[: args.callers_per_pair], group[args.callers_per_pair :]
        if mode == "1-node":
            caller_node = callee_node = nodes[0]
        elif mode == "2-node-cross":
            caller_node, callee_node = nodes[0], nodes[1]
        else:
            caller_node = callee_node = nodes[i % 2]
        specs.append(
            PairSpec(
                index=i,
                callers=[Device(caller_node.ws_url, c.token) for c in callers],
                callees=[(c.handle, Device(callee_node.ws_url, c.token)) for c in callees],
            )
        )
    return specs


# --- windows -----------------------------------------------------------------------------------


class Windows:
    """Measures windows: CPU per process and the store's command counts."""

    def __init__(self, store: aioredis.Redis, pids: dict[str, list[int]], args: Any) -> None:
        self.store = store
        self.pids = pids
        self.args = args

    async def _measure(self, body: Any) -> tuple[Any, float, dict[str, float], dict[str, int]]:
        if self.args.wait_quiet:
            await wait_quiet(self.args.wait_quiet)
        meter = CpuMeter(self.pids)
        before = await st.command_counts(self.store)
        meter.start()
        value = await body()
        wall, cpu = meter.stop()
        commands = st.diff(await st.command_counts(self.store), before)
        return value, wall, cpu, commands

    async def idle(self, seconds: float, devices: int) -> dict[str, Any]:
        _, wall, cpu, commands = await self._measure(lambda: asyncio.sleep(seconds))
        total = sum(commands.values())
        return {
            "devices": devices,
            "seconds": round(wall, 2),
            "commands_per_s": round(total / wall, 1),
            "by_command_per_s": st.per(commands, wall),
            "cpu_percent": _percent(cpu, wall),
            "noisy": _noisy(cpu, wall),
        }

    async def calls(
        self, load: LoadGenerators, name: str, rate: float | None, idle: dict[str, Any]
    ) -> dict[str, Any]:
        seconds = self.args.duration
        stats, wall, cpu, commands = await self._measure(lambda: load.run(seconds, rate))
        net = st.net_of_background(commands, idle["by_command_per_s"], wall)
        summary = _summary(name, stats, wall, cpu, rate)
        summary["commands_per_setup"] = round(sum(net.values()) / (stats.calls or 1), 2)
        summary["by_command_per_setup"] = st.per(net, stats.calls)
        log(
            f"  {name}: {summary['setups_per_s']} set-ups/s, ring p50 {summary['ring_p50_ms']} "
            f"p99 {summary['ring_p99_ms']} ms, {summary['commands_per_setup']} store commands "
            f"each, {summary['failed']} failed, others {summary['cpu_percent']['others']} %"
        )
        return summary


def _percent(cpu: dict[str, float], wall: float) -> dict[str, float]:
    return {name: round(100 * used / wall, 1) for name, used in cpu.items()}


def _noisy(cpu: dict[str, float], wall: float) -> bool:
    return 100 * cpu["others"] / wall > BUSY_MACHINE_PERCENT


def _summary(
    name: str, stats: RunStats, wall: float, cpu: dict[str, float], rate: float | None
) -> dict[str, Any]:
    calls = stats.calls or 1
    node_cpu = {k: v for k, v in cpu.items() if k in NODE_IDS and v > 0}
    nodes_s = sum(node_cpu.values())
    return {
        "name": name,
        "target_per_s": round(rate, 1) if rate else None,
        "calls": stats.calls,
        "failed": sum(stats.failures.values()),
        "failures": dict(stats.failures),
        "elapsed_s": round(stats.elapsed_s, 2),
        "setups_per_s": round(stats.calls / stats.elapsed_s, 1) if stats.elapsed_s else 0.0,
        "ring_p50_ms": percentile_ms(stats.ring_s, 0.50),
        "ring_p99_ms": percentile_ms(stats.ring_s, 0.99),
        "cycle_p50_ms": percentile_ms(stats.cycle_s, 0.50),
        "cycle_p99_ms": percentile_ms(stats.cycle_s, 0.99),
        "setups_per_node_cpu_s": round(stats.calls / nodes_s, 1) if nodes_s else 0.0,
        "node_cpu_ms_per_setup": {k: round(1000 * v / calls, 3) for k, v in node_cpu.items()},
        "valkey_cpu_ms_per_setup": round(1000 * cpu["valkey"] / calls, 3),
        "bots_cpu_ms_per_setup": round(1000 * cpu["bots"] / calls, 3),
        "cpu_percent": _percent(cpu, wall),
        "noisy": _noisy(cpu, wall),
        "stray_messages": stats.stray,
        "late_starts": stats.late,
        "failure_examples": stats.examples,
    }


# --- putting it together -----------------------------------------------------------------------


async def run_mode(
    mode: str, nodes: list[Node], accounts: list[Member], windows: Windows, args: Any
) -> dict[str, Any]:
    specs = layout(mode, accounts, nodes, args)
    log(f"{mode}: connecting {len(specs)} pairs")
    load = LoadGenerators(specs, args.procs)
    try:
        devices = await load.ready()
        windows.pids["bots"] = load.pids
        log(f"  {devices} devices connected; idle {args.idle:g} s")
        idle = await windows.idle(args.idle, devices)
        if args.warmup:
            await load.run(args.warmup, None)
        runs = []
        rate = args.rate
        if args.peak:
            runs.append(await windows.calls(load, "peak", None, idle))
            # Paced at no more than half the peak, so that the latency is not queueing.
            rate = min(rate, runs[0]["setups_per_s"] / 2) or rate
        if rate:
            runs.append(await windows.calls(load, "paced", rate, idle))
    finally:
        await load.stop()
        windows.pids["bots"] = []
    await asyncio.sleep(RESUME_WINDOW_S + 1)  # the nodes forget the bots' sessions
    return {"mode": mode, "nodes": 1 if mode == "1-node" else 2, "idle": idle, "runs": runs}


async def create_accounts(node: Node, args: Any) -> list[Member]:
    count = args.pairs * (args.callers_per_pair + args.callees_per_pair)
    log(f"creating {count} accounts through {node.node_id} (paced sign-ups)")
    accounts, _retries, seconds = await make_accounts(node.url, [1] * count, 16)
    log(f"  done in {seconds:.0f} s")
    return [members[0] for members in accounts]


async def nodes_idle(windows: Windows, args: Any, count: int) -> dict[str, Any]:
    log(f"{count} node(s), no devices: idle {args.idle:g} s")
    return {"nodes": count, **await windows.idle(args.idle, 0)}


async def ceiling(redis_url: str, args: Any) -> dict[str, Any]:
    log("store ceiling: redis-benchmark and a redis-py pipeline loop")
    if args.wait_quiet:
        await wait_quiet(args.wait_quiet)
    tool = await asyncio.to_thread(st.redis_benchmark_ceiling, redis_url, args.ceiling_requests)
    loop = await st.pipeline_ceiling(redis_url, 3.0)
    return {"redis_benchmark": tool, "redis_py_pipeline_per_s": round(loop)}


async def run(args: Any) -> dict[str, Any]:
    raise_open_files(4 * args.pairs * (args.callers_per_pair + args.callees_per_pair) + 1024)
    with tempfile.TemporaryDirectory(prefix="cbcluster-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "valkey").mkdir(mode=0o700)
        with st.running_valkey(tmp / "valkey") as (valkey, redis_url):
            version = await st.wait_valkey(redis_url)
            store = aioredis.from_url(redis_url)
            try:
                result = await _with_store(tmp, valkey.pid, redis_url, store, args)
            finally:
                await store.aclose()
    result["machine"]["valkey"] = version
    return result


async def _with_store(
    tmp: Path, valkey_pid: int, redis_url: str, store: aioredis.Redis, args: Any
) -> dict[str, Any]:
    pids: dict[str, list[int]] = {"valkey": [valkey_pid], "bench": [os.getpid()], "bots": []}
    windows = Windows(store, pids, args)
    media_port = free_port()  # nothing listens there
    background: list[dict[str, Any]] = []
    modes: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(running_node(tmp, NODE_IDS[0], redis_url, media_port))]
        await wait_node_ready(nodes[0].url, nodes[0].process)
        pids[NODE_IDS[0]] = [nodes[0].process.pid]
        accounts = await create_accounts(nodes[0], args)
        for mode in args.modes:
            wanted = 1 if mode == "1-node" else 2
            if len(nodes) < wanted:
                nodes.append(
                    stack.enter_context(running_node(tmp, NODE_IDS[1], redis_url, media_port))
                )
                await wait_node_ready(nodes[1].url, nodes[1].process)
                pids[NODE_IDS[1]] = [nodes[1].process.pid]
            if not any(b["nodes"] == len(nodes) for b in background):
                background.append(await nodes_idle(windows, args, len(nodes)))
            modes.append(await run_mode(mode, nodes, accounts, windows, args))
    store_ceiling = await ceiling(redis_url, args) if args.ceiling else None
    return {
        "bench": "cluster",
        "source": source_version(),
        "machine": _machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "nodes_only": background,
        "modes": modes,
        "ceiling": store_ceiling,
    }


def _machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster", description=(__doc__ or "").split("\n\n")[0]
    )
    add = parser.add_argument
    add("--pairs", type=int, default=16, help="bot pairs, i.e. calls in flight (16)")
    add("--callers-per-pair", type=int, default=30, help="caller accounts per pair (30)")
    add("--callees-per-pair", type=int, default=12, help="callee accounts per pair (12)")
    add("--procs", type=int, default=1, help="load-generator processes (1)")
    add("--duration", type=float, default=10.0, help="seconds of each timed window (10)")
    add("--idle", type=float, default=6.0, help="seconds of each idle window (6)")
    add("--warmup", type=float, default=2.0, help="untimed seconds of calls first (2)")
    add("--rate", type=float, default=100.0, help="set-ups/s of the paced window (100; 0 off)")
    add("--no-peak", dest="peak", action="store_false", help="skip the unpaced window")
    add("--modes", default=",".join(MODES), help=f"layouts, comma-separated ({','.join(MODES)})")
    quiet = "before each window wait up to S s for the machine to go idle (15; 0 off)"
    add("--wait-quiet", type=float, default=15.0, metavar="S", help=quiet)
    add("--no-ceiling", dest="ceiling", action="store_false", help="skip the store's ceiling")
    add("--ceiling-requests", type=int, default=200_000, help="per redis-benchmark test")
    add("--json", action="store_true", help="print one JSON line instead")
    args = parser.parse_args(argv)
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = [mode for mode in args.modes if mode not in MODES]
    if unknown or not args.modes:
        parser.error(f"--modes takes some of {', '.join(MODES)}")
    limits = {
        "--pairs": (args.pairs, 1, 500),
        "--callers-per-pair": (args.callers_per_pair, 1, 100),
        "--callees-per-pair": (args.callees_per_pair, 1, 100),
        "--procs": (args.procs, 1, 16),
        "--duration": (args.duration, 0.5, 600),
        "--idle": (args.idle, 0.5, 600),
        "--warmup": (args.warmup, 0, 60),
        "--rate": (args.rate, 0, 10_000),
        "--wait-quiet": (args.wait_quiet, 0, 3600),
        "--ceiling-requests": (args.ceiling_requests, 1000, 10_000_000),
    }
    for flag, (value, low, high) in limits.items():
        if not low <= value <= high:
            parser.error(f"{flag} must be between {low} and {high}")
    if not args.peak and not args.rate:
        parser.error("--no-peak needs a --rate")
    if args.pairs < args.procs:
        parser.error("--pairs cannot be fewer than --procs")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: the nodes and Valkey are stopped, the temporary files removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    try:
        result = asyncio.run(run(args))
    except (RuntimeError, ClientError, OSError, TimeoutError, RedisError) as exc:
        log(f"failed: {exc!r}")
        return 1
    except KeyboardInterrupt:
        return 130
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result) if args.json else report(result))
    failed = any(run["failed"] for mode in result["modes"] for run in mode["runs"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
