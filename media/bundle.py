"""One connection per participant ("bundle", protocol 11.15): the pure part.

A bundled participant's one RTCPeerConnection carries its own tracks (its offer, answered
once) and, added by the SFU, one sendonly m-section per track it receives. Each change to what
it receives is a new SFU offer on that connection; at most one is outstanding, and changes
made meanwhile are folded into the next (``Negotiation``).

aiortc's ``createOffer`` on an existing connection renumbers every section with its own
payload types and header extension ids; a browser refuses a BUNDLE group whose payload types
collide or whose extension ids change, and a publisher would start sending with ids the
forwarder does not expect. ``shape_offer`` puts back what the first answer negotiated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc.sdp import SessionDescription

from media import errors
from media.forwarding import Kind, Source
from media.rtp import (
    MalformedPacket,
    Nack,
    PictureLoss,
    ReceiverReport,
    Remb,
    SenderReport,
    parse_rtcp,
)
from media.simulcast_sdp import restore_simulcast

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
#: Extensions whose value names the publisher's own section or stream: never forwarded.
UNFORWARDABLE = frozenset(
    {
        MID_URI,
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    }
)
DYNAMIC_PAYLOAD_TYPES = range(96, 128)


@dataclass(frozen=True, slots=True)
class Stream:
    """What one m-section of the connection carries to its participant."""

    mid: str
    participant: str
    source: Source
    kind: Kind

    def as_dict(self) -> dict[str, str]:
        return {
            "mid": self.mid,
            "participant": self.participant,
            "source": self.source.value,
            "kind": self.kind.value,
        }


@dataclass(frozen=True, slots=True)
class Offer:
    revision: int
    sdp: str
    #: Everything the connection receives once this offer is answered.
    streams: tuple[Stream, ...]


def offer_to_wire(offer: Offer) -> dict[str, object]:
    """The control API's body for an offer (media/README.md)."""
    return {
        "revision": offer.revision,
        "offer": {"type": "offer", "sdp": offer.sdp},
        "streams": [s.as_dict() for s in offer.streams],
    }


def offer_from_wire(data: dict[str, object]) -> Offer:
    streams = tuple(
        Stream(str(s["mid"]), str(s["participant"]), Source(s["source"]), Kind(s["kind"]))
        for s in data["streams"]  # type: ignore[attr-defined]
    )
    sdp = str(data["offer"]["sdp"])  # type: ignore[index]
    return Offer(int(data["revision"]), sdp, streams)  # type: ignore[call-overload]


@dataclass(slots=True)
class Negotiation:
    """Offer/answer bookkeeping of one connection: revisions count from 1."""

    revision: int = 0
    outstanding: Offer | None = None
    pending: bool = False

    def changed(self) -> None:
        self.pending = True

    def due(self) -> bool:
        """A new offer should be made now (something changed and none is outstanding)."""
        return self.outstanding is None and self.pending

    def begin(self) -> None:
        """An offer is being made of what changed so far: changes made while it is (aiortc
        awaits in between) set ``pending`` again and go into the next one."""
        self.pending = False

    def issue(self, sdp: str, streams: tuple[Stream, ...]) -> Offer:
        self.revision += 1
        self.outstanding = Offer(self.revision, sdp, streams)
        return self.outstanding

    def check(self, revision: int) -> Offer:
        """The outstanding offer an answer for ``revision`` answers, or ``StaleOffer``."""
        if self.outstanding is None or self.outstanding.revision != revision:
            current = self.outstanding.revision if self.outstanding else None
            raise errors.StaleOffer(
                f"revision {revision} is not the outstanding offer (outstanding: {current})"
            )
        return self.outstanding

    def answered(self) -> None:
        self.outstanding = None


