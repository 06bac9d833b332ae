"""SFU side by side: Callbook's SFU (media/) against Janus 1.1.2 VideoRoom, 1 publisher -> N.

The same load generator drives both, in one process: an aiortc publisher sending pre-encoded
VP8 + Opus (``MediaPlayer(decode=False)`` over a WebM made once, audio and video interleaved, so
nothing is encoded) and N aiortc subscribers whose decoder is a no-op (nothing is decoded).
Scenarios run one after another, each with a fresh SFU process:

* ``direct``: publisher -> 1 subscriber over loopback, no SFU: the latency baseline;
* for each N: ``callbook`` (``python -m media.server``) and ``janus`` (``bench.janus``).

Per scenario, over a fixed window after a warm-up:

* SFU CPU: ``utime + stime`` of the SFU process (all threads) from ``/proc/<pid>/stat``;
* forwarded packets: RTP datagrams arriving at the subscribers' sockets (same count for both
  SFUs); CPU per forwarded packet = SFU CPU / that count;
* RSS: the SFU's ``VmRSS`` at the end of the window;
* latency: the publisher stamps every RTP packet just before it is handed to ``sendto`` (keyed
  by its payload bytes, which neither SFU changes); for every RTP datagram a subscriber socket
  receives, the kernel's receive timestamp is read (``SIOCGSTAMPNS`` right after asyncio's
  ``recvfrom``; keyed by the clear-text SSRC and sequence number) and matched to the send stamp
  once the packet is decrypted. One process, one clock (``CLOCK_REALTIME``, which the kernel
  stamps with), and the load generator's own queueing on the receive side is not counted.
  Added latency = SFU percentile - the ``direct`` baseline's percentile;
* the load generator's own CPU and the CPU of everything else on the machine (``/proc/stat``),
  so a saturated generator or a busy neighbour shows.

Run from the repository root (Janus: ``apt-get install -y janus``)::

    .venv/bin/python -m bench.sfu                        # N = 3 and 8, 20 s each, table
    .venv/bin/python -m bench.sfu --subscribers 3 --subscribers 8 --subscribers 16 --json
    .venv/bin/python -m bench.sfu --py-spy bench/results/sfu-pyspy-1to8.txt   # + a profiled run

Everything stays on the machine: our SFU on 127.0.0.1, Janus's HTTP API on 127.0.0.1 and its
ICE on the machine's own local address (Janus gathers nothing on lo; that address routes via lo).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import array
import asyncio
import collections
import contextlib
import fcntl
import fractions
import json
import math
import os
import platform
import secrets
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any

import aioice.ice
import aiortc
import aiortc.rtcrtpreceiver
import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.rtcdtlstransport import RTCDtlsTransport

from bench.janus import INSTALL_HINT, JanusVideoRoom, janus_available, running_janus
from bench.sfu_forward import CACHE, _NoDecoder, cpu_seconds, free_port, new_pc
from media.control import MediaControl
from media.server import allow_loopback_ice
from signaling.sdk.e2ee.framecrypto import FrameCrypto
from signaling.sdk.e2ee.keyschedule import KeySchedule

now = time.monotonic
MEDIA_SECONDS = 90
wall = time.time  # CLOCK_REALTIME: the clock of the kernel's receive timestamps
SIOCGSTAMPNS = 0x8907  # linux/sockios.h: struct timespec of the last packet a socket received
TIMESPEC = bytes(16)
SO_RCVBUFFORCE = 33  # the load generator's sockets get RCVBUF bytes: a subscriber socket that
RCVBUF = 4 << 20  # overflows while the generator is descheduled would count as the SFU's loss


# --- media ---


def media_file(width: int, height: int, fps: int, bitrate: int, seconds: int) -> Path:
    """VP8 + Opus WebM, made once, with audio and video interleaved in time.

    The same content as ``bench.sfu_forward.media_file`` (moving gradient plus noise, 440 Hz
    tone), but frames are encoded in presentation order: a file with all video first and all
    audio at the end makes ``MediaPlayer`` send no audio until the video has played out.
    """
    path = CACHE / f"sfu-av-{width}x{height}-{fps}-{bitrate}-{seconds}.webm"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.webm")
    samples, size = 960, width * height
    noise_mask = int.from_bytes(b"\x1f" * size, "big")
    chroma = b"\x80" * (size // 4)
    with av.open(str(tmp), "w") as container:
        video = container.add_stream("libvpx", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = bitrate
        video.options = {"deadline": "realtime", "cpu-used": "8", "g": str(fps * 4)}
        audio = container.add_stream("libopus", rate=48_000)
        audio.layout = "mono"
        tone = [int(3000 * math.sin(2 * math.pi * 440 * n / 48_000)) for n in range(48_000)]
        frames, chunks = seconds * fps, seconds * 50
        i = j = 0
        while i < frames or j < chunks:
            if j >= chunks or (i < frames and i / fps <= j / 50):
                row = bytes((x + i * 4) % 256 for x in range(width))
                base = int.from_bytes(row * height, "big")
                noise = int.from_bytes(os.urandom(size), "big") & noise_mask
                frame = av.VideoFrame(width=width, height=height, format="yuv420p")
                frame.planes[0].update((base ^ noise).to_bytes(size, "big"))
                frame.planes[1].update(chroma)
                frame.planes[2].update(chroma)
                frame.pts = i
                container.mux(video.encode(frame))
                i += 1
            else:
                start = (j * samples) % 48_000
                pcm = array.array("h", (tone[(start + n) % 48_000] for n in range(samples)))
                chunk = av.AudioFrame(format="s16", layout="mono", samples=samples)
                chunk.planes[0].update(pcm.tobytes())
                chunk.sample_rate, chunk.pts = 48_000, j * samples
                chunk.time_base = fractions.Fraction(1, 48_000)
                container.mux(audio.encode(chunk))
                j += 1
        for stream in (video, audio):
            container.mux(stream.encode(None))
    tmp.rename(path)
    return path


# --- latency probe ---


def _payload(packet: bytes) -> bytes:
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")
    return packet[offset:]


def _is_rtp(data: bytes) -> bool:
    return len(data) >= 12 and 128 <= data[0] < 192 and not 192 <= data[1] <= 223


class Probe:
    """Send and receive stamps of RTP packets inside the load generator (one clock)."""

    KEEP = 5.0  # seconds a stamp is kept; a payload seen twice within it is ambiguous

    def __init__(self) -> None:
        self.sent: dict[int, float] = {}  # hash(payload) -> send time (negative: ambiguous)
        self.arrived: dict[tuple[int, int], float] = {}  # (ssrc, seq) -> socket arrival time
        self.last_sendto = 0.0
        self.received = 0  # RTP datagrams at the subscribers' sockets
        self.by_pt: collections.Counter[int] = collections.Counter()  # ... by payload type
        self.sent_packets = 0  # RTP packets the publisher sent
        self.samples: list[float] = []
        self.unmatched = 0
        self.collect = False

    def prune(self) -> None:
        horizon = wall() - self.KEEP
        self.sent = {k: t for k, t in self.sent.items() if abs(t) > horizon}
        self.arrived = {k: t for k, t in self.arrived.items() if t > horizon}

    def install(self) -> None:
        probe = self
        send_data = aioice.ice.StunProtocol.send_data
        datagram_received = aioice.ice.StunProtocol.datagram_received
        send_rtp = RTCDtlsTransport._send_rtp
        handle_rtp = RTCDtlsTransport._handle_rtp_data

        async def send_data_stamped(self: Any, data: bytes, addr: tuple[str, int]) -> None:
            probe.last_sendto = wall()
            await send_data(self, data, addr)

        def datagram_received_stamped(self: Any, data: bytes, addr: Any) -> None:
            if _is_rtp(data):
                probe.received += 1
                probe.by_pt[data[1] & 0x7F] += 1
                # asyncio calls this right after recvfrom(): the socket's last-packet stamp is
                # this datagram's kernel receive time, free of the load generator's queueing
                fd = self.__dict__.get("_probe_fd")
                if fd is None:
                    sock = self.transport.get_extra_info("socket")
                    fd = self._probe_fd = sock.fileno()
                    with contextlib.suppress(OSError):  # root only; else rmem_max caps it
                        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
                sec, nsec = struct.unpack("qq", fcntl.ioctl(fd, SIOCGSTAMPNS, TIMESPEC))
                key = (int.from_bytes(data[8:12], "big"), (data[2] << 8) | data[3])
                probe.arrived[key] = sec + nsec * 1e-9
            datagram_received(self, data, addr)

        async def send_rtp_stamped(self: RTCDtlsTransport, data: bytes) -> None:
            if not _is_rtp(data):
                await send_rtp(self, data)
                return
            key = hash(_payload(data))
            probe.sent_packets += 1
            await send_rtp(self, data)  # protect + sendto run without suspending
            t = probe.last_sendto
            previous = probe.sent.get(key)
            probe.sent[key] = -t if previous is not None and t - abs(previous) < probe.KEEP else t

        async def handle_rtp_stamped(
            self: RTCDtlsTransport, data: bytes, arrival_time_ms: int
        ) -> None:
            arrived = probe.arrived.pop(
                (int.from_bytes(data[8:12], "big"), (data[2] << 8) | data[3]), None
            )
            sent = probe.sent.get(hash(_payload(data)))
            if probe.collect:
                if arrived is not None and sent is not None and sent > 0:
                    probe.samples.append(arrived - sent)
                else:
                    probe.unmatched += 1
            await handle_rtp(self, data, arrival_time_ms=arrival_time_ms)

        aioice.ice.StunProtocol.send_data = send_data_stamped  # type: ignore[method-assign]
        aioice.ice.StunProtocol.datagram_received = datagram_received_stamped  # type: ignore[method-assign]
        RTCDtlsTransport._send_rtp = send_rtp_stamped  # type: ignore[method-assign]
        RTCDtlsTransport._handle_rtp_data = handle_rtp_stamped  # type: ignore[method-assign]


PROBE = Probe()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- process facts ---


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def udp_rcvbuf_errors() -> int:
    """Datagrams the kernel dropped machine-wide because a socket's receive buffer was full."""
    lines = [
        x.split() for x in Path("/proc/net/snmp").read_text().splitlines() if x.startswith("Udp:")
    ]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle, since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# --- the shared client side ---


