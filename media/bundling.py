"""One connection per participant: the aiortc adapter (the pure part is media/bundle.py).

Seams into aiortc 1.16.0 (pinned by tests/test_sfu_aiortc_internals.py):

* With ``RTCBundlePolicy.MAX_BUNDLE`` a transceiver added to a connected connection uses the
  first transceiver's DTLS transport: one ICE/DTLS/SRTP session for everything.
* ``createOffer`` on a connection that answered describes the existing sections by mid (in
  their m-line order) and appends one section per transceiver that has no mid yet and is not
  stopped; ``setLocalDescription`` assigns those mids.
* A section no longer used is kept as ``direction = "inactive"`` (aiortc has no port-0
  sections); a transceiver retired before it was ever offered is ``stop()``ped and left out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription

from media import errors
from media.bundle import UNFORWARDABLE, Negotiation, Numbering, Offer, Stream, shape_offer
from media.forwarding import Kind, Leg, Source
from media.peer import PlaceholderTrack, answered_rtx, codec_preferences, parse_sdp
from media.simulcast_sdp import restore_simulcast


@dataclass
class Receiving:
    """One subscription carried by the connection: a publisher's source, one section a kind."""

    sub_id: str
    publisher: str
    source: Source
    transceivers: dict[Kind, RTCRtpTransceiver]


class Bundle:
    """A bundled participant's connection: what it receives and where its offers stand."""

    def __init__(self, room: str, participant: str, pc: RTCPeerConnection, numbering: Numbering):
        self.room = room
        self.participant = participant
        self.pc = pc
        self.numbering = numbering
        self.negotiation = Negotiation()
        self.receiving: dict[str, Receiving] = {}
        #: Our sending SSRCs -> subscription: RTCP on the shared transport finds its handler.
        self.by_ssrc: dict[int, str] = {}
        self._retired: list[RTCRtpTransceiver] = []
        self._inactive: set[str] = set()
        self._lock = asyncio.Lock()

    def find(self, publisher: str, source: Source) -> str | None:
        for receiving in self.receiving.values():
            if (receiving.publisher, receiving.source) == (publisher, source):
                return receiving.sub_id
        return None

    def add(
        self, sub_id: str, publisher: str, source: Source, kinds: tuple[Kind, ...]
    ) -> dict[Kind, RTCRtpSender]:
        """New sendonly sections for ``publisher``'s ``source``, in the next offer."""
        transceivers = {}
        for kind in kinds:
            transceiver = self.pc.addTransceiver(PlaceholderTrack(kind), direction="sendonly")
            transceiver.setCodecPreferences(codec_preferences(kind, rtx=True))
            transceivers[kind] = transceiver
            self.by_ssrc[transceiver.sender._ssrc] = sub_id
            if kind is Kind.VIDEO:
                # its RTX stream carries padding probes: a REMB or report may name only that
                self.by_ssrc[transceiver.sender._rtx_ssrc] = sub_id
        self.receiving[sub_id] = Receiving(sub_id, publisher, source, transceivers)
        self.negotiation.changed()
        return {kind: t.sender for kind, t in transceivers.items()}

    def remove(self, sub_id: str) -> bool:
        """The subscription ends: its sections go inactive in the next offer."""
        receiving = self.receiving.pop(sub_id, None)
        if receiving is None:
            return False
        for transceiver in receiving.transceivers.values():
            self.by_ssrc.pop(transceiver.sender._ssrc, None)
            self.by_ssrc.pop(transceiver.sender._rtx_ssrc, None)
            transceiver.direction = "inactive"
            self._retired.append(transceiver)
        self.negotiation.changed()
        return True

    def streams(self) -> tuple[Stream, ...]:
        return tuple(
            Stream(t.mid, r.publisher, r.source, kind)
            for r in self.receiving.values()
            for kind, t in r.transceivers.items()
            if t.mid is not None
        )

    async def offer(self) -> Offer | None:
        """The outstanding offer, a new one when something changed, else None."""
        async with self._lock:
            negotiation = self.negotiation
            if not negotiation.due():
                return negotiation.outstanding
            # ``add``/``remove`` run meanwhile (they take no lock): what they change from here
            # on is due in the next offer, not lost with this one.
            negotiation.begin()
            retired, self._retired = self._retired, []
            for transceiver in retired:
                if transceiver.mid is None:
                    await transceiver.stop()  # never offered: aiortc leaves it out
                else:
                    self._inactive.add(transceiver.mid)
                    await transceiver.sender.stop()  # no more sender reports for it
            try:
                created = await self.pc.createOffer()
                sdp = shape_offer(created.sdp, self.numbering, self._inactive)
                await self.pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:  # a closed connection, or aiortc refusing its own offer
                negotiation.changed()
                raise errors.InvalidState(f"cannot make an offer: {exc}") from exc
            # aiortc writes its local description afresh, without the simulcast lines again
            issued = restore_simulcast(self.pc.localDescription.sdp, self.numbering.simulcast)
            return negotiation.issue(issued, self.streams())

    async def answer(self, revision: int, sdp: str) -> dict[str, list[Leg]]:
        """Apply the participant's answer to offer ``revision``: each subscription it covers
        with its legs (our SSRC, the payload type and extension ids the answer accepted)."""
        async with self._lock:
            self.negotiation.check(revision)
            answer = parse_sdp(sdp)
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            except Exception as exc:  # aiortc raises ValueError/OperationError/...
                raise errors.InvalidSdp(f"cannot apply this answer: {exc}") from exc
            self.negotiation.answered()
            return self._legs(answer)

    def _legs(self, answer: object) -> dict[str, list[Leg]]:
        by_mid = {m.rtp.muxId: m for m in answer.media}  # type: ignore[attr-defined]
        found: dict[str, list[Leg]] = {}
        for receiving in self.receiving.values():
            legs = []
            for kind, transceiver in receiving.transceivers.items():
                theirs = by_mid.get(transceiver.mid)
                if (
                    theirs is None
                    or not theirs.rtp.codecs
                    or theirs.direction
                    not in (
                        "recvonly",
                        "sendrecv",
                    )
                ):
                    continue
                extensions = {
                    e.uri: e.id for e in theirs.rtp.headerExtensions if e.uri not in UNFORWARDABLE
                }
                payload_type = theirs.rtp.codecs[0].payloadType
                sender = transceiver.sender
                rtx_pt = answered_rtx(theirs, payload_type)
                rtx_ssrc = sender._rtx_ssrc if rtx_pt is not None else None
                leg = Leg(kind, sender._ssrc, payload_type, extensions, rtx_ssrc, rtx_pt)
                legs.append(leg)
            if legs:
                found[receiving.sub_id] = legs
        return found
