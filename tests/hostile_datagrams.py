"""Hostile UDP datagrams for the media paths, kept as a corpus in tests/data/fuzz/datagrams/.

Each layer's header (STUN, DTLS, RTP, RTCP) or nothing, with deterministic junk after it, at the
sizes that broke aiortc (around its 1,500-byte SRTP buffer, up to the largest UDP payload), plus
truncated headers. The corpus is what the tests read; this module only (re)writes it:

    python -m tests.hostile_datagrams tests/data/fuzz/datagrams
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

CORPUS = Path(__file__).parent / "data" / "fuzz" / "datagrams"
SIZES = (1500, 1501, 1601, 2048, 65507)

HEADERS = {
    # Binding request, magic cookie, transaction id; the length field claims 8 bytes.
    "stun": struct.pack("!HHI12s", 0x0001, 8, 0x2112A442, b"callbook-tx!"),
    # DTLS 1.2 application-data record, epoch 1.
    "dtls": bytes.fromhex("17fefd0001000000000001") + struct.pack("!H", 64),
    # RTP v2, Opus-ish payload type 111, sequence, timestamp, SSRC.
    "rtp": struct.pack("!BBHII", 0x80, 111, 4242, 960_000, 0x1234_5678),
    # RTCP receiver report claiming one report block.
    "rtcp": struct.pack("!BBHI", 0x81, 201, 7, 0x1234_5678),
    "junk": b"",
}


def hostile() -> dict[str, bytes]:
    """File name -> datagram."""
    rng = random.Random(11)
    out = {"empty": b""}
    for layer, header in HEADERS.items():
        for size in SIZES:
            out[f"{layer}-{size}"] = header + rng.randbytes(size - len(header))
        if header:
            out[f"{layer}-truncated"] = header[: len(header) // 2]
            out[f"{layer}-small"] = header + rng.randbytes(40)
    return out


def corpus() -> list[tuple[str, bytes]]:
    return sorted((p.name, p.read_bytes()) for p in CORPUS.iterdir() if p.suffix == ".bin")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS
    target.mkdir(parents=True, exist_ok=True)
    for name, data in hostile().items():
        (target / f"{name}.bin").write_bytes(data)
