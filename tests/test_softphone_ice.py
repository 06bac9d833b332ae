"""The softphone takes a trickled candidate however the peer labelled it (protocol.md 11.5.8):
with ``sdp_mid``, with ``sdp_mline_index``, or with neither (then the first, bundled section)."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection

from signaling.protocol import messages as m
from signaling.sdk.media import ToneTrack, add_remote_candidate, peer_connection

CALL = "e78c8da2a60beb6df664f1d17c066fca"


def _candidates(pc: RTCPeerConnection) -> list[str]:
    sdp = pc.localDescription.sdp
    return [line[2:] for line in sdp.splitlines() if line.startswith("a=candidate:")]


def _remote(pc: RTCPeerConnection) -> set[str]:
    (transceiver,) = pc.getTransceivers()
    ice = transceiver.receiver.transport.transport
    return {f"{c.ip} {c.port}" for c in ice.getRemoteCandidates()}


@pytest.mark.parametrize(
    ("mid", "index"), [("0", 0), ("0", None), (None, 0), (None, None)], ids=str
)
async def test_a_trickled_candidate_is_added_however_it_is_labelled(
    mid: str | None, index: int | None
) -> None:
    caller = peer_connection([], relay_only=False)
    callee = peer_connection([], relay_only=False)
    try:
        caller.addTrack(ToneTrack())
        await caller.setLocalDescription(await caller.createOffer())
        offer = caller.localDescription.sdp
        # The callee learns the offer without its candidates: they come trickled.
        bare = "\r\n".join(line for line in offer.split("\r\n") if "candidate" not in line)
        await callee.setRemoteDescription(type(caller.localDescription)(sdp=bare, type="offer"))
        candidate = _candidates(caller)[0]
        trickled = m.PeerIce(call_id=CALL, candidate=candidate, sdp_mid=mid, sdp_mline_index=index)
        await add_remote_candidate(callee, trickled)
        fields = candidate.split()
        assert f"{fields[4]} {fields[5]}" in _remote(callee)
    finally:
        await caller.close()
        await callee.close()
