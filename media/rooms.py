"""What the forwarding core (``media.forwarding``) keeps: rooms, participants, their
publications and subscriptions, the downlink legs and the node's counters.

Plain data and small pure helpers (receive statistics, the retransmission cache); no I/O. The
forwarder's logic is in ``media.forwarding``, the simulcast glue in ``media.layered``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from media.bandwidth import SubscriberEstimate
from media.continuity import SequenceRewriter
from media.probing import PaddingProbe
from media.ratecap import TokenBucket
from media.rtp import ReportBlock
from media.simulcast import Prober
from media.speaker import ActiveSpeaker

if TYPE_CHECKING:  # layered imports this module; its types are only for annotations here
    from media.layered import LayeredTarget, LayeredVideo

RETRANSMIT_SLOTS = 512  # ~1.5 s of 320 kbit/s video; a power of two so ``seq & mask`` indexes
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
DEFAULT_MAX_PARTICIPANTS = 16


class Kind(StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


CLOCK_RATE = {Kind.AUDIO: 48_000, Kind.VIDEO: 90_000}


class Source(StrEnum):
    """What a track shows: the camera (and microphone), or a shared screen (video only)."""

    CAMERA = "camera"
    SCREEN = "screen"


#: A participant's track: (source, kind).
Track = tuple[Source, Kind]


class Drop(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_SSRC = "unknown_ssrc"
    UNKNOWN_PAYLOAD_TYPE = "unknown_payload_type"
    NOT_ADMITTED = "not_admitted"
    UNKNOWN_SUBSCRIPTION = "unknown_subscription"
    RATE_LIMITED = "rate_limited"


@dataclass(slots=True)
class Counters:
    received_packets: int = 0
    forwarded_packets: int = 0
    forwarded_bytes: int = 0
    retransmitted_packets: int = 0
    keyframe_requests: int = 0  # PLIs actually sent to publishers
    keyframe_requests_received: int = 0  # PLI/FIR from subscribers and new subscriptions
    keyframe_requests_coalesced: int = 0
    padding_only: int = 0  # bandwidth probes: dropped, later packets renumbered around them
    layer_switches: int = 0  # a subscription moved to another simulcast layer (at a keyframe)
    probes: int = 0  # a subscriber was tried on one layer more than its estimate allowed
    padding_probes: int = 0  # padding probes started (``media.probing``)
    probe_padding_packets: int = 0  # padding-only packets sent on subscribers' RTX streams
    probe_padding_bytes: int = 0
    held_for_keyframe: int = 0  # video packets not sent to a leg still waiting for a keyframe
    legs_failed: int = 0  # uplinks and downlinks that died under a participant still in the room
    dropped: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: Drop) -> None:
        self.dropped[reason.value] += 1


@dataclass(frozen=True, slots=True)
class Leg:
    """One sending transceiver of a downlink: its own SSRC, payload type and extension ids."""

    kind: Kind
    ssrc: int
    payload_type: int
    extensions: dict[str, int] = field(default_factory=dict)
    # Its RTX stream, when the subscriber accepted one: padding probes go there (``probing``).
    rtx_ssrc: int | None = None
    rtx_payload_type: int | None = None


@dataclass(frozen=True, slots=True)
class KeyframeRequest:
    room: str
    publisher: str
    ssrc: int
    source: Source = Source.CAMERA  # which of the publisher's uplinks to ask


@dataclass(frozen=True, slots=True)
class NackRequest:
    """Packets a subscriber lost that the leg cache no longer (or never) held: ask upstream."""

    room: str
    publisher: str
    ssrc: int
    lost: list[int]
    source: Source = Source.CAMERA


@dataclass(frozen=True, slots=True)
class Feedback:
    """What a subscriber's RTCP asks for: PLIs and NACKs upstream, retransmissions downstream."""

    keyframes: list[KeyframeRequest]
    retransmit: list[bytes]
    upstream_nacks: list[NackRequest] = field(default_factory=list)


