"""Timing oracle benchmark: can a caller tell "blocked" from "offline" by how fast the server
answers? (protocol.md 11.8; issue 12, "timing tells blocked from offline").

It starts its own Valkey and ``callbook serve`` nodes (real processes, loopback only), creates
``--callers`` caller accounts, ``bob`` (anyone may call him; never online), ``carol`` (blocks
every caller; never online) and ``--idle`` accounts whose one device each stays connected
(idle phones), then for each layout:

* ``1-node``: one node, ``CALLBOOK_ROUTING=local`` (set: with REDIS_URL the default is
  ``redis``), everything on it;
* ``2-node``: two nodes, ``CALLBOOK_ROUTING=redis``; callers on A, idle devices spread on both;

places ``--trials`` invites to bob and as many to carol, interleaved in random order, each
cancelled as soon as it rings, and reports per kind of callee the median time from ``invite``
to ``ringing`` and from ``hangup`` to ``ended``, and the effect: the Hodges-Lehmann shift
(bob - carol), the Mann-Whitney p-value and the rank-biserial correlation (0: no tendency,
±1: every invite of one kind slower than every one of the other; ``bench/rank_test.py``).

``--code label=DIR`` (repeatable) runs the nodes from another checkout, for a before/after
comparison; the accounts are created once and shared. Access tokens live 15 minutes: on a busy
machine, run one checkout per invocation::

    git archive <old commit> | tar -x -C /tmp/cb-before
    .venv/bin/python -m bench.oracle_timing --code before=/tmp/cb-before
    .venv/bin/python -m bench.oracle_timing --code after=.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import msgspec

from bench import cluster_store as st
from bench.directory import free_port, log, server_command, supervised_server
from bench.directory import wait_ready as wait_node_ready
from bench.rank_test import compare
from bench.signaling import (
    LOOKUP_BURST,
    LOOKUPS_PER_MINUTE,
    TOKEN_TTL_S,
    Member,
    make_accounts,
    raise_open_files,
    source_version,
)
from signaling.protocol import messages as m

_decode = msgspec.json.Decoder(m.ServerMessages).decode
_encode = msgspec.json.Encoder().encode


@contextlib.contextmanager
def running_node(
    tmp: Path, code: Path, node_id: str, redis_url: str, routing: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    home = tmp / f"{code.name}-{node_id}-{routing}"
    data_dir = home / "data"
    data_dir.mkdir(parents=True, mode=0o700)
    port = free_port()
    settings = {
        "REDIS_URL": redis_url,
        "CALLBOOK_ROUTING": routing,
        "CALLBOOK_NODE_ID": node_id,
        "CALLBOOK_MEDIA_URL": f"http://127.0.0.1:{free_port()}",  # unused: nothing connects
        "CALLBOOK_MEDIA_SECRET": "bench-unused",
        "CALLBOOK_TOKEN_TTL_S": str(TOKEN_TTL_S),
        # Blocks count as lookups: carol blocks every caller at set-up.
        "CALLBOOK_LOOKUP_BURST": str(LOOKUP_BURST),
        "CALLBOOK_LOOKUPS_PER_MINUTE": str(LOOKUPS_PER_MINUTE),
        "PYTHONPATH": str(code),
    }
    serve = server_command(port, data_dir, None)
    command = [sys.executable, "-m", "signaling.cli", *serve[serve.index("serve") :]]
    with supervised_server(command, data_dir, settings, cwd=code) as process:
        yield f"http://127.0.0.1:{port}", process


class Socket:
    """One device's call WebSocket, with its own reader."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: m.ClientMessage) -> None:
        await self.ws.send_str(_encode(message).decode())

    async def next(self) -> m.ServerMessage:
        while True:
            frame = await self.ws.receive(timeout=10)
            if frame.type is not aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"socket closed: {frame.type}")
            message = _decode(frame.data)
            if not isinstance(message, m.Pong):
                return message


@contextlib.asynccontextmanager
async def connected(http: aiohttp.ClientSession, url: str, member: Member) -> AsyncIterator[Socket]:
    ws_url = url.replace("http", "ws", 1) + "/v1/ws"
    async with http.ws_connect(ws_url, protocols=["callbook.v1", f"bearer.{member.token}"]) as ws:
        socket = Socket(ws)
        welcome = await socket.next()
        assert isinstance(welcome, m.Welcome), welcome
        yield socket


async def block_all(
    http: aiohttp.ClientSession, url: str, blocker: Member, handles: list[str]
) -> None:
    headers = {"Authorization": f"Bearer {blocker.token}"}
    for handle in handles:
        async with http.post(f"{url}/v1/blocks", json={"handle": handle}, headers=headers) as r:
            if r.status >= 400:
                raise RuntimeError(f"block failed: {r.status} {await r.text()}")


