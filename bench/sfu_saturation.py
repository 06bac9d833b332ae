"""Saturation of a media node's workers: how many forwarded packets/s one worker, and two, keep
up with before packets are dropped or latency blows up; added latency on the way; RSS per
participant (issue 15).

Per worker count W: a fresh ``python -m media.server --workers W`` and R rooms (default 2 per
worker, so placement puts the same load on each worker) of one publisher and N subscribers, all
aiortc in this process. Before the first room and once every leg is up, the RSS of the node and
its workers is read: ``rss_per_participant_kib`` = the difference / the participants (each room:
the publisher and N subscribers, every subscriber also a participant with an idle uplink, as in a
group call). Then the offered load steps up (``--forward-pps``: the packets/s the node must
forward in total, split over the rooms' publishers). Each publisher sends synthetic RTP on its
audio SSRC (``--size`` bytes, paced every 10 ms), protected with its own SRTP context and written
to its nominated pair, as ``bench/sfu_path.py`` does: no encoder, no player.

The load generator must not cost what the node costs, or on a 2-core machine it measures itself:
in each room one subscriber (the *probe*) reads everything; during the window the other
subscribers' sockets are not read (their transports' reading is paused: the kernel drops what
arrives, which costs the node the same sends), and reading resumes for ``--rest`` seconds between
steps, longer than aioice's consent interval (4-6 s), so that their ICE consent stays fresh (six
checks in a row unanswered end a leg). Per step, over the window:

* ``kept_up``: packets the node forwarded (its ``forwarded_packets``, summed over the workers) /
  packets the generator sent x N. Below 1 the node is dropping (its socket buffer overflows);
* latency: the probe's kernel receive stamp (``SIOCGSTAMPNS`` right after ``recvfrom``) minus the
  publisher's stamp just before ``sendto``, matched by the RTP sequence number (the node passes it
  through; the header is not encrypted): one process, one clock, the generator's own receive
  queueing not included. The publisher sends each 10 ms tick's packets as one burst, so later
  packets of a burst queue behind earlier ones in the node: that is part of the figure;
* CPU of the node and of each worker, the generator's and everything else's (``/proc/stat``), and
  the load average at the end of the window.

Run from the repository root::

    .venv/bin/python -m bench.sfu_saturation --workers 1 --workers 2 --json
    .venv/bin/python -m bench.sfu_saturation --workers 1 --forward-pps 8000 --forward-pps 16000
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import fcntl
import json
import os
import secrets
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.sdp import SessionDescription

from bench.sfu import SIOCGSTAMPNS, TIMESPEC, facts, machine_busy_s
from bench.sfu_forward import cpu_seconds, free_port
from bench.sfu_path import _connected, _join, _subscribe
from bench.sfu_workers import family
from media.control import MediaControl

DEFAULT_STEPS = (4000, 8000, 16000, 24000, 32000, 40000, 48000, 56000, 64000, 80000)
RTCP_TYPES = range(200, 205)


@dataclass
class Room:
    name: str
    send: Any = None
    addr: Any = None
    protect: Any = None
    ssrc: int = 0
    payload_type: int = 0
    sequence: int = 0
    sent_at: list[float] = field(default_factory=lambda: [0.0] * 65536)
    transceiver: Any = None  # the publisher's
    probe: Any = None  # the probe subscriber's protocol
    quiet: list[Any] = field(default_factory=list)  # the other subscribers' transports
    latencies: list[float] = field(default_factory=list)
    recording: bool = False


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _nominated(pc: RTCPeerConnection) -> Any:
    transceiver = pc.getTransceivers()[0]
    return transceiver.receiver.transport.transport._connection._nominated[1]


def _probe(room: Room, pc: RTCPeerConnection) -> None:
    """Stamp each RTP datagram the probe subscriber receives with the kernel's receive time."""
    protocol = _nominated(pc).protocol
    received = protocol.datagram_received
    fd = protocol.transport.get_extra_info("socket").fileno()

    def stamped(data: bytes, addr: Any) -> None:
        if room.recording and len(data) > 12 and 127 < data[0] < 192 and data[1] not in RTCP_TYPES:
            sec, nsec = struct.unpack("qq", fcntl.ioctl(fd, SIOCGSTAMPNS, TIMESPEC))
            sent = room.sent_at[(data[2] << 8) | data[3]]
            if sent:
                room.latencies.append(sec + nsec * 1e-9 - sent)
            return
        received(data, addr)

    protocol.datagram_received = stamped
    room.probe = protocol


