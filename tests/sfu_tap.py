"""A media node with a test-only tap on its forwarding path: every RTP packet a publisher sends
(after SRTP, i.e. what the SFU itself sees and forwards) is appended to the file named by
``CALLBOOK_SFU_TAP``, one line per packet: ``participant kind hex``. RTX and anything not on a
published stream's own payload type is left out.

Run as the launcher of ``media.embedded.EmbeddedMedia`` (``python -m tests.sfu_tap``): the
node is the real one, only ``MediaNode._on_uplink_rtp`` is wrapped.
"""

from __future__ import annotations

import os
from typing import Any

from media import node, server
from media.peer import Uplink

TAP_ENV = "CALLBOOK_SFU_TAP"


def install(path: str) -> None:
    original = node.MediaNode._on_uplink_rtp
    sink = open(path, "a", buffering=1)  # noqa: SIM115 (open for the process's lifetime)

    def tapped(self: node.MediaNode, uplink: Uplink) -> Any:
        forward = original(self, uplink)
        streams = {(s.ssrc, s.payload_type): s.kind for s in uplink.published}

        async def on_rtp(data: bytes) -> None:
            if len(data) >= 12:
                ssrc = int.from_bytes(data[8:12], "big")
                kind = streams.get((ssrc, data[1] & 0x7F))
                if kind is not None:
                    sink.write(f"{uplink.participant} {kind} {data.hex()}\n")
            await forward(data)

        return on_rtp

    node.MediaNode._on_uplink_rtp = tapped  # type: ignore[method-assign]


if __name__ == "__main__":
    install(os.environ[TAP_ENV])
    raise SystemExit(server.main())
