"""The pure forwarding core: who gets which packet, keyframe requests, active speaker, counters.

No I/O and no asyncio: every entry point takes ``now`` (seconds, monotonic) and returns what the
adapter should send. Rooms hold participants; a participant publishes at most one audio and one
video stream from its camera and microphone, and at most one video stream of its shared screen
(each known by SSRC from its offer); a subscription is one downlink leg set carrying one source
(camera or screen) of one publisher to one subscriber, inactive until the subscriber's
transport is up.
"""

from __future__ import annotations

import math

from media import errors
from media.bandwidth import SubscriberEstimate
from media.layered import (
    LayeredTarget,
    LayeredVideo,
    forget_ssrcs,
    learn_layer,
    receive_layered,
    target_bps,
    upstream_nack,
)
from media.probing import PaddingProbe
from media.ratecap import RateCaps, TokenBucket
from media.rooms import (
    ABS_SEND_TIME_URI,
    AUDIO_LEVEL_URI,
    CLOCK_RATE,
    DEFAULT_MAX_PARTICIPANTS,
    RETRANSMIT_SLOTS,
    Counters,
    Drop,
    Feedback,
    KeyframeRequest,
    Kind,
    Leg,
    NackRequest,
    Participant,
    Publication,
    Reception,
    RetransmitCache,
    Room,
    Source,
    Subscription,
    Target,
    Track,
)
from media.rtp import (
    MalformedPacket,
    Nack,
    PictureLoss,
    ReceiverReport,
    Remb,
    SenderReport,
    audio_level,
    build_receiver_report,
    build_rtp,
    parse_rtcp,
    parse_rtp,
    remap_extensions,
    vp8_keyframe_start,
)
from media.simulcast_sdp import REPAIRED_RID_URI, RID_URI

__all__ = [  # the model's names, re-exported: callers import them from here
    "ABS_SEND_TIME_URI",
    "AUDIO_LEVEL_URI",
    "CLOCK_RATE",
    "DEFAULT_MAX_PARTICIPANTS",
    "RETRANSMIT_SLOTS",
    "Counters",
    "Drop",
    "Feedback",
    "Forwarder",
    "KeyframeRequest",
    "Kind",
    "Leg",
    "NackRequest",
    "Participant",
    "Publication",
    "Reception",
    "RetransmitCache",
    "Room",
    "Source",
    "Subscription",
    "Target",
    "Track",
]

KEYFRAME_INTERVAL_S = 0.5