async def _open(
    control: MediaControl, room: Room, n: int, pcs: list[RTCPeerConnection]
) -> list[RTCPeerConnection]:
    await control.create_room(room.name, max_participants=n + 1)
    publisher, (transceiver, answer) = await _join(control, room.name, "pub")
    pcs.append(publisher)
    room.payload_type = SessionDescription.parse(answer).media[0].rtp.codecs[0].payloadType
    downlinks = []
    for i in range(n):
        uplink, _ = await _join(control, room.name, f"s{i}")
        pcs.append(uplink)
        downlinks.append(await _subscribe(control, room.name, f"s{i}"))
    pcs += downlinks
    room.ssrc = transceiver.sender._ssrc
    room.transceiver = transceiver  # its pair and SRTP context are known once connected
    return downlinks


def _resolve(room: Room, downlinks: list[RTCPeerConnection]) -> None:
    dtls = room.transceiver.sender.transport
    pair = dtls.transport._connection._nominated[1]
    room.send, room.addr = pair.protocol.transport.sendto, pair.remote_addr
    room.protect = dtls._tx_srtp.protect
    _probe(room, downlinks[0])
    room.quiet = [_nominated(pc).protocol.transport for pc in downlinks[1:]]


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _step(
    args: argparse.Namespace, rooms: list[Room], n: int, pps_total: float, pids: list[int],
    control: MediaControl,
) -> dict[str, Any]:  # fmt: skip
    for room in rooms:  # consent checks of the quiet subscribers get their answers
        for transport in room.quiet:
            transport.resume_reading()
    await asyncio.sleep(args.rest)
    per_room = pps_total / n / len(rooms)  # each publisher's packets/s
    payload = bytes(args.size - 12)
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    marks: dict[str, Any] = {}

    def mark() -> dict[str, Any]:
        return {
            "cpu": {pid: cpu_seconds(pid) for pid in pids}, "busy": machine_busy_s(),
            "me": cpu_seconds(os.getpid()), "at": time.monotonic(), "sent": sent,
        }  # fmt: skip

    tick = 0
    first = {room.name: room.sequence for room in rooms}  # sequence numbers go on across steps
    pack = struct.Struct("!BBHII").pack
    wall = time.time
    while True:
        elapsed = loop.time() - start
        if "a" not in marks and elapsed >= args.warmup:
            for room in rooms:
                for transport in room.quiet:
                    transport.pause_reading()
                room.latencies.clear()
                room.recording = True
            marks["a"], marks["stats_a"] = mark(), await _forwarded(control, rooms)
        if elapsed >= args.warmup + args.seconds:
            marks["b"], marks["stats_b"] = mark(), await _forwarded(control, rooms)
            stats = await control.stats()
            break
        due = int(elapsed * per_room)  # catch up after a late tick: the rate holds
        for room in rooms:
            while room.sequence < first[room.name] + due:
                seq = room.sequence & 0xFFFF
                header = pack(0x80, room.payload_type, seq, (room.sequence * 960) & 0xFFFFFFFF,
                              room.ssrc)  # fmt: skip
                packet = room.protect(header + payload)
                room.sent_at[seq] = wall()
                room.send(packet, room.addr)
                room.sequence += 1
                sent += 1
        tick += 1
        await asyncio.sleep(max(0.0, start + tick / 100 - loop.time()))
    for room in rooms:
        room.recording = False
        for transport in room.quiet:
            transport.resume_reading()
    for room in rooms:  # the next step starts its sequence numbers afresh in the sent stamps
        room.sent_at = [0.0] * 65536
    a, b = marks["a"], marks["b"]
    window = b["at"] - a["at"]
    forwarded = marks["stats_b"] - marks["stats_a"]
    sent_window = b["sent"] - a["sent"]
    cpu = {pid: b["cpu"][pid] - a["cpu"][pid] for pid in pids}
    node_cpu = sum(cpu.values())
    me = b["me"] - a["me"]
    latencies = [x for room in rooms for x in room.latencies]
    others = (b["busy"] - a["busy"] - node_cpu - me) / window
    workers = stats.get("workers") or []
    return {
        "offered_forward_pps": round(sent_window * n / window),
        "forwarded_pps": round(forwarded / window),
        "kept_up": round(forwarded / (sent_window * n), 3) if sent_window else None,
        "latency_ms_p50": _ms(_percentile(latencies, 50)),
        "latency_ms_p99": _ms(_percentile(latencies, 99)),
        "latency_ms_max": _ms(max(latencies, default=None)),
        "latency_samples": len(latencies),
        "probe_received_share": round(len(latencies) / (sent_window or 1), 3),
        "node_cpu_pct": round(100 * node_cpu / window, 1),
        "cpu_pct_by_process": [round(100 * cpu[pid] / window, 1) for pid in pids],
        "us_per_forwarded_packet": round(1e6 * node_cpu / forwarded, 2) if forwarded else None,
        "worker_pps": [w["packets_per_s"] for w in workers],
        "loadgen_cpu_pct": round(100 * me / window, 1),
        "others_cpu_pct": round(max(0.0, 100 * others), 1),
        "load_average_1m": load_average(),
        "dropped": {k: v for k, v in stats["dropped"].items() if v},
        "legs_failed": stats["legs_failed"],
        "downlinks": stats["downlinks"],
        "seconds": round(window, 1),
    }


