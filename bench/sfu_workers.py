"""A media node's worker processes: aggregate forwarding at 0, 1 and 2 workers (media/workers.py).

For each worker count W and room count R: a fresh ``python -m media.server --workers W``, R rooms
each with one publisher (pre-encoded VP8 + Opus, ``MediaPlayer(decode=False)``: nothing encoded)
and N subscribers. The subscribers only count what arrives: their DTLS transport's RTP handler
is replaced by a counter, so the load generator spends no SRTP or jitter-buffer work on them
(it shares the machine's cores with the SFU). Once every downlink is connected and after a
warm-up (a new leg waits for the next keyframe, every 4 s in this media), over a window:

* ``forwarded_pps``: packets the SFU sent (its ``forwarded_packets``, summed over the workers),
  and ``offered_pps``: what it would send if it kept up (packets it received x N); their ratio
  ``kept_up`` falls below 1 when the SFU saturates (datagrams dropped in its socket buffers);
* ``sfu_cpu_pct``: CPU of the node process and its workers (``/proc/<pid>/stat``), per worker
  too, and ``us_per_forwarded_packet``;
* ``rooms_per_worker``: where the node placed the rooms;
* the load generator's CPU and everything else's on the machine (``/proc/stat``).

Run from the repository root::

    .venv/bin/python -m bench.sfu_workers --workers 1 --workers 2 --rooms 1 --rooms 2 --rooms 4
    .venv/bin/python -m bench.sfu_workers --json > bench/results/sfu-workers.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import json
import os
import secrets
import time
from typing import Any

import aiortc.rtcrtpreceiver
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport

from bench.sfu import MEDIA_SECONDS, answer_pc, facts, machine_busy_s, media_file, publisher_pc
from bench.sfu_forward import _NoDecoder, cpu_seconds, free_port, new_pc
from media.control import MediaControl
from media.server import allow_loopback_ice

now = time.monotonic
RECEIVED = [0]


def count_only() -> None:
    """Subscribers count RTP datagrams and do nothing else with them."""

    async def counted(self: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
        RECEIVED[0] += 1

    RTCDtlsTransport._handle_rtp_data = counted  # type: ignore[method-assign]


def family(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += family(int(child))
    return found


async def start_node(workers: int, n: int) -> tuple[asyncio.subprocess.Process, MediaControl]:
    port, secret = free_port(), secrets.token_urlsafe(16)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media.server", "--port", str(port), f"--secret={secret}",
        "--max-participants", str(n + 1), "--workers", str(workers),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    control = MediaControl(f"http://127.0.0.1:{port}", secret)
    deadline = now() + 60
    while True:
        try:
            if await control.health():
                return proc, control
        except OSError:
            if now() > deadline or proc.returncode is not None:
                raise
        await asyncio.sleep(0.1)


async def open_room(
    control: MediaControl,
    room: str,
    n: int,
    path: Path,
    pcs: list[RTCPeerConnection],
    downlinks: list[RTCPeerConnection],
) -> None:
    await control.create_room(room, max_participants=n + 1)
    publisher = await publisher_pc(path, pcs)
    answer = await control.join(room, "pub", publisher.localDescription.sdp)
    await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    for i in range(n):
        idle = new_pc()  # a subscriber is a participant: an uplink that never sends
        pcs.append(idle)
        idle.addTransceiver("audio", direction="sendonly")
        await idle.setLocalDescription(await idle.createOffer())
        await control.join(room, f"sub{i}", idle.localDescription.sdp)
        sub_id, offer = await control.subscribe(room, f"sub{i}", "pub")
        pc = await answer_pc(offer, pcs)
        downlinks.append(pc)
        await control.answer(room, f"sub{i}", sub_id, pc.localDescription.sdp)


async def connected(downlinks: list[RTCPeerConnection], limit_s: float = 120.0) -> float:
    """Wait until every downlink is connected (on a busy machine set-up takes a while): the
    window must measure forwarding, not legs still handshaking. Returns the seconds waited."""
    started = now()
    while not all(pc.connectionState == "connected" for pc in downlinks):
        if now() - started > limit_s:
            raise RuntimeError("downlinks did not all connect")
        await asyncio.sleep(0.2)
    return now() - started


async def run(workers: int, rooms: int, n: int, path: Path, seconds: float, warmup: float) -> Any:
    proc, control = await start_node(workers, n)
    pcs: list[RTCPeerConnection] = []
    downlinks: list[RTCPeerConnection] = []
    try:
        started = now()
        for r in range(rooms):
            await open_room(control, f"room-{r}", n, path, pcs, downlinks)
        await connected(downlinks)
        setup_s = now() - started
        await asyncio.sleep(warmup)
        pids = family(proc.pid)
        before, busy0, me0 = await control.stats(), machine_busy_s(), cpu_seconds(os.getpid())
        cpu0 = {pid: cpu_seconds(pid) for pid in pids}
        got0, t0 = RECEIVED[0], now()
        await asyncio.sleep(seconds)
        elapsed = now() - t0
        cpu = {pid: cpu_seconds(pid) - cpu0[pid] for pid in pids}
        after, me = await control.stats(), cpu_seconds(os.getpid()) - me0
        sfu_cpu = sum(cpu.values())
        forwarded = after["forwarded_packets"] - before["forwarded_packets"]
        received = after["received_packets"] - before["received_packets"]
        others = machine_busy_s() - busy0 - sfu_cpu - me
        per_worker = after.get("workers") or []
        return {
            "workers": workers,
            "rooms": rooms,
            "subscribers_per_room": n,
            "seconds": round(elapsed, 1),
            "forwarded_pps": round(forwarded / elapsed),
            "offered_pps": round(received * n / elapsed),
            "kept_up": round(forwarded / (received * n), 3) if received else None,
            "arrived_pps": round((RECEIVED[0] - got0) / elapsed),
            "sfu_cpu_pct": round(100 * sfu_cpu / elapsed, 1),
            "cpu_pct_by_process": [round(100 * cpu[pid] / elapsed, 1) for pid in pids],
            "us_per_forwarded_packet": round(1e6 * sfu_cpu / forwarded, 1) if forwarded else None,
            "rooms_per_worker": [w["rooms"] for w in per_worker],
            "held_for_keyframe": after["held_for_keyframe"] - before["held_for_keyframe"],
            "dropped": {k: v - before["dropped"].get(k, 0) for k, v in after["dropped"].items()},
            "setup_s": round(setup_s, 1),
            "loadgen_cpu_pct": round(100 * me / elapsed, 1),
            "others_cpu_pct": round(max(0.0, 100 * others / elapsed), 1),
        }
    finally:
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)
        await control.close()
        if proc.returncode is None:
            proc.kill()  # no drain: nothing of this run matters any more
        await proc.wait()


def show(result: dict[str, Any]) -> str:
    return (
        f"workers={result['workers']} rooms={result['rooms']}x1->{result['subscribers_per_room']}"
        f"  forwarded {result['forwarded_pps']} pps of {result['offered_pps']} offered"
        f" (kept up {result['kept_up']})  SFU CPU {result['sfu_cpu_pct']} %"
        f" {result['cpu_pct_by_process']}  {result['us_per_forwarded_packet']} us/pkt"
        f"  rooms/worker {result['rooms_per_worker']}  loadgen {result['loadgen_cpu_pct']} %"
        f"  others {result['others_cpu_pct']} %"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, action="append")
    parser.add_argument("--rooms", type=int, action="append")
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=6.0)  # > one GOP (4 s)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.warmup + args.seconds + 30 > MEDIA_SECONDS:
        parser.error(f"warm-up + window must stay under {MEDIA_SECONDS - 30} s (media length)")
    path = media_file(640, 480, 30, 2_000_000, MEDIA_SECONDS)
    allow_loopback_ice()
    aiortc.rtcrtpreceiver.get_decoder = lambda codec: _NoDecoder()  # type: ignore[assignment]
    count_only()
    info = facts()
    print(json.dumps({"facts": info}) if args.json else info, flush=True)
    for workers in args.workers or [1, 2]:
        for rooms in args.rooms or [1, 2, 4]:
            result = asyncio.run(
                run(workers, rooms, args.subscribers, path, args.seconds, args.warmup)
            )
            print(json.dumps(result) if args.json else show(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
