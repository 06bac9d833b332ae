"""Forwarding state for simulcast (layered) video: the glue between ``forwarding.Forwarder`` and
the pure cores ``simulcast`` (which layer) and ``continuity`` (one stream out of many).

Pure: no I/O, time passed in. A layered publication is one published video track whose layers
arrive on SSRCs the offer did not list: each is learnt from the RID header extension of its
first packets (``learn``). A subscription to it holds a ``LayerSwitch`` (current and target
layer) and a ``StreamRewriter`` (sequence numbers, timestamps and VP8 picture ids continuous
across switches and dropped padding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from media.continuity import Rewritten, StreamRewriter
from media.rooms import (
    ABS_SEND_TIME_URI,
    CLOCK_RATE,
    Counters,
    Drop,
    Kind,
    Participant,
    Publication,
    Reception,
    Target,
)
from media.rtp import (
    ONE_BYTE_PROFILE,
    MalformedPacket,
    RtpView,
    abs_send_time,
    build_rtp,
    extension_value,
    remap_extensions,
    stamp_extension,
)
from media.simulcast import LayerMeter, LayerSwitch, Verdict


@dataclass(slots=True)
class LayeredVideo:
    """The layers of one simulcast video track, lowest first (by the offer's RID order)."""

    rids: tuple[str, ...]
    rid_ext_id: int | None
    repaired_ext_id: int | None = None
    by_ssrc: dict[int, int] = field(default_factory=dict)  # SSRC -> layer
    ssrc_of: dict[int, int] = field(default_factory=dict)  # layer -> SSRC
    repairs: set[int] = field(default_factory=set)  # RTX SSRCs: never forwarded
    meters: list[LayerMeter] = field(default_factory=list)
    last_pli: dict[int, float] = field(default_factory=dict)  # layer -> when
    started_at: float | None = None  # the first layer's first packet

    def __post_init__(self) -> None:
        if not self.meters:
            self.meters = [LayerMeter(i) for i in range(len(self.rids))]

    def learn(self, data: bytes, view: RtpView) -> int | None:
        """The layer of a packet on an SSRC not seen yet, from its RID extension; None when it
        has none (or names no offered RID). RTX streams (repaired RID) are remembered apart."""
        if view.extension_profile != ONE_BYTE_PROFILE:
            return None
        try:
            if self.repaired_ext_id is not None and (
                extension_value(data, view, self.repaired_ext_id) is not None
            ):
                self.repairs.add(view.ssrc)
                return None
            value = (
                extension_value(data, view, self.rid_ext_id)
                if self.rid_ext_id is not None
                else None
            )
        except MalformedPacket:
            return None
        if value is None:
            return None
        rid = value.rstrip(b"\x00").decode("ascii", "replace")
        if rid not in self.rids:
            return None
        layer = self.rids.index(rid)
        old = self.ssrc_of.get(layer)
        if old is not None:
            self.by_ssrc.pop(old, None)  # the publisher restarted that layer on a new SSRC
        self.by_ssrc[view.ssrc] = layer
        self.ssrc_of[layer] = view.ssrc
        return layer

    def observe(self, layer: int, data: bytes, view: RtpView, now: float) -> bool:
        """Meter a packet of ``layer``; returns whether it starts a keyframe (and notes the
        layer's height from it)."""
        self.meters[layer].packet(len(data), now)
        size = vp8_keyframe_size(data, view)
        if size is None:
            return False
        self.meters[layer].height = size[1]
        return True


def vp8_descriptor_length(data: bytes, view: RtpView) -> int | None:
    """Length of the RFC 7741 payload descriptor at the start of the payload, or None."""
    pos = view.header_length
    end = view.payload_end
    if pos >= end:
        return None
    first = data[pos]
    length = 1
    if first & 0x80:
        if pos + 1 >= end:
            return None
        ext = data[pos + 1]
        length += 1
        if ext & 0x80:
            if pos + length >= end:
                return None
            length += 2 if data[pos + length] & 0x80 else 1
        if ext & 0x40:
            length += 1
        if ext & 0x30:
            length += 1
    return length if pos + length <= end else None


def vp8_keyframe_size(data: bytes, view: RtpView) -> tuple[int, int] | None:
    """(width, height) when this packet starts a VP8 keyframe (RFC 6386 9.1), else None."""
    length = vp8_descriptor_length(data, view)
    if length is None:
        return None
    first = data[view.header_length]
    if not first & 0x10 or first & 0x07:  # not the start of partition 0
        return None
    at = view.header_length + length
    frame = data[at : at + 10]
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


@dataclass(slots=True)
class LayeredTarget:
    """One subscription's view of a layered publication."""

    switch: LayerSwitch = field(default_factory=LayerSwitch)
    rewriter: StreamRewriter = field(default_factory=StreamRewriter)

    def packet(
        self, layer: int, keyframe: bool, view: RtpView, payload: bytes, now: float
    ) -> Rewritten | None:
        """The rewritten (sequence, timestamp, payload) to forward, or None."""
        verdict = self.switch.packet(layer, keyframe)
        if verdict == Verdict.DROP:
            return None
        if verdict == Verdict.SWITCH:
            self.rewriter.switch(view.ssrc, view.sequence, view.timestamp, payload, now)
        return self.rewriter.rewrite(view.sequence, view.timestamp, payload, now)

    def padding(self, layer: int, sequence: int) -> None:
        """A padding-only packet of ``layer`` that is not forwarded: renumber around it."""
        if layer == self.switch.current:
            self.rewriter.skip(sequence)

    def source_sequence(self, sequence: int) -> int | None:
        """The publisher's sequence number for one this subscriber asks again for."""
        return self.rewriter.seq.backward(sequence)


def receive_layered(
    counters: tuple[Counters, Counters],
    publication: Publication,
    layered: LayeredVideo,
    data: bytes,
    view: RtpView,
    now: float,
) -> list[tuple[str, bytes]]:
    """A packet of a simulcast publication (``counters``: the node's and the room's): receive
    statistics per layer, padding dropped with renumbering, the rest forwarded."""
    reception = publication.layer_receptions.get(view.ssrc)
    if reception is None:
        reception = publication.layer_receptions[view.ssrc] = Reception(CLOCK_RATE[Kind.VIDEO])
    reception.update(view.sequence, view.timestamp, now)
    if view.ssrc not in layered.by_ssrc:
        for c in counters:  # unreachable: learn_layer forgets moved SSRCs
            c.drop(Drop.UNKNOWN_SSRC)
        return []
    if view.payload_end == view.header_length:
        # padding-only: see ``Forwarder.handle_rtp``
        for c in counters:
            c.padding_only += 1
        layer = layered.by_ssrc[view.ssrc]
        for target in publication.targets.values():
            if target.layered is not None:
                target.layered.padding(layer, view.sequence)
        return []
    return forward_layered(counters, publication, layered, data, view, now)


def forward_layered(
    counters: tuple[Counters, Counters],
    publication: Publication,
    layered: LayeredVideo,
    data: bytes,
    view: RtpView,
    now: float,
) -> list[tuple[str, bytes]]:
    """A packet of one simulcast layer: to the subscriptions on that layer (or switching
    to it at this keyframe), each renumbered into its own continuous stream."""
    node, room = counters
    layer = layered.by_ssrc[view.ssrc]
    if layered.started_at is None:
        layered.started_at = now
    keyframe = layered.observe(layer, data, view, now)
    payload = data[view.header_length :]
    out: list[tuple[str, bytes]] = []
    size = 0
    for target in publication.targets.values():
        state = target.layered
        if state is None:
            continue
        switches = state.switch.switches
        rewritten = state.packet(layer, keyframe, view, payload, now)
        if rewritten is None:
            if state.switch.current is None and state.switch.target is not None:
                node.held_for_keyframe += 1
            continue
        if state.switch.switches != switches:
            node.layer_switches += 1
            room.layer_switches += 1
        try:
            ext = remap_extensions(data, view, target.mapping)
        except MalformedPacket:
            ext = b""
        send_time_id = target.leg.extensions.get(ABS_SEND_TIME_URI)
        if send_time_id is not None:
            # Our send time, not the publisher's: the receiver's REMB estimator then sees
            # the delay of its own downlink (and not the publisher's pacing of the layers).
            ext = stamp_extension(ext, send_time_id, abs_send_time(now))
        moved = view._replace(sequence=rewritten.sequence, timestamp=rewritten.timestamp)
        leg = target.leg
        packet = build_rtp(data, moved, leg.ssrc, leg.payload_type, ext, rewritten.payload)
        target.cache.put(rewritten.sequence, packet)
        out.append((target.subscription, packet))
        size += len(packet)
    for c in counters:
        c.forwarded_packets += len(out)
        c.forwarded_bytes += size
    return out


def forget_ssrcs(participant: Participant, publication: Publication) -> None:
    participant.by_ssrc.pop(publication.ssrc, None)
    if publication.layered is not None:
        for ssrc in publication.layered.by_ssrc:
            participant.by_ssrc.pop(ssrc, None)


def learn_layer(participant: Participant, data: bytes, view: RtpView) -> Publication | None:
    """The simulcast publication a packet on a new SSRC belongs to, by its RID extension."""
    for publication in participant.by_track.values():
        layered = publication.layered
        if layered is None or view.ssrc in layered.repairs:
            continue
        if layered.learn(data, view) is not None:
            participant.by_ssrc[view.ssrc] = publication
            # A layer that moved to this SSRC (a restarted encoder, or a forged RID) leaves
            # its old SSRC unknown again.
            for ssrc in [s for s, p in participant.by_ssrc.items() if p is publication]:
                if ssrc not in layered.by_ssrc:
                    del participant.by_ssrc[ssrc]
            return publication
    return None


def upstream_nack(
    publication: Publication, target: Target, lost: list[int]
) -> tuple[int, list[int]] | None:
    """(SSRC, sequence numbers) of lost packets as the publisher numbered them: padding drops
    and layer switches renumbered them for the subscriber. None when none is the publisher's."""
    if target.layered is None:
        source = [publication.sequence.backward(seq) for seq in lost]
        ssrc = publication.ssrc
    else:
        current = target.layered.switch.current
        layered = publication.layered
        ssrc_of = layered.ssrc_of if layered is not None else {}
        if current is None or current not in ssrc_of:
            return None
        source = [target.layered.source_sequence(seq) for seq in lost]
        ssrc = ssrc_of[current]
    wanted = [seq for seq in source if seq is not None]
    return (ssrc, wanted[:64]) if wanted else None


def target_bps(publication: Publication, target: Target, now: float) -> float:
    layered, state = publication.layered, target.layered
    if layered is None or state is None or state.switch.current is None:
        return 0.0
    return layered.meters[state.switch.current].bitrate(now)