async def _forwarded(control: MediaControl, rooms: list[Room]) -> int:
    """The rooms' forwarded packets now (room stats come from the worker; the node's own stats
    are its poll of the workers, up to a second old)."""
    counts = await asyncio.gather(*(control.room_stats(room.name) for room in rooms))
    return sum(int(stats["forwarded_packets"]) for stats in counts)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


async def run(args: argparse.Namespace, workers: int) -> list[dict[str, Any]]:
    n = args.subscribers
    port, secret = free_port(), secrets.token_urlsafe(16)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media.server", "--port", str(port), f"--secret={secret}",
        "--max-participants", str(n + 1), "--max-audio-kbps", "10000000",
        "--drain-grace-s", "0", "--workers", str(workers), "--max-rooms", "1000",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    pcs: list[RTCPeerConnection] = []
    control = MediaControl(f"http://127.0.0.1:{port}", secret)
    results = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if await control.health():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the media node did not start")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the workers' imports settle before the empty RSS
        pids = family(proc.pid)
        rss0 = rss_kib(pids)
        count = args.rooms or 2 * max(1, workers)
        rooms = [Room(f"sat-{os.urandom(3).hex()}-{r}") for r in range(count)]
        legs = []
        started = time.monotonic()
        for room in rooms:
            legs.append(await _open(control, room, n, pcs))
        await _connected(pcs, limit_s=180)
        setup_s = time.monotonic() - started
        for room, downlinks in zip(rooms, legs, strict=True):
            _resolve(room, downlinks)
        await asyncio.sleep(2.0)
        rss1 = rss_kib(pids)
        participants = count * (n + 1)
        base = {
            "workers": workers, "rooms": count, "subscribers_per_room": n, "size": args.size,
            "setup_s": round(setup_s, 1), "participants": participants,
            "rss_mib_empty": round(rss0 / 1024, 1), "rss_mib_loaded": round(rss1 / 1024, 1),
            "rss_per_participant_kib": round((rss1 - rss0) / participants),
            "rooms_per_worker": [w["rooms"] for w in (await control.stats()).get("workers", [])],
        }  # fmt: skip
        for pps in args.forward_pps or DEFAULT_STEPS:
            result = {**base, **await _step(args, rooms, n, pps, pids, control)}
            results.append(result)
            print(json.dumps(result) if args.json else show(result), flush=True)
            if result["kept_up"] is not None and result["kept_up"] < args.stop_below:
                break
        return results
    finally:
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)
        await control.close()
        if proc.returncode is None:
            proc.kill()  # no drain: nothing of this run matters any more
        await proc.wait()


def show(result: dict[str, Any]) -> str:
    return (
        f"workers={result['workers']} rooms={result['rooms']}x1->{result['subscribers_per_room']}"
        f"  offered {result['offered_forward_pps']} forwarded {result['forwarded_pps']} pps"
        f" (kept up {result['kept_up']})  latency p50/p99 {result['latency_ms_p50']}/"
        f"{result['latency_ms_p99']} ms  node CPU {result['node_cpu_pct']} %"
        f" {result['cpu_pct_by_process']}  {result['us_per_forwarded_packet']} us/pkt"
        f"  loadgen {result['loadgen_cpu_pct']} %  others {result['others_cpu_pct']} %"
        f"  load {result['load_average_1m']}  RSS/participant"
        f" {result['rss_per_participant_kib']} KiB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, action="append")
    parser.add_argument("--rooms", type=int, default=0, help="default: 2 per worker")
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--forward-pps", type=float, action="append")
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--rest", type=float, default=7.0, help="s between windows: ICE consent (every 4-6 s)"
    )
    parser.add_argument("--stop-below", type=float, default=0.9, help="kept_up ending a ramp")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from media.server import allow_loopback_ice

    allow_loopback_ice()
    info = facts()
    print(json.dumps({"facts": info}) if args.json else info, flush=True)
    for workers in args.workers or [1, 2]:
        asyncio.run(run(args, workers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