class Forwarder:
    def __init__(
        self,
        max_rooms: int = 1000,
        keyframe_interval_s: float = KEYFRAME_INTERVAL_S,
        caps: RateCaps | None = None,
        padding_probes: bool = False,
    ):
        self.max_rooms = max_rooms
        #: Padding probes (media/probing.py) instead of layer trials alone: off unless asked,
        #: as they climbed back slower than trials in the network lab (docs/benchmarks.md).
        self.padding_probes = padding_probes
        self.keyframe_interval_s = keyframe_interval_s
        caps = caps or RateCaps()
        self.cap_kbps = {Kind.AUDIO: caps.audio_kbps, Kind.VIDEO: caps.video_kbps}
        self.rooms: dict[str, Room] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.counters = Counters()
        # padding probes running now (``media.selection`` rebuilds it every tick)
        self.pacing: list[tuple[Room, PaddingProbe]] = []

    # --- membership -------------------------------------------------------------------------

    def create_room(self, name: str, max_participants: int = DEFAULT_MAX_PARTICIPANTS) -> bool:
        """True if created, False if it already existed (creation is idempotent)."""
        if name in self.rooms:
            return False
        if len(self.rooms) >= self.max_rooms:
            raise errors.TooManyRooms(f"this node holds at most {self.max_rooms} rooms")
        self.rooms[name] = Room(name, max_participants)
        return True

    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            raise errors.RoomNotFound(f"no room {name!r}")
        return room

    def participant(self, room: str, name: str) -> Participant:
        found = self.room(room).participants.get(name)
        if found is None:
            raise errors.ParticipantNotFound(f"no participant {name!r} in room {room!r}")
        return found

    def delete_room(self, name: str) -> list[str]:
        """Removes the room; returns the subscription ids whose legs the adapter must close."""
        room = self.room(name)
        gone = list(room.subscriptions)
        for sub_id in gone:
            self.subscriptions.pop(sub_id, None)
        del self.rooms[name]
        return gone

    def check_admission(self, room: str, name: str) -> None:
        """Raises unless ``name`` could join ``room`` now (so no peer is built for nothing)."""
        found = self.room(room)
        if name in found.participants:
            raise errors.ParticipantExists(f"{name!r} is already in room {room!r}")
        if len(found.participants) >= found.max_participants:
            raise errors.RoomFull(f"room {room!r} holds at most {found.max_participants}")

    def add_participant(self, room: str, name: str) -> None:
        self.check_admission(room, name)
        self.rooms[room].participants[name] = Participant(name)

    def leg_failed(self, room: str, name: str) -> None:
        """A leg of ``name`` died (transport closed or failed) while it was still in the room."""
        found = self.rooms.get(room)
        participant = found.participants.get(name) if found is not None else None
        if found is None or participant is None:
            return
        participant.media_failed = True
        self.counters.legs_failed += 1
        found.counters.legs_failed += 1

    def publish(
        self,
        room: str,
        name: str,
        kind: Kind,
        ssrc: int,
        payload_type: int,
        extensions: dict[str, int] | None = None,
        source: Source = Source.CAMERA,
        rids: tuple[str, ...] = (),
    ) -> None:
        """``rids``: a simulcast video track, layers lowest first; their SSRCs are learnt from
        the RID extension of their packets (``ssrc`` is then unused)."""
        participant = self.participant(room, name)
        other = participant.by_ssrc.get(ssrc)
        if not rids and other is not None and (other.source, other.kind) != (source, kind):
            # Two uplinks of one participant (camera, screen) share its SSRC space here.
            raise errors.InvalidSdp(f"SSRC {ssrc} is already published by {name!r}")
        ext = dict(extensions or {})
        old = participant.by_track.pop((source, kind), None)
        if old is not None:
            forget_ssrcs(participant, old)
        publication = Publication(
            room, name, kind, ssrc, payload_type, ext,
            ext.get(AUDIO_LEVEL_URI) if kind is Kind.AUDIO else None,
            Reception(CLOCK_RATE[kind]), TokenBucket(self.cap_kbps[kind]), source,
        )  # fmt: skip
        if rids and kind is Kind.VIDEO:
            publication.layered = LayeredVideo(rids, ext.get(RID_URI), ext.get(REPAIRED_RID_URI))
        else:
            participant.by_ssrc[ssrc] = publication
        participant.by_track[(source, kind)] = publication
        for sub in self.rooms[room].subscriptions.values():
            if sub.publisher == name and sub.source is source and sub.active:
                self._attach(sub, publication)

    def unpublish(self, room: str, name: str, source: Source) -> list[str]:
        """Stops forwarding ``source`` of ``name`` (a screen no longer shared): returns the
        subscriptions to it, which the adapter must close."""
        participant = self.participant(room, name)
        for publication in participant.sends(source):
            del participant.by_track[(source, publication.kind)]
            forget_ssrcs(participant, publication)
        found = self.rooms[room]
        gone = [
            s.id for s in found.subscriptions.values() if s.publisher == name and s.source is source
        ]
        for sub_id in gone:
            self.unsubscribe(sub_id)
        return gone

    def remove_participant(self, room: str, name: str) -> list[str]:
        """Drops the participant, its downlinks and every subscription to it (returned)."""
        found = self.room(room)
        self.participant(room, name)
        gone = [s.id for s in found.subscriptions.values() if name in (s.subscriber, s.publisher)]
        for sub_id in gone:
            self.unsubscribe(sub_id)
        del found.participants[name]
        found.speaker.forget(name)
        found.estimates.pop(name, None)
        found.probers.pop(name, None)
        found.paddings.pop(name, None)
        for key in [k for k in found.views if name in k[:2]]:
            del found.views[key]
        return gone

    def subscribe(
        self,
        room: str,
        subscriber: str,
        publisher: str,
        sub_id: str,
        legs: list[Leg],
        source: Source = Source.CAMERA,
    ) -> Subscription:
        self.participant(room, subscriber)
        if source is not Source.CAMERA and not self.participant(room, publisher).sends(source):
            raise errors.NotPublished(f"{publisher!r} publishes no {source.value}")
        self.participant(room, publisher)
        by_kind = {leg.kind: leg for leg in legs}
        sub = Subscription(sub_id, room, subscriber, publisher, by_kind, source=source)
        self.rooms[room].subscriptions[sub_id] = sub
        self.subscriptions[sub_id] = sub
        return sub

    def activate(self, sub_id: str, now: float) -> list[KeyframeRequest]:
        """The downlink is connected: start forwarding to it and ask for a keyframe at once."""
        sub = self.subscriptions.get(sub_id)
        if sub is None or sub.active:
            return []
        sub.active = True
        publisher = self.rooms[sub.room].participants[sub.publisher]
        requests = []
        for publication in publisher.sends(sub.source):
            self._attach(sub, publication)
            # a layered video asks once its layer is chosen (``media.selection``)
            if publication.kind is Kind.VIDEO and publication.layered is None:
                self.rooms[sub.room].counters.keyframe_requests_received += 1
                self.counters.keyframe_requests_received += 1
                request = self._keyframe(publication, now)
                if request is not None:
                    requests.append(request)
        return requests

    def _attach(self, sub: Subscription, publication: Publication) -> None:
        leg = sub.legs.get(publication.kind)
        if leg is None or publication.source is not sub.source:
            return
        mapping = {
            pub_id: leg.extensions[uri]
            for uri, pub_id in publication.extensions.items()
            if uri in leg.extensions
        }
        layered = publication.layered is not None
        publication.targets[sub.id] = Target(
            sub.id,
            leg,
            mapping,
            tuple(sorted(mapping.items())),
            # a layered target waits for a keyframe of its layer by itself (``LayerSwitch``)
            needs_keyframe=publication.kind is Kind.VIDEO and not layered,
            layered=LayeredTarget() if layered else None,
        )

    def unsubscribe(self, sub_id: str) -> None:
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            return
        room = self.rooms.get(sub.room)
        if room is None:
            return
        room.subscriptions.pop(sub_id, None)
        publisher = room.participants.get(sub.publisher)
        if publisher is not None:
            for publication in publisher.by_track.values():
                publication.targets.pop(sub_id, None)

    # --- packets ----------------------------------------------------------------------------

    def handle_rtp(self, room: str, name: str, data: bytes, now: float) -> list[tuple[str, bytes]]:
        """A decrypted packet from ``name``'s uplink -> (subscription id, packet) to send."""
        counters = self.counters
        counters.received_packets += 1
        found = self.rooms.get(room)
        participant = found.participants.get(name) if found is not None else None
        if found is None or participant is None:
            counters.drop(Drop.NOT_ADMITTED)
            return []
        found.counters.received_packets += 1
        try:
            view = parse_rtp(data)
        except MalformedPacket:
            counters.drop(Drop.MALFORMED)
            found.counters.drop(Drop.MALFORMED)
            return []
        publication = participant.by_ssrc.get(view.ssrc) or learn_layer(participant, data, view)
        if publication is None:
            counters.drop(Drop.UNKNOWN_SSRC)
            found.counters.drop(Drop.UNKNOWN_SSRC)
            return []
        if view.payload_type != publication.payload_type:
            counters.drop(Drop.UNKNOWN_PAYLOAD_TYPE)
            found.counters.drop(Drop.UNKNOWN_PAYLOAD_TYPE)
            return []
        if not publication.bucket.take(len(data), now):
            counters.drop(Drop.RATE_LIMITED)
            found.counters.drop(Drop.RATE_LIMITED)
            return []
        participant.packets_in += 1
        participant.bytes_in += len(data)
        layered = publication.layered
        if layered is not None:
            return receive_layered(
                (counters, found.counters), publication, layered, data, view, now
            )
        publication.reception.update(view.sequence, view.timestamp, now)
        if view.payload_end == view.header_length:
            # A padding-only bandwidth probe (a browser without RTX sends them on the media
            # SSRC): aiortc's VP8 decoder would take it for a frame and fail for good. Dropped,
            # and later packets are renumbered so the receiver sees no hole to NACK.
            counters.padding_only += 1
            found.counters.padding_only += 1
            publication.sequence.drop(view.sequence)
            return []
        sequence = publication.sequence.forward(view.sequence)
        if sequence != view.sequence:
            view = view._replace(sequence=sequence)
        if publication.audio_level_id is not None:
            try:
                level = audio_level(data, view, publication.audio_level_id)
            except MalformedPacket:
                level = None
            if level is not None:
                found.speaker.observe(name, level[1], now)
        out: list[tuple[str, bytes]] = []
        size = 0
        keyframe: bool | None = None
        payload = data[view.header_length :]
        blocks: dict[tuple[tuple[int, int], ...], bytes] = {}
        for target in publication.targets.values():
            if target.needs_keyframe:
                if keyframe is None:
                    keyframe = vp8_keyframe_start(data, view)
                if not keyframe:
                    counters.held_for_keyframe += 1
                    continue
                target.needs_keyframe = False
            ext = blocks.get(target.mapping_key)
            if ext is None:
                try:
                    ext = remap_extensions(data, view, target.mapping)
                except MalformedPacket:
                    counters.drop(Drop.MALFORMED)
                    found.counters.drop(Drop.MALFORMED)
                    return []
                blocks[target.mapping_key] = ext
            leg = target.leg
            packet = build_rtp(data, view, leg.ssrc, leg.payload_type, ext, payload)
            target.cache.put(view.sequence, packet)
            out.append((target.subscription, packet))
            size += len(packet)
        for c in (counters, found.counters):
            c.forwarded_packets += len(out)
            c.forwarded_bytes += size
        return out

    def handle_publisher_rtcp(self, room: str, name: str, data: bytes, now: float) -> None:
        """Remembers the publisher's sender reports so our receiver reports carry LSR/DLSR."""
        found = self.rooms.get(room)
        participant = found.participants.get(name) if found is not None else None
        if found is None or participant is None:
            self.counters.drop(Drop.NOT_ADMITTED)
            return
        try:
            items = parse_rtcp(data)
        except MalformedPacket:
            self.counters.drop(Drop.MALFORMED)
            found.counters.drop(Drop.MALFORMED)
            return
        for item in items:
            if isinstance(item, SenderReport):
                publication = participant.by_ssrc.get(item.ssrc)
                if publication is not None:
                    publication.reception.lsr = (item.ntp_timestamp >> 16) & 0xFFFFFFFF
                    publication.reception.sr_at = now

    def handle_subscriber_rtcp(self, sub_id: str, data: bytes, now: float) -> Feedback:
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            self.counters.drop(Drop.UNKNOWN_SUBSCRIPTION)
            return Feedback([], [])
        room = self.rooms[sub.room]
        try:
            items = parse_rtcp(data)
        except MalformedPacket:
            self.counters.drop(Drop.MALFORMED)
            room.counters.drop(Drop.MALFORMED)
            return Feedback([], [])
        publisher = room.participants[sub.publisher]
        by_leg_ssrc = {
            leg.ssrc: publisher.by_track.get((sub.source, kind)) for kind, leg in sub.legs.items()
        }
        keyframes: list[KeyframeRequest] = []
        retransmit: list[bytes] = []
        upstream: list[NackRequest] = []
        for item in items:
            if isinstance(item, PictureLoss):
                publication = by_leg_ssrc.get(item.media_ssrc)
                if publication is None or publication.kind is not Kind.VIDEO:
                    continue
                room.counters.keyframe_requests_received += 1
                self.counters.keyframe_requests_received += 1
                target = publication.targets.get(sub_id)
                if target is not None and target.layered is not None:
                    layer = target.layered.switch.current
                    request = (
                        None if layer is None else self.layer_keyframe(publication, layer, now)
                    )
                else:
                    request = self._keyframe(publication, now)
                if request is not None:
                    keyframes.append(request)
            elif isinstance(item, Nack):
                publication = by_leg_ssrc.get(item.media_ssrc)
                target = publication.targets.get(sub_id) if publication else None
                if target is None or publication is None:
                    continue
                missing = []
                for seq in item.lost:
                    packet = target.cache.get(seq)
                    if packet is not None:
                        retransmit.append(packet)
                    else:
                        missing.append(seq)
                if missing:
                    # The publisher retransmits on the media SSRC (no RTX is negotiated), so
                    # the repair reaches this subscriber through normal forwarding.
                    source = upstream_nack(publication, target, missing)
                    if source is not None:
                        upstream.append(NackRequest(sub.room, sub.publisher, *source, sub.source))
            elif isinstance(item, Remb):
                # By the streams it names: separate transports add up (media.bandwidth).
                estimate = room.estimates.setdefault(sub.subscriber, SubscriberEstimate())
                named = item.ssrcs or [leg.ssrc for leg in sub.legs.values()]
                estimate.remb(named, item.bitrate_bps, now)
            elif isinstance(item, (ReceiverReport, SenderReport)):
                for block in item.reports:
                    if any(block.ssrc == leg.rtx_ssrc for leg in sub.legs.values()):
                        # padding probes' stream (``media.probing``): does the link take them?
                        estimate = room.estimates.setdefault(sub.subscriber, SubscriberEstimate())
                        rate = estimate.value(now) or 0.0
                        estimate.loss(block.ssrc, block.fraction_lost / 256, rate, now)
                        continue
                    publication = by_leg_ssrc.get(block.ssrc)
                    target = publication.targets.get(sub_id) if publication else None
                    if target is None or publication is None:
                        continue
                    target.fraction_lost = block.fraction_lost / 256
                    target.jitter_ms = block.jitter * 1000 / CLOCK_RATE[publication.kind]
                    if target.layered is not None:
                        # Loss cuts what the whole downlink was estimated to carry.
                        estimate = room.estimates.setdefault(sub.subscriber, SubscriberEstimate())
                        rate = estimate.value(now) or target_bps(publication, target, now)
                        estimate.loss(block.ssrc, target.fraction_lost, rate, now)
        self.counters.retransmitted_packets += len(retransmit)
        room.counters.retransmitted_packets += len(retransmit)
        return Feedback(keyframes, retransmit, upstream)

    # --- keyframes and reports --------------------------------------------------------------

    def _keyframe(self, publication: Publication, now: float) -> KeyframeRequest | None:
        """At most one PLI per track per interval; a request inside it is remembered, not lost."""
        if now - publication.last_keyframe_request < self.keyframe_interval_s:
            if not publication.keyframe_pending:
                publication.keyframe_pending = True
            self.counters.keyframe_requests_coalesced += 1
            return None
        publication.last_keyframe_request = now
        publication.keyframe_pending = False
        self.counters.keyframe_requests += 1
        room = self.rooms.get(publication.room)
        if room is not None:
            room.counters.keyframe_requests += 1
        return KeyframeRequest(
            publication.room, publication.publisher, publication.ssrc, publication.source
        )

    def layer_keyframe(
        self, publication: Publication, layer: int, now: float
    ) -> KeyframeRequest | None:
        """A PLI for one simulcast layer's SSRC, at most once per interval per layer (repeated
        by ``media.selection`` while a subscription still waits for it)."""
        layered = publication.layered
        if layered is None or layer not in layered.ssrc_of:
            return None
        if now - layered.last_pli.get(layer, -math.inf) < self.keyframe_interval_s:
            return None
        layered.last_pli[layer] = now
        self.counters.keyframe_requests += 1
        room = self.rooms.get(publication.room)
        if room is not None:
            room.counters.keyframe_requests += 1
        return KeyframeRequest(
            publication.room, publication.publisher, layered.ssrc_of[layer], publication.source
        )

    def due_keyframe_requests(self, now: float) -> list[KeyframeRequest]:
        """Coalesced requests whose interval has passed, and repeats for legs still waiting
        for a keyframe (a PLI or the keyframe itself may have been lost); call a few times a
        second."""
        due = []
        for room in self.rooms.values():
            for participant in room.participants.values():
                for publication in participant.by_track.values():
                    waiting = any(t.needs_keyframe for t in publication.targets.values())
                    elapsed = now - publication.last_keyframe_request
                    if (publication.keyframe_pending or waiting) and (
                        elapsed >= self.keyframe_interval_s
                    ):
                        request = self._keyframe(publication, now)
                        if request is not None:
                            due.append(request)
        return due

    def receiver_report(
        self, room: str, name: str, sender_ssrc: int, now: float, source: Source = Source.CAMERA
    ) -> bytes | None:
        """An RTCP RR about what ``name`` publishes from ``source`` (one uplink), or None
        before any packet arrived."""
        participant = self.participant(room, name)
        receptions = []
        for publication in participant.sends(source):
            if publication.layered is None:
                receptions.append((publication.ssrc, publication.reception))
            else:
                receptions += list(publication.layer_receptions.items())
        blocks = [
            block
            for ssrc, reception in receptions
            if (block := reception.report(ssrc, now)) is not None
        ]
        return build_receiver_report(sender_ssrc, blocks) if blocks else None

    def active_speaker(self, room: str, now: float) -> str | None:
        return self.room(room).speaker.decide(now)