def prefer_codecs(pc: RTCPeerConnection) -> None:
    for transceiver in pc.getTransceivers():
        wanted = "audio/opus" if transceiver.kind == "audio" else "video/vp8"
        codecs = RTCRtpSender.getCapabilities(transceiver.kind).codecs
        transceiver.setCodecPreferences(
            [c for c in codecs if c.mimeType.lower() in (wanted, "video/rtx")]
        )


async def publisher_pc(
    path: Path, pcs: list[RTCPeerConnection], encrypt: bool = False
) -> RTCPeerConnection:
    """``encrypt``: every frame SFrame-encrypted as the SDK sends it (docs/e2ee-sdk.md)."""
    player = MediaPlayer(str(path), decode=False, loop=True)
    pc = new_pc()
    pcs.append(pc)
    crypto = FrameCrypto(KeySchedule("publisher"), time.monotonic, lambda _effects: None)
    crypto.schedule.membership(["publisher"], 0.0)
    for track in (player.audio, player.video):
        transceiver = pc.addTransceiver(track, direction="sendonly")
        if encrypt:
            crypto.protect_sender(transceiver.sender)
    prefer_codecs(pc)
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def answer_pc(offer: str, pcs: list[RTCPeerConnection]) -> RTCPeerConnection:
    pc = new_pc()
    pcs.append(pc)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    return pc


