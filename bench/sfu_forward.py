"""SFU forwarding cost: CPU microseconds per forwarded packet, 1 publisher -> N subscribers.

One publisher sends pre-encoded media (a VP8 + Opus WebM generated once with av and sent with
``MediaPlayer(decode=False)``, so the load generator never encodes); N subscribers receive it
with aiortc's decoder replaced by a no-op (so they never decode). The SFU runs as its own
process (``python -m media.server``); its CPU time comes from ``/proc/<pid>/stat`` and its
packet counts from ``GET /v1/stats`` over the same window.

Run from the repository root::

    .venv/bin/python -m bench.sfu_forward                      # N = 3 and 8, table
    .venv/bin/python -m bench.sfu_forward --subscribers 3 --json

One JSON line per N: {"sfu": "callbook", "subscribers", "seconds", "cpu_s", "cpu_pct",
"forwarded_packets", "forwarded_pps", "in_pps", "us_per_forwarded_packet", "mbit_s_out", ...}
so a Janus run can print the same shape. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import array
import asyncio
import fractions
import json
import math
import os
import secrets
import socket
import time
from typing import IO, Any

import aiortc.rtcrtpreceiver
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

from media.control import MediaControl
from media.server import allow_loopback_ice

CACHE = Path(os.environ.get("CALLBOOK_BENCH_CACHE", "/tmp/callbook-bench"))
TICKS = os.sysconf("SC_CLK_TCK")


def media_file(width: int, height: int, fps: int, bitrate: int, seconds: int) -> Path:
    """A VP8 + Opus WebM, made once: moving gradient plus noise so the bitrate is real."""
    path = CACHE / f"sfu-{width}x{height}-{fps}-{bitrate}-{seconds}.webm"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.webm")
    with av.open(str(tmp), "w") as container:
        video = container.add_stream("libvpx", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = bitrate
        video.options = {"deadline": "realtime", "cpu-used": "8", "g": str(fps * 4)}
        audio = container.add_stream("libopus", rate=48_000)
        audio.layout = "mono"
        size = width * height
        noise_mask = int.from_bytes(b"\x1f" * size, "big")
        chroma = b"\x80" * (size // 4)
        for i in range(seconds * fps):
            row = bytes((x + i * 4) % 256 for x in range(width))
            base = int.from_bytes(row * height, "big")
            noise = int.from_bytes(os.urandom(size), "big") & noise_mask
            frame = av.VideoFrame(width=width, height=height, format="yuv420p")
            frame.planes[0].update((base ^ noise).to_bytes(size, "big"))
            frame.planes[1].update(chroma)
            frame.planes[2].update(chroma)
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        samples = 960
        for i in range(seconds * 50):
            pcm = array.array(
                "h",
                (
                    int(3000 * math.sin(2 * math.pi * 440 * (n + i * samples) / 48_000))
                    for n in range(samples)
                ),
            )
            frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
            frame.planes[0].update(pcm.tobytes())
            frame.sample_rate, frame.pts = 48_000, i * samples
            frame.time_base = fractions.Fraction(1, 48_000)
            for packet in audio.encode(frame):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    tmp.rename(path)
    return path


class _NoDecoder:
    """Subscribers in the bench only count; they must not spend the CPU the SFU is measured on."""

    def decode(self, frame: Any) -> list[Any]:
        return []


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def run(
    subscribers: int, seconds: float, warmup: float, path: Path, log: IO[bytes]
) -> dict[str, Any]:
    port, secret = free_port(), secrets.token_urlsafe(16)
    profile = os.environ.get("CALLBOOK_BENCH_PROFILE")  # a cProfile output path, for digging
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *prefix, "-m", "media.server", "--port", str(port), f"--secret={secret}",
        # Stopped when measured: a drain would keep its rooms 40 s for nobody.
        "--drain-grace-s", "0", "--max-participants", str(subscribers + 1),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    control = MediaControl(f"http://127.0.0.1:{port}", secret)
    pcs: list[RTCPeerConnection] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if await control.health():
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)
        await control.create_room("bench", max_participants=subscribers + 1)
        player = MediaPlayer(str(path), decode=False, loop=True)
        publisher = new_pc()
        pcs.append(publisher)
        for track in (player.audio, player.video):
            publisher.addTransceiver(track, direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        answer = await control.join("bench", "pub", publisher.localDescription.sdp)
        await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        for i in range(subscribers):
            name = f"sub{i}"
            await control.join("bench", name, await _idle_offer(pcs))
            sub_id, offer = await control.subscribe("bench", name, "pub")
            pc = new_pc()
            pcs.append(pc)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await control.answer("bench", name, sub_id, pc.localDescription.sdp)
        await asyncio.sleep(warmup)
        stats0, cpu0, t0 = await control.stats(), cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(seconds)
        stats1, cpu1, t1 = await control.stats(), cpu_seconds(proc.pid), time.monotonic()
        elapsed, cpu = t1 - t0, cpu1 - cpu0
        forwarded = stats1["forwarded_packets"] - stats0["forwarded_packets"]
        received = stats1["received_packets"] - stats0["received_packets"]
        out_bytes = stats1["forwarded_bytes"] - stats0["forwarded_bytes"]
        return {
            "sfu": "callbook",
            "subscribers": subscribers,
            "seconds": round(elapsed, 2),
            "cpu_s": round(cpu, 3),
            "cpu_pct": round(100 * cpu / elapsed, 1),
            "in_pps": round(received / elapsed, 1),
            "forwarded_packets": forwarded,
            "forwarded_pps": round(forwarded / elapsed, 1),
            "us_per_forwarded_packet": round(1e6 * cpu / forwarded, 2) if forwarded else None,
            "mbit_s_out": round(8 * out_bytes / elapsed / 1e6, 2),
            "dropped": stats1["dropped"],
            "media": path.name,
        }
    finally:
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)
        await control.close()
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def _idle_offer(pcs: list[RTCPeerConnection]) -> str:
    """A subscriber must be in the room; it publishes an uplink that never sends media."""
    pc = new_pc()
    pcs.append(pc)
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, action="append")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=5.0)  # > one GOP: PLIs cannot
    # make pre-encoded media send a keyframe, so a new leg waits for the next one
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=2_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    width, height = map(int, args.size.split("x"))
    path = media_file(width, height, args.fps, args.bitrate, 20)
    allow_loopback_ice()
    aiortc.rtcrtpreceiver.get_decoder = lambda codec: _NoDecoder()  # type: ignore[assignment]
    for n in args.subscribers or [3, 8]:
        with (CACHE / f"sfu-{n}.log").open("wb") as log:  # the SFU's stderr, for post-mortems
            result = asyncio.run(run(n, args.seconds, args.warmup, path, log))
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(
                f"N={n}: {result['us_per_forwarded_packet']} us CPU/forwarded packet, "
                f"{result['forwarded_pps']} pkt/s out ({result['in_pps']} in), "
                f"SFU CPU {result['cpu_pct']} %, {result['mbit_s_out']} Mbit/s out",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