@dataclass
class Numbering:
    """How the participant's own offer numbered codecs and extensions (kept in every offer)."""

    #: mime type (lower case) -> payload type, from our first answer.
    payload_types: dict[str, int] = field(default_factory=dict)
    #: Payload types the participant's offer used for anything: not to be reused.
    taken: set[int] = field(default_factory=set)
    extensions: dict[str, int] = field(default_factory=dict)
    #: The participant's own sections, as first answered: mid -> m-section.
    kept: dict[str, object] = field(default_factory=dict)
    #: mid -> the simulcast lines of our first answer (issue 16), repeated in every offer.
    simulcast: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, offer: SessionDescription, answer: SessionDescription) -> Numbering:
        numbering = cls()
        for media in offer.media:
            numbering.taken.update(c.payloadType for c in media.rtp.codecs if c.payloadType)
            for ext in media.rtp.headerExtensions:
                numbering.extensions.setdefault(ext.uri, ext.id)
        for media in answer.media:
            if media.kind not in ("audio", "video"):
                continue
            numbering.kept[media.rtp.muxId] = media
            for codec in media.rtp.codecs:
                if codec.payloadType is not None:
                    numbering.payload_types.setdefault(codec.mimeType.lower(), codec.payloadType)
        return numbering

    def payload_type(self, mime: str, proposed: int) -> int:
        found = self.payload_types.get(mime.lower())
        if found is not None:
            return found
        free = [pt for pt in DYNAMIC_PAYLOAD_TYPES if pt not in self.taken]
        chosen = proposed if proposed not in self.taken else free[0]
        self.payload_types[mime.lower()] = chosen
        self.taken.add(chosen)
        return chosen

    def extension_id(self, uri: str, proposed: int) -> int:
        found = self.extensions.get(uri)
        if found is not None:
            return found
        used = set(self.extensions.values())
        chosen = proposed if proposed not in used else min(set(range(1, 15)) - used)
        self.extensions[uri] = chosen
        return chosen


def shape_offer(sdp: str, numbering: Numbering, inactive: set[str]) -> str:
    """aiortc's offer with the participant's numbering kept, ``inactive`` mids switched off,
    and ``a=setup:actpass`` as JSEP wants in every offer (the answerer keeps its role)."""
    description = SessionDescription.parse(sdp)
    for media in description.media:
        if media.kind not in ("audio", "video"):
            continue
        mid = media.rtp.muxId
        kept = numbering.kept.get(mid)
        if kept is not None:
            media.rtp.codecs = kept.rtp.codecs  # type: ignore[attr-defined]
            media.rtp.headerExtensions = kept.rtp.headerExtensions  # type: ignore[attr-defined]
        else:
            renumbered = {}
            for codec in media.rtp.codecs:
                proposed = codec.payloadType or DYNAMIC_PAYLOAD_TYPES[0]
                codec.payloadType = numbering.payload_type(codec.mimeType, proposed)
                renumbered[proposed] = codec.payloadType
            for codec in media.rtp.codecs:  # an RTX codec names its media codec's number
                apt = codec.parameters.get("apt")
                if isinstance(apt, int) and apt in renumbered:
                    codec.parameters["apt"] = renumbered[apt]
            for ext in media.rtp.headerExtensions:
                ext.id = numbering.extension_id(ext.uri, ext.id)
        media.fmt = [c.payloadType for c in media.rtp.codecs]
        if mid in inactive:
            media.direction = "inactive"
        if media.dtls is not None:
            media.dtls.role = "auto"
    return restore_simulcast(str(description), numbering.simulcast)


def rtcp_media_ssrcs(data: bytes) -> list[int]:
    """The SSRCs a compound RTCP packet is about (PLI/FIR/NACK targets, report blocks): on a
    bundled transport they tell which subscription's handler it is for. Malformed: none (the
    publisher's handler counts it)."""
    try:
        items = parse_rtcp(data)
    except MalformedPacket:
        return []
    found: list[int] = []
    for item in items:
        if isinstance(item, (PictureLoss, Nack)):
            found.append(item.media_ssrc)
        elif isinstance(item, (ReceiverReport, SenderReport)):
            found.extend(block.ssrc for block in item.reports)
        elif isinstance(item, Remb):  # one per transport, naming every stream it estimates
            found.extend(item.ssrcs)
    return found