Setup = Callable[[list[RTCPeerConnection]], Awaitable[None]]


async def measure(
    sfu: str, n: int, pid: int | None, setup: Setup, seconds: float, warmup: float,
    extra: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    during: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    pcs: list[RTCPeerConnection] = []
    try:
        await setup(pcs)
        await asyncio.sleep(warmup)
        PROBE.prune()
        PROBE.samples, PROBE.unmatched = [], 0
        before = await extra() if extra else {}
        me0, busy0 = cpu_seconds(os.getpid()), machine_busy_s()
        sfu0 = cpu_seconds(pid) if pid else 0.0
        received0, t0 = PROBE.received, now()
        sent0, by_pt0 = PROBE.sent_packets, PROBE.by_pt.copy()
        drops0 = udp_rcvbuf_errors()
        PROBE.collect = True
        background = asyncio.create_task(during()) if during else None
        end = t0 + seconds
        while (left := end - now()) > 0:
            await asyncio.sleep(min(1.0, left))
            PROBE.prune()
        PROBE.collect = False
        received, elapsed = PROBE.received - received0, now() - t0
        sent, by_pt = PROBE.sent_packets - sent0, PROBE.by_pt - by_pt0
        drops = udp_rcvbuf_errors() - drops0
        sfu_cpu = (cpu_seconds(pid) - sfu0) if pid else 0.0
        me = cpu_seconds(os.getpid()) - me0
        others = machine_busy_s() - busy0 - sfu_cpu - me
        after = await extra() if extra else {}
        rss = rss_mib(pid) if pid else None
        if background is not None:
            await background
        samples = [1e3 * s for s in PROBE.samples]  # ms
        result: dict[str, Any] = {
            "sfu": sfu,
            "subscribers": n,
            "seconds": round(elapsed, 2),
            "sfu_cpu_pct": round(100 * sfu_cpu / elapsed, 1),
            "publisher_pps": round(sent / elapsed, 1),
            "forwarded_pps": round(received / elapsed, 1),
            "forwarded_pps_by_payload_type": {
                str(pt): round(c / elapsed, 1) for pt, c in sorted(by_pt.items())
            },
            "us_per_forwarded_packet": round(1e6 * sfu_cpu / received, 2)
            if pid and received
            else None,
            "rss_mib": round(rss, 1) if rss is not None else None,
            "latency_ms_p50": _r(percentile(samples, 0.50)),
            "latency_ms_p99": _r(percentile(samples, 0.99)),
            "latency_ms_max": _r(max(samples) if samples else None),
            "latency_samples": len(samples),
            "unmatched": PROBE.unmatched,
            "udp_rcvbuf_drops": drops,
            "loadgen_cpu_pct": round(100 * me / elapsed, 1),
            "others_cpu_pct": round(max(0.0, 100 * others / elapsed), 1),
        }
        if before and after:
            result["sfu_counted_forwarded"] = (
                after["forwarded_packets"] - before["forwarded_packets"]
            )
            result["sfu_dropped"] = after["dropped"]
        return result
    finally:
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)


