"""An SFU process whose forwarding core records every RTP packet it is handed (tests only).

Run as ``python -m tests.sfu_tap`` with ``media.server``'s flags; ``CALLBOOK_TEST_SFU_TAP`` names
the file. Each record: monotonic time (8-byte double), the publisher's participant id (1-byte
length + UTF-8), the decrypted-SRTP RTP packet (4-byte length + bytes): exactly what the SFU
sees of the media, after its own transport decryption.
"""

from __future__ import annotations

import os
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from media import forwarding, server

TAP_ENV = "CALLBOOK_TEST_SFU_TAP"


@dataclass(frozen=True)
class Tapped:
    at: float
    publisher: str
    packet: bytes


def main() -> int:
    out = Path(os.environ[TAP_ENV]).open("ab", buffering=0)  # noqa: SIM115 - lives as long as the process
    handle_rtp = forwarding.Forwarder.handle_rtp

    def tapped(
        self: forwarding.Forwarder, room: str, name: str, data: bytes, now: float
    ) -> list[tuple[str, bytes]]:
        who = name.encode()
        out.write(struct.pack("!dB", time.monotonic(), len(who)) + who
                  + struct.pack("!I", len(data)) + data)  # fmt: skip
        return handle_rtp(self, room, name, data, now)

    forwarding.Forwarder.handle_rtp = tapped  # type: ignore[method-assign]
    return server.main(sys.argv[1:])


def read(path: Path) -> Iterator[Tapped]:
    raw = path.read_bytes()
    pos = 0
    while pos + 9 <= len(raw):
        at, size = struct.unpack_from("!dB", raw, pos)
        pos += 9
        publisher = raw[pos : pos + size].decode()
        pos += size
        (length,) = struct.unpack_from("!I", raw, pos)
        pos += 4
        yield Tapped(at, publisher, raw[pos : pos + length])
        pos += length


if __name__ == "__main__":
    raise SystemExit(main())
