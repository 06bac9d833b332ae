"""Simulcast side by side: our SFU against Janus 1.1.2 VideoRoom, one publisher sending three
VP8 layers by RID, N subscribers each on one layer.

The machinery is bench/sfu.py's (same load generator, same window, same CPU and packet counts;
see its docstring); what differs is the publisher and the subscribers' choice:

* the publisher is synthetic: three VP8 encodings of bench/sfu.py's clip (160x120 ~150 kbit/s,
  320x240 ~500 kbit/s and the 640x480 ~2 Mbit/s original, keyframes at the same frames) plus its
  Opus, packetised once and sent from three SSRCs with the MID and RID header extensions, as a
  browser sends simulcast. Its offer carries ``a=rid:<rid> send`` and ``a=simulcast:send``:
  lowest first for our SFU (Chromium's order), highest first for Janus (Janus reads RIDs in
  "hml" order unless told otherwise; Firefox's order). Nothing is encoded while measuring, and
  the clip loops with sequence numbers, timestamps and picture ids going on;
* subscriber i wants layer i mod 3 (low, half, full): from our SFU by ``view`` max_height
  (120, 240, none: the full layer when REMB allows), from Janus by ``configure`` with that
  stream's ``substream`` (0, 1, 2);
* every video packet a subscriber receives is traced back to the layer it was sent on (by its
  VP8 payload past the descriptor, which neither SFU changes), so each subscriber's layer is
  checked, not assumed: a comparison where one SFU forwards a different mix would be unfair.

CPU per forwarded packet = the SFU process's CPU / RTP packets at the subscribers' sockets
(audio included, as in bench/sfu.py). Rounds alternate ours and Janus; medians at the end.

Run from the repository root (Janus: ``apt-get install -y janus``)::

    .venv/bin/python -m bench.sfu_simulcast                    # N = 3 and 8, 3 rounds, table
    .venv/bin/python -m bench.sfu_simulcast --subscribers 3 --rounds 1 --seconds 3 --json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import collections
import json
import os
import statistics
import struct
from dataclasses import dataclass, field
from typing import IO, Any

import aiortc
import aiortc.rtcrtpreceiver
import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcdtlstransport import RTCDtlsTransport
from av.video.frame import PictureType

from bench.janus import INSTALL_HINT, janus_available, running_janus
from bench.sfu import (
    PROBE,
    _payload,
    callbook_node,
    facts,
    janus_subscribers,
    join_subscribers,
    measure,
    media_file,
    new_janus_room,
    prefer_codecs,
    wait_quiet,
)
from bench.sfu_forward import CACHE, _NoDecoder, free_port, new_pc
from media.server import allow_loopback_ice
from media.simulcast_sdp import RID_URI

CLIP_SECONDS = 20  # looped
FPS = 30
#: lowest first: (rid, width, height, bit rate); the top layer is bench/sfu.py's clip as it is
LAYERS = (("q", 160, 120, 150_000), ("h", 320, 240, 500_000), ("f", 640, 480, 2_000_000))
RIDS = tuple(rid for rid, *_ in LAYERS)
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID_EXT_ID = 10  # free in aiortc's offer (it uses 1-3)


# --- the clip: three layers and audio, packetised once ---


def top_file(seconds: int) -> Path:
    """bench/sfu.py's clip (VP8 + Opus): its video is the top layer."""
    _, width, height, bitrate = LAYERS[-1]
    return media_file(width, height, FPS, bitrate, seconds)