def _r(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


# --- scenarios ---


async def run_direct(
    path: Path, seconds: float, warmup: float, encrypt: bool = False
) -> dict[str, Any]:
    async def setup(pcs: list[RTCPeerConnection]) -> None:
        publisher = await publisher_pc(path, pcs, encrypt)
        subscriber = await answer_pc(publisher.localDescription.sdp, pcs)
        await publisher.setRemoteDescription(subscriber.localDescription)

    return await measure("direct", 1, None, setup, seconds, warmup)


@contextlib.asynccontextmanager
async def callbook_node(
    n: int, log: IO[bytes]
) -> AsyncIterator[tuple[asyncio.subprocess.Process, MediaControl]]:
    """Our SFU as its own process, healthy, for one publisher and ``n`` subscribers."""
    port, secret = free_port(), secrets.token_urlsafe(16)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media.server", "--port", str(port), f"--secret={secret}",
        # Stopped when measured: a drain would keep its rooms 40 s for nobody.
        "--drain-grace-s", "0", "--max-participants", str(n + 1),
        # The room in the node process, as Janus's in its one process: CPU, RSS and py-spy
        # read this pid (the default, a worker per core, would forward in a child process).
        "--workers", "0",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    control = MediaControl(f"http://127.0.0.1:{port}", secret)
    try:
        deadline = now() + 20
        while True:
            try:
                if await control.health():
                    break
            except OSError:
                if now() > deadline or proc.returncode is not None:
                    raise
            await asyncio.sleep(0.05)
        yield proc, control
    finally:
        await control.close()
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def join_subscribers(
    control: MediaControl,
    n: int,
    publisher: str,
    pcs: list[RTCPeerConnection],
    joined: Callable[[str], Awaitable[None]] | None = None,
) -> list[RTCPeerConnection]:
    """``n`` subscribers of ``publisher`` in room "bench", each a participant with an uplink
    that never sends; returns their receiving PeerConnections. ``joined(participant)`` runs
    between a subscriber's join and its subscription."""
    received = []
    for i in range(n):
        idle = new_pc()
        pcs.append(idle)
        idle.addTransceiver("audio", direction="sendonly")
        await idle.setLocalDescription(await idle.createOffer())
        await control.join("bench", f"sub{i}", idle.localDescription.sdp)
        if joined is not None:
            await joined(f"sub{i}")
        sub_id, offer = await control.subscribe("bench", f"sub{i}", publisher)
        assert offer is not None
        pc = await answer_pc(offer, pcs)
        await control.answer("bench", f"sub{i}", sub_id, pc.localDescription.sdp)
        received.append(pc)
    return received


async def run_callbook(
    n: int,
    path: Path,
    seconds: float,
    warmup: float,
    log: IO[bytes],
    py_spy: Path | None = None,
    encrypt: bool = False,
) -> dict[str, Any]:
    async with callbook_node(n, log) as (proc, control):

        async def setup(pcs: list[RTCPeerConnection]) -> None:
            await control.create_room("bench", max_participants=n + 1)
            publisher = await publisher_pc(path, pcs, encrypt)
            answer = await control.join("bench", "pub", publisher.localDescription.sdp)
            await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            await join_subscribers(control, n, "pub", pcs)

        async def stats() -> dict[str, Any]:
            return await control.stats()

        during = None
        if py_spy is not None:

            async def during() -> None:
                await record_py_spy(proc.pid, seconds - 1, py_spy)

        result = await measure("callbook", n, proc.pid, setup, seconds, warmup, stats, during)
        if py_spy is not None:
            result["py_spy"] = str(py_spy)
        return result


async def run_janus(
    n: int, path: Path, seconds: float, warmup: float, log: IO[bytes], encrypt: bool = False
) -> dict[str, Any]:
    async with running_janus(log, free_port()) as (pid, room):

        async def setup(pcs: list[RTCPeerConnection]) -> None:
            room_id = await new_janus_room(room)
            publisher = await publisher_pc(path, pcs, encrypt)
            handle = await room.attach()
            feed, answer = await room.publish(handle, room_id, publisher.localDescription.sdp)
            await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            await janus_subscribers(room, room_id, feed, n, pcs)

        return await measure("janus", n, pid, setup, seconds, warmup)


async def new_janus_room(room: JanusVideoRoom) -> int:
    admin = await room.attach()
    room_id = secrets.randbelow(10**9) + 1
    await room.create_room(admin, room_id)
    return room_id


async def janus_subscribers(
    room: JanusVideoRoom, room_id: int, feed: int, n: int, pcs: list[RTCPeerConnection]
) -> list[tuple[int, RTCPeerConnection]]:
    """``n`` subscribers of ``feed``: (their Janus handle, their PeerConnection)."""
    out = []
    for _ in range(n):
        handle = await room.attach()
        offer = await room.subscribe(handle, room_id, feed)
        pc = await answer_pc(offer, pcs)
        await room.start(handle, pc.localDescription.sdp)
        out.append((handle, pc))
    return out


# --- profile ---


#: ``--py-spy-native``: py-spy also samples C frames (uvloop, the kernel entry, pylibsrtp).
PY_SPY_NATIVE: list[str] = []


async def record_py_spy(pid: int, seconds: float, out: Path) -> None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        exe, "record", "--pid", str(pid), "--rate", "200", "--duration", str(int(seconds)),
        "--format", "raw", "--output", str(out), *PY_SPY_NATIVE,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await proc.wait()


def summarize_py_spy(raw: Path, top: int = 15) -> str:
    """Inclusive and self shares of frames from py-spy's folded ``--format raw`` output."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if "(threading.py:" in frames[-1]:  # aiortc's idle decoder threads waiting on a queue
            continue
        weight = int(count)
        total += weight
        for frame in set(frames):
            inclusive[frame] += weight
        own[frames[-1]] += weight
    if not total:
        return "(no samples)"
    lines = [f"{total} samples (idle worker threads left out)", "", "inclusive:"]
    lines += [f"  {100 * c / total:5.1f} %  {f}" for f, c in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {100 * c / total:5.1f} %  {f}" for f, c in own.most_common(top)]
    return "\n".join(lines)


# --- main ---


def facts() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    janus_version = ""
    if janus_available():
        janus_version = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "janus"], capture_output=True, text=True
        ).stdout.strip()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "commit": commit, "cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
        "python": platform.python_version(), "aiortc": aiortc.__version__, "janus": janus_version,
    }  # fmt: skip


def show(result: dict[str, Any]) -> str:
    return (
        f"{result['sfu']:>8} 1->{result['subscribers']:<2} "
        f"{result['us_per_forwarded_packet'] or '-':>7} us/pkt  "
        f"{result['forwarded_pps']:>8} pkt/s (pub {result['publisher_pps']})  "
        f"SFU {result['sfu_cpu_pct']:>5} %  "
        f"RSS {result['rss_mib'] or '-':>6} MiB  "
        f"latency p50 {result['latency_ms_p50']} / p99 {result['latency_ms_p99']} ms "
        f"(added {result.get('added_ms_p50')} / {result.get('added_ms_p99')})  "
        f"loadgen {result['loadgen_cpu_pct']} %  others {result['others_cpu_pct']} %  "
        f"rcvbuf drops {result['udp_rcvbuf_drops']}"
    )


def wait_quiet(limit_pct: float, max_wait: float) -> float:
    """Wait (up to max_wait s) until the machine, minus this process, is below limit_pct."""
    start = now()
    while True:
        busy0, me0 = machine_busy_s(), cpu_seconds(os.getpid())
        time.sleep(1.0)
        others = 100 * (machine_busy_s() - busy0 - (cpu_seconds(os.getpid()) - me0))
        if others < limit_pct or now() - start > max_wait:
            return others


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, action="append")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)  # > one GOP (4 s): a new leg of
    # our SFU waits for the next keyframe, and pre-encoded media cannot make one on request
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=2_000_000)
    parser.add_argument("--only", choices=["callbook", "janus"])
    parser.add_argument("--py-spy", type=Path, help="also profile our SFU (py-spy raw output)")
    parser.add_argument("--py-spy-subscribers", type=int, help="N of the profiled run (largest)")
    parser.add_argument("--py-spy-native", action="store_true", help="py-spy --native")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--encrypted", action="store_true", help="the publisher sends SFrame-encrypted frames"
    )
    parser.add_argument(
        "--quiet-pct",
        type=float,
        default=15.0,
        help="before each scenario wait until other processes use less CPU",
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="repeat a scenario whose window others disturbed; keep the quietest",
    )
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="... but at most this")
    args = parser.parse_args(argv)
    if args.warmup + args.seconds + 30 > MEDIA_SECONDS:
        parser.error(f"warm-up + window must stay under {MEDIA_SECONDS - 30} s (media length)")
    if args.only != "callbook" and not janus_available():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    width, height = map(int, args.size.split("x"))
    # Longer than any scenario: after a loop aiortc's MediaPlayer stops throttling (its start
    # time is not reset when it seeks back), and the publisher would blast the file out.
    path = media_file(width, height, args.fps, args.bitrate, MEDIA_SECONDS)
    allow_loopback_ice()
    aiortc.rtcrtpreceiver.get_decoder = lambda codec: _NoDecoder()  # type: ignore[assignment]
    PROBE.install()
    info = facts()
    info["encrypted"] = args.encrypted
    if args.json:
        print(json.dumps({"facts": info}), flush=True)
    else:
        print(" ".join(f"{k}={v}" for k, v in info.items()), flush=True)

    def emit(result: dict[str, Any]) -> None:
        print(json.dumps(result) if args.json else show(result), flush=True)

    def quiet() -> None:
        others = wait_quiet(args.quiet_pct, args.quiet_wait)
        if others >= args.quiet_pct:
            print(f"WARNING: other processes use {others:.0f} % of a core", file=sys.stderr)

    baseline: dict[str, Any] = {}
    for attempt in range(1, args.attempts + 1):
        quiet()
        this = asyncio.run(run_direct(path, args.seconds, args.warmup, args.encrypted))
        this["attempt"] = attempt
        if not baseline or this["others_cpu_pct"] < baseline["others_cpu_pct"]:
            baseline = this
        if this["others_cpu_pct"] < args.quiet_pct:
            break
    emit(baseline)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    ns = args.subscribers or [3, 8]
    for n in ns:
        for sfu in ("callbook", "janus"):
            if args.only and sfu != args.only:
                continue
            result = {}
            for attempt in range(1, args.attempts + 1):  # a run disturbed by others is repeated
                quiet()
                with (CACHE / f"sfu-{sfu}-{n}.log").open("wb") as log:
                    if sfu == "callbook":
                        run = run_callbook(
                            n, path, args.seconds, args.warmup, log, encrypt=args.encrypted
                        )
                    else:
                        run = run_janus(n, path, args.seconds, args.warmup, log, args.encrypted)
                    this = asyncio.run(run)
                this["attempt"] = attempt
                if not result or this["others_cpu_pct"] < result["others_cpu_pct"]:
                    result = this
                if this["others_cpu_pct"] < args.quiet_pct:
                    break
            for q in ("p50", "p99"):
                if (
                    result[f"latency_ms_{q}"] is not None
                    and baseline[f"latency_ms_{q}"] is not None
                ):
                    result[f"added_ms_{q}"] = round(
                        result[f"latency_ms_{q}"] - baseline[f"latency_ms_{q}"], 3
                    )
            results[(sfu, n)] = result
            emit(result)
    for n in ns:
        ours, theirs = results.get(("callbook", n)), results.get(("janus", n))
        if (
            ours
            and theirs
            and ours["us_per_forwarded_packet"]
            and theirs["us_per_forwarded_packet"]
        ):
            ratio = ours["us_per_forwarded_packet"] / theirs["us_per_forwarded_packet"]
            line = {"ratio": "callbook/janus us per forwarded packet", "subscribers": n,
                    "value": round(ratio, 2)}  # fmt: skip
            print(
                json.dumps(line) if args.json else f"ratio ours/Janus 1->{n}: {ratio:.2f}",
                flush=True,
            )
    if args.py_spy:
        if args.py_spy_native:
            PY_SPY_NATIVE.append("--native")
        n = args.py_spy_subscribers or max(ns)
        quiet()
        with (CACHE / f"sfu-callbook-{n}-pyspy.log").open("wb") as log:
            result = asyncio.run(
                run_callbook(
                    n,
                    path,
                    args.seconds,
                    args.warmup,
                    log,
                    py_spy=args.py_spy,
                    encrypt=args.encrypted,
                )
            )
        result["profiled"] = True
        emit(result)
        summary = summarize_py_spy(args.py_spy)
        args.py_spy.with_suffix(".summary.txt").write_text(summary + "\n")
        if not args.json:
            print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
