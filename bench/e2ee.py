"""End-to-end encryption in the SDK: what it costs per frame, and how fast a late joiner sees.

1. Frame cost: SFrame encryption and decryption (signaling/sdk/e2ee/sframe.py) per frame, in
   µs, through the SDK's seam (``FrameCrypto.encrypt`` / ``decrypt``: key lookup, CTR, prefix,
   AES-128-GCM), for a VP8 keyframe and delta frame of a 640x480 ~2 Mbit/s stream, the 320x240
   bots' frames, and an Opus packet at aiortc's 96 kbit/s. Median of ``--rounds`` rounds.
2. Late joiner (``--late-joiner``): ``callbook serve`` (embedded Valkey and SFU) on a free
   loopback port; ``--participants - 1`` aiortc bots in an encrypted group call with video; once
   they decode each other one more bot answers, and the time from its ``joined`` to its first
   decoded video frame and audio packet from each other participant is measured (polled every
   5 ms). The joiner needs every sender's fresh key and, for video, a keyframe: the SFU asks
   publishers for one when a downlink connects, and the joiner's receiver asks again (a PLI)
   when a key it was missing arrives. ``--mode both`` alternates rounds between one
   connection per participant (``bundle``, the SDK's default, protocol 11.15.2) and the old
   mode (a connection per publisher), so both are measured in one run on the same load.

Run from the repository root::

    .venv/bin/python -m bench.e2ee                                  # frame costs
    .venv/bin/python -m bench.e2ee --late-joiner --participants 3 --rounds 3
    .venv/bin/python -m bench.e2ee --late-joiner --participants 4 --rounds 6 --mode both
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from typing import Any

from bench.directory import free_port, running_server, wait_ready
from signaling.sdk.client import Client
from signaling.sdk.e2ee.framecrypto import FrameCrypto
from signaling.sdk.e2ee.keyschedule import KeySchedule, SendKeys
from signaling.sdk.softphone import Softphone

#: (name, codec, size in bytes, first byte): a VP8 keyframe has bit 0 of its first byte clear.
FRAMES = [
    ("vp8 keyframe 640x480", "vp8", 40_000, 0x10),
    ("vp8 delta 640x480", "vp8", 8_000, 0x31),
    ("vp8 keyframe 320x240 (bots)", "vp8", 6_000, 0x10),
    ("vp8 delta 320x240 (bots)", "vp8", 1_200, 0x31),
    ("opus 20 ms at 96 kbit/s", "opus", 240, 0x78),
]


def _pair() -> tuple[FrameCrypto, FrameCrypto]:
    sender = FrameCrypto(KeySchedule("a"), time.monotonic, lambda _e: None)
    receiver = FrameCrypto(KeySchedule("b"), time.monotonic, lambda _e: None)
    (keys,) = sender.schedule.membership(["a", "b"], 0.0)
    assert isinstance(keys, SendKeys)
    receiver.schedule.membership(["a", "b"], 0.0)
    receiver.schedule.key_received("a", keys.kid, keys.base_key, 0.0)
    return sender, receiver


def frame_costs(rounds: int, per_round: int) -> list[dict[str, Any]]:
    results = []
    for name, codec, size, first in FRAMES:
        frame = bytes([first]) + os.urandom(size - 1)
        enc_us, dec_us = [], []
        for _ in range(rounds):
            sender, receiver = _pair()
            start = time.perf_counter_ns()
            sealed = [sender.encrypt(codec, frame) for _ in range(per_round)]
            enc_us.append((time.perf_counter_ns() - start) / per_round / 1000)
            start = time.perf_counter_ns()
            opened = [receiver.decrypt(codec, "a", s or b"") for s in sealed]
            dec_us.append((time.perf_counter_ns() - start) / per_round / 1000)
            assert all(o == frame for o in opened)
        results.append({
            "frame": name, "bytes": size, "overhead_bytes": len(sealed[-1] or b"") - size,
            "encrypt_us": round(statistics.median(enc_us), 1),
            "decrypt_us": round(statistics.median(dec_us), 1),
        })  # fmt: skip
    return results


async def _poll_first(phone: Softphone, others: set[str], since: float) -> dict[str, float]:
    """ms from ``since`` to the first decoded video frame from each of ``others``."""
    loop = asyncio.get_running_loop()
    first: dict[str, float] = {}
    while len(first) < len(others):
        session = phone.session
        if session is not None:
            for participant, got in session.received.items():
                if participant not in first and got.video_frames_received > 0:
                    first[participant] = round((loop.time() - since) * 1000, 1)
        await asyncio.sleep(0.005)
    return first


async def late_joiner_round(
    url: str, participants: int, index: int, bundle: bool = True
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    names = [f"b{index}x{i}" for i in range(participants)]
    joined: dict[str, float] = {}
    ids: dict[str, str] = {}
    late_joined = asyncio.Event()

    def emit_for(name: str) -> Any:
        def emit(event: dict[str, Any]) -> None:
            if event.get("event") == "joined":
                joined[name] = loop.time()
                ids[name] = event["participant"]
                if name == names[-1]:
                    late_joined.set()

        return emit

    phones = []
    for name in names:
        client = Client(url)
        await client.signup(name)
        phones.append(Softphone(client, video=True, emit=emit_for(name), bundle=bundle))
    host, *guests = phones
    early, late = guests[:-1], guests[-1]
    for phone in guests:
        await phone.line.open()
    tasks = [asyncio.create_task(host.group(names[1:], 25.0))]
    tasks += [asyncio.create_task(p.answer(None)) for p in early]
    try:
        while True:
            sessions = [p.session for p in [host, *early]]
            if all(s and s.total().video_frames_received >= 15 for s in sessions):
                break
            await asyncio.sleep(0.05)
        tasks.append(asyncio.create_task(late.answer(None)))
        await asyncio.wait_for(late_joined.wait(), 20)
        others = {ids[n] for n in names[:-1]}
        first = await asyncio.wait_for(_poll_first(late, others, joined[names[-1]]), 20)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for phone in phones:
            await phone.close()
            await phone.client.close()
    mode = "bundle" if bundle else "old"
    return {"round": index, "mode": mode, "first_video_ms": sorted(first.values())}


async def late_joiner(participants: int, rounds: int, mode: str = "bundle") -> list[dict[str, Any]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        with running_server(port, data_dir, None) as process:
            await wait_ready(url, process)
            modes = {"bundle": [True], "old": [False], "both": [True, False]}[mode]
            return [
                await late_joiner_round(url, participants, i, modes[i % len(modes)])
                for i in range(rounds)
            ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=2000, help="frames per round (costs)")
    parser.add_argument("--late-joiner", action="store_true")
    parser.add_argument("--participants", type=int, default=3)
    parser.add_argument("--mode", choices=("bundle", "old", "both"), default="bundle")
    args = parser.parse_args(argv)
    if args.late_joiner:
        for result in asyncio.run(late_joiner(args.participants, args.rounds, args.mode)):
            print(result, flush=True)
        return 0
    for result in frame_costs(args.rounds, args.frames):
        print(result, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
