"""An SFU process whose forwarding core records every RTP packet it is handed (tests only).

Run as ``python -m tests.sfu_tap`` with ``media.server``'s flags; ``CALLBOOK_TEST_SFU_TAP`` names
the file. Each record: monotonic time (8-byte double), the stream's kind (``a``, ``v``, or ``?``
for a stream the SFU does not know), the publisher's participant id (1-byte length + UTF-8), the
RTP packet (4-byte length + bytes): exactly what the SFU sees of the media once its own transport
(SRTP) decryption is done.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from media import forwarding, server
from media.errors import MediaError

TAP_ENV = "CALLBOOK_TEST_SFU_TAP"


@dataclass(frozen=True)
class Tapped:
    at: float
    kind: str
    publisher: str
    packet: bytes


def main() -> int:
    out = Path(os.environ[TAP_ENV]).open("ab", buffering=0)  # noqa: SIM115 - lives as long as the process
    handle_rtp = forwarding.Forwarder.handle_rtp

    def tapped(
        self: forwarding.Forwarder, room: str, name: str, data: bytes, now: float
    ) -> list[tuple[str, bytes]]:
        who = name.encode()
        kind = b"?"
        with contextlib.suppress(MediaError):
            ssrc = int.from_bytes(data[8:12], "big")
            publication = self.participant(room, name).by_ssrc.get(ssrc)
            kind = publication.kind.value[:1].encode() if publication is not None else b"?"
        out.write(struct.pack("!dcB", time.monotonic(), kind, len(who)) + who
                  + struct.pack("!I", len(data)) + data)  # fmt: skip
        return handle_rtp(self, room, name, data, now)

    forwarding.Forwarder.handle_rtp = tapped  # type: ignore[method-assign]
    return server.main(sys.argv[1:])


def read(path: Path) -> Iterator[Tapped]:
    raw = path.read_bytes()
    pos = 0
    while pos + 10 <= len(raw):
        at, kind, size = struct.unpack_from("!dcB", raw, pos)
        pos += 10
        publisher = raw[pos : pos + size].decode()
        pos += size
        (length,) = struct.unpack_from("!I", raw, pos)
        pos += 4
        yield Tapped(at, kind.decode(), publisher, raw[pos : pos + length])
        pos += length


if __name__ == "__main__":
    raise SystemExit(main())
