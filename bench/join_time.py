"""Join time of a group call: from the invite to the first decoded video frame from every other
participant, at every participant (issue 15, "before" and "after" one connection per
participant).

``callbook serve`` (embedded Valkey and SFU) on a free loopback port; P aiortc bots through the
Python SDK's public API only (``Softphone.group`` / ``answer``, ``Softphone.session.received``),
so the bench follows whatever transport the SDK uses by default. The guests' lines are open
(signed in, waiting); the clock starts when the host calls ``group()`` (which opens the host's
line, a few ms on loopback, then sends the invite), the guests accept at once, and each
participant's ``session.received`` is polled every 5 ms for the first decoded video frame from
each other participant (a round gives up after 60 s: ``null``). Per round: each participant's
time to *all* others (``per_participant_ms``) and the call's (the slowest participant,
``all_ms``). Video is the bots' moving pattern, VP8, end-to-end encrypted as the SDK always does;
a receiver needs the sender's key and a keyframe.

Run from the repository root::

    .venv/bin/python -m bench.join_time --participants 3 --participants 6 --rounds 5 --json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
from typing import Any

from bench.directory import free_port, running_server, wait_ready
from signaling.sdk.client import Client
from signaling.sdk.softphone import Softphone

LIMIT_S = 60.0


async def _first_from_all(phone: Softphone, count: int, since: float) -> float:
    """ms from ``since`` until video from ``count`` other participants has been decoded."""
    loop = asyncio.get_running_loop()
    while True:
        session = phone.session
        if session is not None:
            seen = sum(1 for got in session.received.values() if got.video_frames_received > 0)
            if seen >= count:
                return (loop.time() - since) * 1000
        await asyncio.sleep(0.005)


async def one_round(url: str, participants: int, index: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    tag = os.urandom(3).hex()
    names = [f"j{tag}x{i}" for i in range(participants)]
    phones = []
    for name in names:
        client = Client(url)
        await client.signup(name)
        phones.append(Softphone(client, video=True))
    host, *guests = phones
    for phone in guests:
        await phone.line.open()
    tasks = [asyncio.create_task(p.answer(None)) for p in guests]
    started = loop.time()
    tasks.append(asyncio.create_task(host.group(names[1:], None)))
    waits = [asyncio.create_task(_first_from_all(p, participants - 1, started)) for p in phones]
    try:
        done, _ = await asyncio.wait(waits, timeout=LIMIT_S)
    finally:
        for wait in waits:
            wait.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for phone in phones:
            await phone.close()
            await phone.client.close()
    # None: that participant had not seen video from everyone within LIMIT_S
    times = [w.result() if w in done else None for w in waits]
    return {
        "round": index,
        "participants": participants,
        "all_ms": None if None in times else round(max(t for t in times if t is not None), 1),
        "per_participant_ms": [None if t is None else round(t, 1) for t in times],  # host first
        "load_average_1m": os.getloadavg()[0],
    }


async def run(participants: list[int], rounds: int, emit: Any) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        with running_server(port, data_dir, None) as process:
            await wait_ready(url, process)
            for p in participants:
                results = [await one_round(url, p, i) for i in range(rounds)]
                for result in results:
                    emit(result)
                alls = [r["all_ms"] for r in results if r["all_ms"] is not None]
                each = [t for r in results for t in r["per_participant_ms"] if t is not None]
                emit({
                    "summary": True, "participants": p, "rounds": rounds,
                    "timed_out": rounds - len(alls),
                    "all_ms_median": round(statistics.median(alls), 1) if alls else None,
                    "all_ms_max": round(max(alls), 1) if alls else None,
                    "per_participant_ms_median": (
                        round(statistics.median(each), 1) if each else None
                    ),
                })  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, action="append")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()

    def emit(row: dict[str, Any]) -> None:
        print(json.dumps(row) if args.json else row, flush=True)

    emit({"facts": {"commit": commit, "cores": os.cpu_count()}})
    asyncio.run(run(args.participants or [3, 6], args.rounds, emit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