class RetransmitCache:
    """The last forwarded packets of one leg, by sequence number, to answer NACKs."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: list[bytes | None] = [None] * RETRANSMIT_SLOTS

    def put(self, sequence: int, packet: bytes) -> None:
        self._slots[sequence & (RETRANSMIT_SLOTS - 1)] = packet

    def get(self, sequence: int) -> bytes | None:
        packet = self._slots[sequence & (RETRANSMIT_SLOTS - 1)]
        if packet is None or int.from_bytes(packet[2:4], "big") != sequence:
            return None
        return packet


@dataclass(slots=True)
class Target:
    subscription: str
    leg: Leg
    mapping: dict[int, int]  # publisher extension id -> subscriber extension id
    mapping_key: tuple[tuple[int, int], ...]  # legs with equal keys share one extension block
    cache: RetransmitCache = field(default_factory=RetransmitCache)
    # Video starts at a keyframe: earlier inter frames would only make the decoder fail.
    needs_keyframe: bool = False
    fraction_lost: float | None = None
    jitter_ms: float | None = None
    layered: LayeredTarget | None = None  # of a simulcast publication (``media.layered``)


@dataclass(slots=True)
class Reception:
    """RFC 3550 A.1/A.8 receive statistics, enough to write the publisher a receiver report."""

    clock_rate: int
    base_seq: int = -1
    max_seq: int = 0
    cycles: int = 0
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    transit: float | None = None
    jitter: float = 0.0
    lsr: int = 0
    sr_at: float | None = None

    def update(self, sequence: int, timestamp: int, now: float) -> None:
        if self.base_seq < 0:
            self.base_seq = self.max_seq = sequence
        elif 0 < (sequence - self.max_seq) & 0xFFFF < 0x8000:
            if sequence < self.max_seq:
                self.cycles += 0x10000
            self.max_seq = sequence
        self.received += 1
        transit = now * self.clock_rate - timestamp
        if self.transit is not None:
            d = abs(transit - self.transit)
            if d < self.clock_rate:  # a timestamp jump (new source, wrap) is not jitter
                self.jitter += (d - self.jitter) / 16
        self.transit = transit

    def report(self, ssrc: int, now: float) -> ReportBlock | None:
        if self.base_seq < 0:
            return None
        extended = self.cycles + self.max_seq
        expected = extended - self.base_seq + 1
        lost = expected - self.received
        expected_interval = expected - self.expected_prior
        lost_interval = expected_interval - (self.received - self.received_prior)
        self.expected_prior, self.received_prior = expected, self.received
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = 0 if self.sr_at is None else int((now - self.sr_at) * 65536) & 0xFFFFFFFF
        lost = max(-(1 << 23), min(lost, (1 << 23) - 1))
        return ReportBlock(
            ssrc, fraction, lost, extended & 0xFFFFFFFF, int(self.jitter), self.lsr, dlsr
        )


@dataclass(slots=True)
class Publication:
    room: str
    publisher: str
    kind: Kind
    ssrc: int
    payload_type: int
    extensions: dict[str, int]
    audio_level_id: int | None
    reception: Reception
    bucket: TokenBucket
    source: Source = Source.CAMERA
    targets: dict[str, Target] = field(default_factory=dict)
    last_keyframe_request: float = -math.inf
    keyframe_pending: bool = False
    # Dropped padding-only packets leave no holes: later packets are renumbered.
    sequence: SequenceRewriter = field(default_factory=SequenceRewriter)
    layered: LayeredVideo | None = None  # simulcast: layers on SSRCs learnt by RID
    layer_receptions: dict[int, Reception] = field(default_factory=dict)  # by layer SSRC


@dataclass(slots=True)
class Participant:
    name: str
    by_ssrc: dict[int, Publication] = field(default_factory=dict)
    by_track: dict[Track, Publication] = field(default_factory=dict)
    packets_in: int = 0
    bytes_in: int = 0
    media_failed: bool = False  # one of its legs died: signaling tells the device

    def sends(self, source: Source) -> list[Publication]:
        return [p for (s, _), p in self.by_track.items() if s is source]


@dataclass(slots=True)
class Subscription:
    id: str
    room: str
    subscriber: str
    publisher: str
    legs: dict[Kind, Leg]
    active: bool = False
    source: Source = Source.CAMERA


@dataclass(slots=True)
class Room:
    name: str
    max_participants: int
    participants: dict[str, Participant] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    speaker: ActiveSpeaker = field(default_factory=ActiveSpeaker)
    counters: Counters = field(default_factory=Counters)
    # simulcast (``media.selection``): wanted max height per (subscriber, publisher, source),
    # each subscriber's bandwidth estimate, prober and padding probe
    views: dict[tuple[str, str, Source], int] = field(default_factory=dict)
    estimates: dict[str, SubscriberEstimate] = field(default_factory=dict)
    probers: dict[str, Prober] = field(default_factory=dict)
    paddings: dict[str, PaddingProbe] = field(default_factory=dict)  # ``media.probing``