async def trials(callers: list[Socket], bob: str, carol: str, count: int) -> dict[str, Any]:
    timings: dict[str, dict[str, list[float]]] = {
        who: {"ringing": [], "ended": []} for who in ("bob", "carol")
    }
    # One random order of all the invites: after a given invite the next is either kind alike,
    # so what one leaves running (a missed-call write) weighs on both kinds the same.
    order = [("bob", bob), ("carol", carol)] * count
    random.Random(11).shuffle(order)
    for n, (who, handle) in enumerate(order):
        line = callers[n % len(callers)]
        started = time.perf_counter()
        await line.send(m.Invite(handle=handle))
        ringing = await line.next()
        rang = time.perf_counter()
        assert isinstance(ringing, m.Ringing), ringing
        await line.send(m.Hangup(call_id=ringing.call_id))
        ended = await line.next()
        done = time.perf_counter()
        assert isinstance(ended, m.Ended) and ended.reason == "cancelled", ended
        timings[who]["ringing"].append(rang - started)
        timings[who]["ended"].append(done - rang)
    result: dict[str, Any] = {}
    for what in ("ringing", "ended"):
        c = compare(timings["bob"][what], timings["carol"][what])
        result[what] = {
            "offline_median_ms": c.median_a * 1e3, "blocked_median_ms": c.median_b * 1e3,
            "shift_ms": c.shift * 1e3, "p": c.p, "effect": c.effect, "differ": c.differ,
        }  # fmt: skip
    return result


async def run_layout(
    tmp: Path, code: Path, nodes: int, redis_url: str, accounts: list[Member], args: Any
) -> dict[str, Any]:
    callers, bob, carol, idle = (
        accounts[: args.callers], accounts[args.callers], accounts[args.callers + 1],
        accounts[args.callers + 2 :],
    )  # fmt: skip
    routing = "local" if nodes == 1 else "redis"
    with contextlib.ExitStack() as stack:
        running = [
            stack.enter_context(running_node(tmp, code, f"node-{i}", redis_url, routing))
            for i in range(nodes)
        ]
        for url, process in running:
            await wait_node_ready(url, process)
        urls = [url for url, _ in running]
        unlimited = aiohttp.TCPConnector(limit=0)  # one connection per idle device
        async with (
            contextlib.AsyncExitStack() as sockets,
            aiohttp.ClientSession(connector=unlimited) as http,
        ):
            for i, member in enumerate(idle):
                await sockets.enter_async_context(connected(http, urls[i % nodes], member))
            lines = [
                await sockets.enter_async_context(connected(http, urls[0], c)) for c in callers
            ]
            await trials(lines, bob.handle, carol.handle, args.warmup)
            measured = await trials(lines, bob.handle, carol.handle, args.trials)
    return {"nodes": nodes, "routing": routing, "idle": len(idle), **measured}


async def run(args: Any) -> dict[str, Any]:
    raise_open_files(2 * args.idle + 1024)
    codes: list[tuple[str, Path]] = args.code
    results = []
    with tempfile.TemporaryDirectory(prefix="cboracle-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "valkey").mkdir(mode=0o700)
        with st.running_valkey(tmp / "valkey") as (_, redis_url):
            await st.wait_valkey(redis_url)
            with running_node(tmp, codes[-1][1], "setup", redis_url, "local") as (url, process):
                await wait_node_ready(url, process)
                log(f"creating {args.callers + 2 + args.idle} accounts")
                accounts, _, _ = await make_accounts(url, [1] * (args.callers + 2 + args.idle), 8)
                members = [a[0] for a in accounts]
                async with aiohttp.ClientSession() as http:
                    await block_all(http, url, members[args.callers + 1],
                                    [c.handle for c in members[: args.callers]])  # fmt: skip
            for label, code in codes:
                for nodes in args.nodes:
                    log(f"{label}: {nodes} node(s), {args.idle} idle devices")
                    layout = await run_layout(tmp, code, nodes, redis_url, members, args)
                    results.append({"code": label, **layout})
    return {"bench": "oracle_timing", "source": source_version(), "trials": args.trials,
            "results": results}  # fmt: skip


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['trials']} invites per kind of callee, interleaved; offline = may be called, "
        "blocked = blocks the caller; shift = offline - blocked (Hodges-Lehmann)",
        "",
        "| code | nodes | idle | measure | offline ms | blocked ms | shift ms | p | effect |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        for what in ("ringing", "ended"):
            x = r[what]
            lines.append(
                f"| {r['code']} | {r['nodes']} | {r['idle']} | {what} | "
                f"{x['offline_median_ms']:.3f} | {x['blocked_median_ms']:.3f} | "
                f"{x['shift_ms']:+.3f} | {x['p']:.2g} | {x['effect']:+.2f} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=1500, help="idle connected devices")
    parser.add_argument("--trials", type=int, default=300, help="invites per kind of callee")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured invites per kind")
    # An account may place 20 calls at once, then one a second: spread the invites.
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    parser.add_argument("--code", action="append", help="label=DIR of a checkout to run")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    args = parser.parse_args(argv)
    args.code = [
        (label, Path(path).resolve())
        for label, path in (c.split("=", 1) for c in args.code or ["this=."])
    ]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    print(json.dumps(result) if args.json else report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
