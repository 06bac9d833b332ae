"""aiortc settings a Callbook client needs: loopback ICE on one machine, the SFU's codecs.

The SFU (``media/``) makes the same choices for its own side; the SDK keeps its copy because it
installs without the server.
"""

from __future__ import annotations

import aioice.ice
from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

#: What the SFU forwards (docs/protocol.md, "Media through the SFU"): Opus and VP8, nothing else.
SFU_CODECS = {"audio": "audio/opus", "video": "video/vp8"}


def allow_loopback_ice() -> None:
    """aioice skips loopback addresses; on a loopback-only machine nothing would connect.

    Idempotent, and shares its marker with the media node's patch, so either may come first.
    """
    original = aioice.ice.get_host_addresses
    if getattr(original, "callbook_loopback", False):
        return

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses: list[str] = original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    with_loopback.callbook_loopback = True  # type: ignore[attr-defined]
    with_loopback.__wrapped__ = original  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = with_loopback


def codec_preferences(kind: str) -> list[RTCRtpCodecCapability]:
    """Opus for audio, VP8 for video: what a publisher to the SFU may negotiate."""
    wanted = SFU_CODECS[kind]
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == wanted]