def layer_file(width: int, height: int, bitrate: int, seconds: int) -> Path:
    """The top layer's video scaled down and re-encoded, keyframes where the top has them."""
    top = top_file(seconds)
    path = CACHE / f"sfu-layer-{width}x{height}-{bitrate}-{top.stem}.webm"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.webm")
    with av.open(str(top)) as source, av.open(str(tmp), "w") as out:
        video = out.add_stream("libvpx", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = bitrate
        video.options = {"deadline": "realtime", "cpu-used": "8", "g": str(FPS * 60)}
        for frame in source.decode(video=0):
            small = frame.reformat(width=width, height=height, format="yuv420p")
            small.pts = frame.pts
            small.pict_type = PictureType.I if frame.key_frame else PictureType.NONE
            out.mux(video.encode(small))
        out.mux(video.encode(None))
    tmp.rename(path)
    return path


@dataclass
class Clip:
    """Per layer, the frames' RTP payloads (picture id 0) and 90 kHz times; Opus packets."""

    video: list[list[tuple[int, list[bytes]]]] = field(default_factory=list)
    audio: list[tuple[int, bytes]] = field(default_factory=list)
    seconds: float = 0.0
    #: hash of a VP8 payload past its descriptor -> the layer it belongs to
    layer_of: dict[int, int] = field(default_factory=dict)


def load_clip(seconds: int = CLIP_SECONDS) -> Clip:
    clip = Clip()
    top = top_file(seconds)
    files = [layer_file(w, h, b, seconds) for _, w, h, b in LAYERS[:-1]] + [top]
    for index, path in enumerate(files):
        frames = []
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.pts is None or not packet.size:
                    continue
                ts = int(packet.pts * packet.time_base * 90_000)
                payloads = Vp8Encoder._packetize(bytes(packet), 0)
                for payload in payloads:
                    clip.layer_of[hash(payload[vp8_descriptor_length(payload) :])] = index
                frames.append((ts, payloads))
        clip.video.append(sorted(frames, key=lambda f: f[0]))
    with av.open(str(top)) as container:
        for packet in container.demux(container.streams.audio[0]):
            if packet.pts is not None and packet.size:
                clip.audio.append((int(packet.pts * packet.time_base * 48_000), bytes(packet)))
    clip.seconds = len(clip.video[-1]) / FPS
    # the loop restarts after the last video frame: audio past it would repeat a timestamp
    clip.audio = [(ts, data) for ts, data in clip.audio if ts < clip.seconds * 48_000]
    return clip


def vp8_descriptor_length(payload: bytes) -> int:
    """RFC 7741 4.2: X, then I (7 or 15 bit picture id), L, T/K."""
    if not payload or not payload[0] & 0x80:
        return 1
    ext, pos = payload[1], 2
    if ext & 0x80:
        pos += 2 if len(payload) > pos and payload[pos] & 0x80 else 1
    if ext & 0x40:
        pos += 1
    if ext & 0x30:
        pos += 1
    return pos


# --- the publisher ---


@dataclass
class Offered:
    """What the publisher's packets must carry, read from its offer."""

    sdp: str
    audio_pt: int
    video_pt: int
    audio_mid: bytes
    video_mid: bytes
    mid_ext: int
    audio_ssrc: int


def simulcast_offer(sdp: str, rids: tuple[str, ...]) -> Offered:
    """aiortc's offer made a simulcast one: its video section loses its SSRCs and gains the
    RID extension, ``a=rid`` lines and ``a=simulcast:send`` in the order given."""
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    facts: dict[str, Any] = {}
    for lines in sections[1:]:
        kind = lines[0][2:].split()[0]
        facts[f"{kind}_pt"] = int(lines[0].split()[3])
        facts[f"{kind}_mid"] = next(x[6:] for x in lines if x.startswith("a=mid:")).encode()
        for line in lines:
            if line.startswith("a=extmap:") and line.split()[1] == MID_URI:
                facts["mid_ext"] = int(line[9:].split()[0])
            if kind == "audio" and line.startswith("a=ssrc:"):
                facts["audio_ssrc"] = int(line[7:].split()[0])
        if kind == "video":
            lines[:] = [x for x in lines if not x.startswith(("a=ssrc:", "a=ssrc-group:"))]
            lines.append(f"a=extmap:{RID_EXT_ID} {RID_URI}")
            lines += [f"a=rid:{rid} send" for rid in rids]
            lines.append(f"a=simulcast:send {';'.join(rids)}")
    text = "\r\n".join(line for lines in sections for line in lines) + "\r\n"
    return Offered(sdp=text, **facts)


def extensions(*elements: tuple[int, bytes]) -> bytes:
    """A one-byte-header extension block (RFC 8285)."""
    body = b"".join(bytes([(ident << 4) | (len(data) - 1)]) + data for ident, data in elements)
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def rtp(pt: int, marker: bool, seq: int, ts: int, ssrc: int, ext: bytes, payload: bytes) -> bytes:
    head = struct.pack("!BBHII", 0x90, (marker << 7) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    return head + ext + payload


async def send_clip(clip: Clip, offered: Offered, pc: RTCPeerConnection, ssrcs: list[int]) -> None:
    """Plays the clip in real time, looped, until the PeerConnection closes."""
    transport = pc.getTransceivers()[0].sender.transport
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while transport.state != "connected":
        if transport.state in ("closed", "failed") or loop.time() > deadline:
            return
        await asyncio.sleep(0.02)
    video_ext = [extensions((offered.mid_ext, offered.video_mid), (RID_EXT_ID, rid.encode()))
                 for rid in RIDS]  # fmt: skip
    audio_ext = extensions((offered.mid_ext, offered.audio_mid))
    events = sorted(
        [(ts / 90_000, 0, layer, i) for layer, frames in enumerate(clip.video)
         for i, (ts, _) in enumerate(frames)]
        + [(ts / 48_000, 1, 0, i) for i, (ts, _) in enumerate(clip.audio)]
    )  # fmt: skip
    seqs = [0] * (len(RIDS) + 1)
    picture = 0
    start, rounds = loop.time(), 0
    try:
        while True:
            offset = rounds * clip.seconds
            for at, is_audio, layer, i in events:
                if (wait := start + offset + at - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if is_audio:
                    ts, data = clip.audio[i]
                    seqs[-1] += 1
                    ts += int(offset * 48_000)
                    await transport._send_rtp(
                        rtp(offered.audio_pt, False, seqs[-1], ts, offered.audio_ssrc,
                            audio_ext, data)
                    )  # fmt: skip
                    continue
                ts, payloads = clip.video[layer][i]
                ts += int(offset * 90_000)
                picture = (picture + (layer == 0)) & 0x7FFF  # one picture id per frame time
                for n, payload in enumerate(payloads):
                    seqs[layer] += 1
                    body = payload[:2] + struct.pack("!H", 0x8000 | picture) + payload[4:]
                    last = n == len(payloads) - 1
                    await transport._send_rtp(
                        rtp(offered.video_pt, last, seqs[layer], ts, ssrcs[layer],
                            video_ext[layer], body)
                    )  # fmt: skip
            rounds += 1
    except ConnectionError:
        return


async def publish(
    clip: Clip, pcs: list[RTCPeerConnection], rids: tuple[str, ...]
) -> tuple[RTCPeerConnection, Offered]:
    pc = new_pc()
    pcs.append(pc)
    pc.addTransceiver("audio", direction="sendonly")
    pc.addTransceiver("video", direction="sendonly")
    prefer_codecs(pc)
    await pc.setLocalDescription(await pc.createOffer())
    return pc, simulcast_offer(pc.localDescription.sdp, rids)


# --- which layer each subscriber gets ---


class LayerTally:
    """Per subscriber transport, video packets received per layer during the window."""

    def __init__(self) -> None:
        self.clip: Clip | None = None
        self.counts: dict[RTCDtlsTransport, collections.Counter[int]] = {}

    def watch(self, pc: RTCPeerConnection) -> None:
        transport = pc.getTransceivers()[0].receiver.transport
        self.counts[transport] = collections.Counter()

    def install(self) -> None:
        tally = self
        handle = RTCDtlsTransport._handle_rtp_data

        async def counted(self: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
            counts = tally.counts.get(self)
            if counts is not None and PROBE.collect and tally.clip is not None:
                payload = _payload(data)
                key = hash(payload[vp8_descriptor_length(payload) :])
                counts[tally.clip.layer_of.get(key, -1)] += 1  # -1: audio (or unknown)
            await handle(self, data, arrival_time_ms=arrival_time_ms)

        RTCDtlsTransport._handle_rtp_data = counted  # type: ignore[method-assign]

    def report(self) -> list[dict[str, Any]]:
        out = []
        for i, counts in enumerate(self.counts.values()):
            video = {RIDS[k]: v for k, v in sorted(counts.items()) if k >= 0}
            total = sum(video.values())
            want = RIDS[i % len(RIDS)]
            share = video.get(want, 0) / total if total else 0.0
            out.append({"want": want, "got": video, "share": round(share, 3)})
        return out


TALLY = LayerTally()
VIEW_HEIGHT = {"q": 120, "h": 240, "f": None}


def with_layers(result: dict[str, Any]) -> dict[str, Any]:
    # bench/sfu.py matches latency by payload, and both SFUs rewrite the VP8 picture ids here:
    # only audio would match, so no latency figures rather than half ones
    for key in [k for k in result if k.startswith("latency_")] + ["unmatched"]:
        result.pop(key, None)
    layers = TALLY.report()
    result["layers"] = layers
    result["layers_ok"] = bool(layers) and all(x["share"] >= 0.95 for x in layers)
    return result


# --- scenarios ---


async def run_callbook(
    n: int, clip: Clip, seconds: float, warmup: float, log: IO[bytes]
) -> dict[str, Any]:
    senders: list[asyncio.Task[None]] = []
    async with callbook_node(n, log) as (proc, control):

        async def setup(pcs: list[RTCPeerConnection]) -> None:
            await control.create_room("bench", max_participants=n + 1)
            pc, offered = await publish(clip, pcs, RIDS)  # lowest first, as Chromium
            answer = await control.join("bench", "pub", offered.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            senders.append(asyncio.create_task(send_clip(clip, offered, pc, [11, 22, 33])))

            async def view(participant: str) -> None:  # before subscribing: the first
                want = RIDS[int(participant[3:]) % len(RIDS)]  # layer is the wanted one
                await control.set_view("bench", participant, "pub", "camera", VIEW_HEIGHT[want])

            for pc in await join_subscribers(control, n, "pub", pcs, view):
                TALLY.watch(pc)

        async def stats() -> dict[str, Any]:
            return await control.stats()

        try:
            return with_layers(
                await measure("callbook", n, proc.pid, setup, seconds, warmup, stats)
            )
        finally:
            for task in senders:
                task.cancel()


async def run_janus(
    n: int, clip: Clip, seconds: float, warmup: float, log: IO[bytes]
) -> dict[str, Any]:
    senders: list[asyncio.Task[None]] = []
    async with running_janus(log, free_port()) as (pid, room):

        async def setup(pcs: list[RTCPeerConnection]) -> None:
            room_id = await new_janus_room(room)
            pc, offered = await publish(clip, pcs, RIDS[::-1])  # highest first: Janus's "hml"
            handle = await room.attach()
            feed, answer = await room.publish(handle, room_id, offered.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            senders.append(asyncio.create_task(send_clip(clip, offered, pc, [11, 22, 33])))
            for i, (handle, sub) in enumerate(await janus_subscribers(room, room_id, feed, n, pcs)):
                TALLY.watch(sub)
                mid = video_mid(sub.remoteDescription.sdp)
                await room.choose_substream(handle, mid, i % len(RIDS))

        try:
            return with_layers(await measure("janus", n, pid, setup, seconds, warmup))
        finally:
            for task in senders:
                task.cancel()


def video_mid(sdp: str) -> str:
    video = sdp.split("m=video", 1)[1]
    return next(line[6:].strip() for line in video.splitlines() if line.startswith("a=mid:"))


# --- main ---


def show(r: dict[str, Any], round_: int) -> str:
    layers = " ".join(
        f"{x['want']}:{'/'.join(f'{k}{v}' for k, v in x['got'].items()) or '0'}"
        for x in r["layers"]
    )
    return (
        f"round {round_} {r['sfu']:>8} 1->{r['subscribers']:<2} "
        f"{r['us_per_forwarded_packet'] or '-':>7} us/pkt  "
        f"{r['forwarded_pps']:>7} pkt/s (pub {r['publisher_pps']})  "
        f"SFU {r['sfu_cpu_pct']:>5} %  RSS {r['rss_mib']:>6} MiB  "
        f"others {r['others_cpu_pct']} %  rcvbuf drops {r['udp_rcvbuf_drops']}  "
        f"SFU drops {r.get('sfu_dropped', '-')}  layers {'ok' if r['layers_ok'] else 'WRONG'} "
        f"[{layers}]"
    )


def summary(results: list[dict[str, Any]], ns: list[int]) -> list[dict[str, Any]]:
    """Per N and SFU the median CPU per forwarded packet; per N the median of the rounds'
    ratios (each round's ours / Janus, measured back to back)."""
    out = []
    for n in ns:
        per: dict[str, dict[int, float]] = collections.defaultdict(dict)
        for r in results:
            if r["subscribers"] == n and r["us_per_forwarded_packet"]:
                per[r["sfu"]][r["round"]] = r["us_per_forwarded_packet"]
        line: dict[str, Any] = {"subscribers": n}
        for sfu, values in per.items():
            line[f"{sfu}_us_median"] = round(statistics.median(values.values()), 2)
            line[f"{sfu}_rounds"] = len(values)
        ratios = [
            per["callbook"][k] / per["janus"][k] for k in per["callbook"] if k in per["janus"]
        ]
        if ratios:
            line["ratio_median"] = round(statistics.median(ratios), 2)
            line["ratios"] = [round(x, 2) for x in ratios]
        line["layers_ok"] = all(r["layers_ok"] for r in results if r["subscribers"] == n)
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, action="append")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=6.0)  # > one GOP (4 s): a layer
    # starts at its keyframe, and pre-encoded media cannot make one on request
    parser.add_argument("--only", choices=["callbook", "janus"])
    parser.add_argument(
        "--clip-seconds",
        type=int,
        default=CLIP_SECONDS,
        help="length of the looped clip to encode (once, then cached): shorter for a smoke run",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--quiet-pct",
        type=float,
        default=15.0,
        help="before each scenario wait until other processes use less CPU",
    )
    parser.add_argument("--quiet-wait", type=float, default=30.0, help="... but at most this")
    args = parser.parse_args(argv)  # fmt: skip
    sfus = [s for s in ("callbook", "janus") if args.only in (None, s)]
    if "janus" in sfus and not janus_available():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    clip = load_clip(args.clip_seconds)
    TALLY.clip = clip
    allow_loopback_ice()
    aiortc.rtcrtpreceiver.get_decoder = lambda codec: _NoDecoder()  # type: ignore[assignment]
    PROBE.install()
    TALLY.install()
    info = {**facts(), "loadavg_start": os.getloadavg()}
    print(json.dumps({"facts": info}) if args.json else info, flush=True)
    ns = args.subscribers or [3, 8]
    results = []
    for round_ in range(1, args.rounds + 1):
        for n in ns:
            for sfu in sfus:
                wait_quiet(args.quiet_pct, args.quiet_wait)
                TALLY.counts.clear()
                run = run_callbook if sfu == "callbook" else run_janus
                with (CACHE / f"sfu-simulcast-{sfu}-{n}.log").open("wb") as log:
                    result = asyncio.run(run(n, clip, args.seconds, args.warmup, log))
                result["round"] = round_
                result["loadavg"] = os.getloadavg()
                results.append(result)
                print(json.dumps(result) if args.json else show(result, round_), flush=True)
    for line in summary(results, ns):
        line["loadavg_end"] = os.getloadavg()
        print(json.dumps({"summary": line}) if args.json else line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
