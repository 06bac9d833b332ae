"""CPU cost of the SFU's per-packet pure code, without sockets or aiortc: a steady figure to
compare commits by (bench/sfu.py measures the whole node, on a machine other work disturbs).

* ``handle_rtp``: ``Forwarder.handle_rtp`` of one 1,000-byte VP8 packet to N active subscribers
  (parse, rate cap, header rewrite per leg, retransmission cache), µs per incoming packet;
* ``shield``: ``media.shield``'s filter in front of aioice for one SRTP-range datagram from the
  nominated pair, µs per datagram (skipped on commits without it).

Run from the repository root::

    .venv/bin/python -m bench.sfu_core                # N = 8, best of 5 rounds of 20,000
    .venv/bin/python -m bench.sfu_core --subscribers 3 --json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import struct
import time
from collections.abc import Callable

from media.forwarding import Forwarder, Kind, Leg

PUBLISHER_VIDEO = 0xA1


def forwarder(subscribers: int) -> Forwarder:
    f = Forwarder()
    f.create_room("r")
    f.add_participant("r", "a")
    f.publish("r", "a", Kind.VIDEO, PUBLISHER_VIDEO, 96)
    for i in range(subscribers):
        name = f"s{i}"
        f.add_participant("r", name)
        f.subscribe("r", name, "a", name, [Leg(Kind.VIDEO, 0xC000 + i, 120)])
        f.activate(name, 0.0)
    return f


def packet(seq: int) -> bytes:
    head = struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, seq * 3000, PUBLISHER_VIDEO)
    return head + b"\x10\x00\x9d\x01\x2a" + bytes(1000 - 17)


def best_us(run: Callable[[int], None], count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run(count)
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def bench_forward(subscribers: int, count: int, rounds: int) -> float:
    f = forwarder(subscribers)
    packets = [packet(i) for i in range(count)]
    # 1,000 B at 1 ms spacing: 8 Mbit/s, at the default video cap, so nothing is dropped.
    clock = [0.0]

    def run(n: int) -> None:
        handle, now = f.handle_rtp, clock[0]
        for i in range(n):
            handle("r", "a", packets[i], now + i * 0.0011)
        clock[0] = now + n * 0.0011

    us = best_us(run, count, rounds)
    assert not f.counters.dropped, f.counters.dropped
    return us


def bench_shield(count: int, rounds: int) -> float | None:
    try:
        from aioice.candidate import Candidate
        from aioice.ice import CandidatePair, StunProtocol

        from media.shield import Dropped, guard_protocol
    except ImportError:
        return None

    class Receiver:
        def __init__(self) -> None:
            self._check_list: list[CandidatePair] = []
            self._nominated: dict[int, CandidatePair] = {}

        def data_received(self, data: bytes, component: int) -> None:
            pass

    receiver = Receiver()
    protocol = StunProtocol(receiver)  # type: ignore[arg-type]
    protocol.local_candidate = Candidate("1", 1, "udp", 1, "127.0.0.1", 50000, "host")
    remote = Candidate("2", 1, "udp", 1, "127.0.0.1", 40000, "host")
    receiver._nominated[1] = CandidatePair(protocol, remote)
    receiver._check_list.append(receiver._nominated[1])
    guard_protocol(protocol, Dropped())
    data, addr = packet(1), ("127.0.0.1", 40000)

    def run(n: int) -> None:
        received = protocol.datagram_received
        for _ in range(n):
            received(data, addr)

    return best_us(run, count, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {
        "subscribers": args.subscribers,
        "handle_rtp_us": round(bench_forward(args.subscribers, args.count, args.rounds), 3),
        "shield_us": bench_shield(args.count, args.rounds),
    }
    if isinstance(result["shield_us"], float):
        result["shield_us"] = round(result["shield_us"], 3)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")


if __name__ == "__main__":
    main()
