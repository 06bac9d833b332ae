"""The media node's per-packet path: its CPU per forwarded packet under a load that costs the load
generator little, so a busy machine starves the generator less than ``bench/sfu.py``'s.

One publisher and N subscribers, all aiortc in this process, through a media node run as its own
process (``python -m media.server``, from ``--sfu-root``: another checkout compares commits).
Once every leg is up, the publisher sends synthetic RTP on its audio SSRC (``--size`` bytes,
``--pps`` per second, paced every 10 ms), protected with its own SRTP context and written to its
nominated pair: no encoder, no player. The subscribers' connections count what arrives in the
datagram callback and drop it (no SRTP, no jitter buffer); their ICE consent still runs. The
node's audio cap is raised so nothing is rate-limited. Per window: the node's CPU
(``/proc/<pid>/stat``) / the node's own ``forwarded_packets`` delta; also the datagrams the
subscribers saw, and the machine's other load.

Run from the repository root::

    .venv/bin/python -m bench.sfu_path --subscribers 8 --json
    .venv/bin/python -m bench.sfu_path --subscribers 8 --sfu-root /tmp/before   # another commit
    .venv/bin/python -m bench.sfu_path --subscribers 8 --sfu-arg=--udp-port=off  # aioice sockets
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
import struct
import time
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from bench.sfu import machine_busy_s
from bench.sfu_forward import cpu_seconds, free_port, new_pc
from media.control import MediaControl
from media.forwarding import Kind
from media.peer import PlaceholderTrack

ROOT = Path(__file__).resolve().parents[1]


async def _connected(pcs: list[RTCPeerConnection], limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not all(pc.connectionState == "connected" for pc in pcs):
        if time.monotonic() > deadline:
            raise RuntimeError(f"legs not up: {[pc.connectionState for pc in pcs]}")
        await asyncio.sleep(0.05)


async def _join(control: MediaControl, room: str, name: str) -> tuple[RTCPeerConnection, Any]:
    pc = new_pc()
    transceiver = pc.addTransceiver(PlaceholderTrack(Kind.AUDIO), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await control.join(room, name, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc, (transceiver, answer)


async def _subscribe(control: MediaControl, room: str, name: str) -> RTCPeerConnection:
    sub_id, offer = await control.subscribe(room, name, "pub")
    pc = new_pc()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await control.answer(room, name, sub_id, pc.localDescription.sdp)
    return pc


def _in_process(args: argparse.Namespace) -> list[str]:
    """``--workers 0`` where the node has worker processes: the CPU read is the node's pid's."""
    return ["--workers", "0"] if (args.sfu_root / "media" / "workers.py").exists() else []


class Counter:
    def __init__(self) -> None:
        self.datagrams = 0

    def attach(self, pc: RTCPeerConnection) -> None:
        for transceiver in pc.getTransceivers():
            connection = transceiver.receiver.transport.transport._connection

            def received(data: bytes, component: int) -> None:
                self.datagrams += 1

            connection.data_received = received


async def run(args: argparse.Namespace, n: int) -> dict[str, Any]:
    port, secret = free_port(), secrets.token_urlsafe(16)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media.server", "--port", str(port), f"--secret={secret}",
        "--max-participants", str(n + 1), "--max-audio-kbps", "1000000", *_in_process(args),
        *args.sfu_arg,
        cwd=str(args.sfu_root), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    pcs: list[RTCPeerConnection] = []
    control = MediaControl(f"http://127.0.0.1:{port}", secret)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if await control.health():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the media node did not start")
            await asyncio.sleep(0.05)
        room = f"bench-{os.urandom(4).hex()}"
        await control.create_room(room)
        publisher, (transceiver, answer) = await _join(control, room, "pub")
        pcs.append(publisher)
        downlinks = []
        for i in range(n):
            uplink, _ = await _join(control, room, f"s{i}")
            pcs.append(uplink)
            downlinks.append(await _subscribe(control, room, f"s{i}"))
        pcs += downlinks
        await _connected(pcs)
        counter = Counter()
        for pc in downlinks:
            counter.attach(pc)
        return await _measure(args, n, proc.pid, control, transceiver, answer, counter)
    finally:
        for pc in pcs:
            await pc.close()
        await control.close()
        proc.terminate()
        await proc.wait()


async def _measure(
    args: argparse.Namespace,
    n: int,
    pid: int,
    control: MediaControl,
    transceiver: Any,
    answer: str,
    counter: Counter,
) -> dict[str, Any]:
    dtls = transceiver.sender.transport
    pair = dtls.transport._connection._nominated[1]
    send, addr, protect = pair.protocol.transport.sendto, pair.remote_addr, dtls._tx_srtp.protect
    ssrc = transceiver.sender._ssrc
    payload_type = SessionDescription.parse(answer).media[0].rtp.codecs[0].payloadType
    payload = bytes(args.size - 12)
    loop = asyncio.get_running_loop()
    sequence = 0
    start = loop.time()
    marks: dict[str, Any] = {}

    def mark() -> dict[str, Any]:
        return {"cpu": cpu_seconds(pid), "busy": machine_busy_s(), "me": cpu_seconds(os.getpid()),
                "seen": counter.datagrams, "at": time.monotonic()}  # fmt: skip

    tick = 0
    while True:
        elapsed = loop.time() - start
        if "a" not in marks and elapsed >= args.warmup:
            marks["a"], marks["stats_a"] = mark(), await control.stats()
        if elapsed >= args.warmup + args.seconds:
            marks["b"], marks["stats_b"] = mark(), await control.stats()
            break
        due = int(elapsed * args.pps)  # catch up after a late tick: the rate holds
        while sequence < due:
            header = struct.pack("!BBHII", 0x80, payload_type, sequence & 0xFFFF,
                                 (sequence * 960) & 0xFFFFFFFF, ssrc)  # fmt: skip
            send(protect(header + payload), addr)
            sequence += 1
        tick += 1
        await asyncio.sleep(max(0.0, start + tick / 100 - loop.time()))
    a, b = marks["a"], marks["b"]
    window = b["at"] - a["at"]
    forwarded = marks["stats_b"]["forwarded_packets"] - marks["stats_a"]["forwarded_packets"]
    cpu = b["cpu"] - a["cpu"]
    return {
        "sfu_root": str(args.sfu_root),
        "sfu_args": args.sfu_arg,
        "subscribers": n,
        "seconds": round(window, 2),
        "in_pps": round(
            (marks["stats_b"]["received_packets"] - marks["stats_a"]["received_packets"]) / window,
            1,
        ),
        "forwarded_pps": round(forwarded / window, 1),
        "seen_pps": round((b["seen"] - a["seen"]) / window, 1),
        "sfu_cpu_pct": round(100 * cpu / window, 1),
        "us_per_forwarded_packet": round(1e6 * cpu / forwarded, 2) if forwarded else None,
        "udp_port": marks["stats_b"].get("udp_port"),
        "loadgen_cpu_pct": round(100 * (b["me"] - a["me"]) / window, 1),
        "others_cpu_pct": round(
            100 * ((b["busy"] - a["busy"]) - cpu - (b["me"] - a["me"])) / window, 1
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, action="append")
    parser.add_argument("--pps", type=float, default=500.0)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sfu-root", type=Path, default=ROOT)
    parser.add_argument("--sfu-arg", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from media.server import allow_loopback_ice

    allow_loopback_ice()
    for n in args.subscribers or [8]:
        for _ in range(args.repeat):
            result = asyncio.run(run(args, n))
            print(json.dumps(result) if args.json else result, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
