"""The Python SDK's ``o=`` lines (``signaling.sdk.origin``): one session id per peer
connection, as protocol 11.5.10 needs.

aiortc writes the current NTP second as the session id of every description, so two
connections made within one second are indistinguishable to the other device, which then
applies the second connection's offer to the connection it made for the first (in CI, Chromium
refused it: "RTP extension ID reassignment not supported", and the call ended)."""

from __future__ import annotations

from aiortc import RTCPeerConnection

from signaling.sdk.origin import Origins, with_origin
from signaling.sdk.origin import session_of as _session


async def offer(pc: RTCPeerConnection) -> str:
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


async def test_two_connections_made_within_a_second_send_different_session_ids() -> None:
    origins = Origins()
    first, second = RTCPeerConnection(), RTCPeerConnection()
    try:
        a, b = await offer(first), await offer(second)
        sent_a = origins.stamp(first, a)
        sent_b = origins.stamp(second, b)
        assert _session(sent_a) != _session(sent_b)
    finally:
        await first.close()
        await second.close()


async def test_a_connection_keeps_its_session_id_and_a_copy_keeps_its_version() -> None:
    origins = Origins()
    pc = RTCPeerConnection()
    try:
        sdp = await offer(pc)
        first = origins.stamp(pc, sdp)
        assert origins.stamp(pc, sdp) == first  # sent again: a copy
        changed = sdp.replace("a=sendrecv", "a=sendonly")
        again = origins.stamp(pc, changed)
        assert _session(again) == _session(first)
        assert again.split("\r\n")[1].split()[2] == "2"  # o=- <session> <version> ...
    finally:
        await pc.close()


def test_only_the_origin_lines_session_and_version_change() -> None:
    sdp = "v=0\r\no=- 3911111111 3911111111 IN IP4 0.0.0.0\r\ns=-\r\na=x:o=- 1 1 \r\n"
    assert with_origin(sdp, 42, 7) == "v=0\r\no=- 42 7 IN IP4 0.0.0.0\r\ns=-\r\na=x:o=- 1 1 \r\n"
