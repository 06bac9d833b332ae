"""One SFU node: the pure ``Forwarder`` plus the aiortc connections it forwards between.

Packets are forwarded in the datagram callback of the node's shared UDP socket (media/udpmux.py:
decrypt once, rewrite the header per subscriber, protect per downlink, one ``sendmmsg`` for all
of them), so there is no queue, coroutine or task per packet. Without a mux (each connection on
aioice's own sockets) they are forwarded inside the publisher's DTLS receive loop.
A ticker sends coalesced keyframe requests and receiver reports to publishers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from media import errors
from media.bundle import Numbering
from media.bundled_node import BundledConnections
from media.bundling import Bundle
from media.forwarding import (
    DEFAULT_MAX_PARTICIPANTS,
    Counters,
    Forwarder,
    KeyframeRequest,
    Kind,
    Source,
)
from media.nat import announce
from media.peer import (
    Downlink,
    Uplink,
    answer_uplink,
    close_peer,
    downlink_legs,
    intercept_downlink_rtcp,
    intercept_uplink,
    new_peer_connection,
    offer_downlink,
    parse_sdp,
    receive_directly,
)
from media.ratecap import RateCaps
from media.rtp import build_nack, build_pli, build_remb
from media.selection import (
    padding_due,
    publisher_rembs,
    select_layers,
    set_view,
    simulcast_stats,
)
from media.shield import Dropped, dtls_transports, guard_transport
from media.simulcast_sdp import accepted_simulcast
from media.udpmux import UdpMux

log = logging.getLogger("callbook.media")

TICK_S = 0.1
#: Padding is sent in steps this far apart: a few packets at a time, never a burst.
PACE_S = 0.01
REPORT_EVERY_TICKS = 10
UNANSWERED_TTL_S = 30.0  # a subscription offer nobody answered is closed after this


@dataclass(frozen=True)
class NodeLimits:
    max_rooms: int = 100
    max_participants: int = DEFAULT_MAX_PARTICIPANTS
    caps: RateCaps = field(default_factory=RateCaps)
    #: Behind a 1:1 NAT: the public address our SDP names (media/nat.py).
    public_ip: str | None = None
    #: Padding probes on subscribers' RTX streams (``--padding-probes``; media/probing.py).
    padding_probes: bool = False


Slow = list[tuple[Downlink, bytes]]


class MediaNode(BundledConnections):
    def __init__(self, limits: NodeLimits | None = None, mux: UdpMux | None = None) -> None:
        self.limits = limits or NodeLimits()
        self.forwarder = Forwarder(
            max_rooms=self.limits.max_rooms,
            caps=self.limits.caps,
            padding_probes=self.limits.padding_probes,
        )
        self.uplinks: dict[tuple[str, str], Uplink] = {}
        #: Second uplinks: a participant's shared screen (one video track), while it shares.
        self.screens: dict[tuple[str, str], Uplink] = {}
        self.downlinks: dict[str, Downlink] = {}
        #: Participants with one connection for everything (joined with ``bundle``).
        self.bundles: dict[tuple[str, str], Bundle] = {}
        #: Every connection's ICE on one UDP port (None: aioice's own socket per connection).
        self.mux = mux
        # below the forwarder: hostile or stray datagrams (the mux counts the unroutable ones)
        self.dropped = mux.dropped if mux is not None else Dropped()
        self._loop = asyncio.get_running_loop()
        self._ticker = asyncio.create_task(self._tick())
        # Only padding probes need a pacer: with them off (the default) no task wakes for it.
        self._pacer = asyncio.create_task(self._pace()) if self.forwarder.padding_probes else None
        self._closing: set[asyncio.Task[None]] = set()
        self._sending: set[asyncio.Task[None]] = set()  # packets only aiortc's path can send
        #: Shutting down (media/drain.py): the rooms here run on, no new one opens.
        self.draining = False

    # --- rooms and participants -------------------------------------------------------------

    def create_room(self, room: str, max_participants: int | None = None) -> bool:
        if self.draining and room not in self.forwarder.rooms:
            raise errors.Draining("this media node is draining; place the room on another")
        limit = min(max_participants or self.limits.max_participants, self.limits.max_participants)
        return self.forwarder.create_room(room, limit)

    async def open_room(self, room: str, max_participants: int | None = None) -> bool:
        """``create_room`` as the control API calls it (``media.backend.Rooms``)."""
        return self.create_room(room, max_participants)

    def open_rooms(self) -> int:
        return len(self.forwarder.rooms)

    async def refresh(self) -> None:
        """Nothing to fetch: ``node_stats`` reads this process's counters."""

    async def delete_room(self, room: str) -> None:
        found = self.forwarder.room(room)
        names = list(found.participants)
        pcs = self._release(self.forwarder.delete_room(room))
        for name in names:
            self.bundles.pop((room, name), None)
        pcs += [self.uplinks.pop((room, n)).pc for n in names if (room, n) in self.uplinks]
        pcs += [self.screens.pop((room, n)).pc for n in names if (room, n) in self.screens]
        await _close_all(pcs)

    async def join(self, room: str, participant: str, offer_sdp: str, bundle: bool = False) -> str:
        """The participant's uplink: answer its offer and forward what it publishes.
        ``bundle``: what it receives comes over this same connection, added by our offers
        (``offer``/``accept_offer_answer``) instead of a connection per subscription."""
        self.forwarder.check_admission(room, participant)
        pc = new_peer_connection(bundle)
        try:
            answer, published = await answer_uplink(pc, offer_sdp, self.mux)
            # The room may have changed while we awaited aiortc.
            self.forwarder.add_participant(room, participant)
            if bundle:
                numbering = Numbering.of(parse_sdp(offer_sdp), parse_sdp(answer))
                numbering.simulcast = accepted_simulcast(answer)
                self.bundles[(room, participant)] = Bundle(room, participant, pc, numbering)
            self._start_uplink(Uplink(room, participant, pc, published), self.uplinks)
        except BaseException:
            await close_peer(pc)
            raise
        return announce(answer, self.limits.public_ip)

    async def publish_screen(self, room: str, participant: str, offer_sdp: str) -> str:
        """A participant's second uplink: its shared screen, one video track, forwarded like
        its camera to those who subscribe to it (``subscribe(..., Source.SCREEN)``)."""
        self.forwarder.participant(room, participant)
        if (room, participant) in self.screens:
            raise errors.InvalidState(f"{participant!r} already shares a screen")
        pc = new_peer_connection()
        try:
            answer, published = await answer_uplink(pc, offer_sdp, self.mux, only=Kind.VIDEO)
            self.forwarder.participant(room, participant)  # still there after the await
            if (room, participant) in self.screens:
                raise errors.InvalidState(f"{participant!r} already shares a screen")
            uplink = Uplink(room, participant, pc, published, Source.SCREEN)
            self._start_uplink(uplink, self.screens)
        except BaseException:
            await close_peer(pc)
            raise
        return announce(answer, self.limits.public_ip)

    async def unpublish_screen(self, room: str, participant: str) -> None:
        """The screen is no longer shared: its uplink and every subscription to it close."""
        pcs = self._release(self.forwarder.unpublish(room, participant, Source.SCREEN))
        uplink = self.screens.pop((room, participant), None)
        if uplink is not None:
            pcs.append(uplink.pc)
        await _close_all(pcs)

    def _start_uplink(self, uplink: Uplink, registry: dict[tuple[str, str], Uplink]) -> None:
        room, participant, pc = uplink.room, uplink.participant, uplink.pc
        for stream in uplink.published:
            self.forwarder.publish(
                room, participant, stream.kind, stream.ssrc, stream.payload_type,
                stream.extensions, uplink.source, stream.rids,
            )  # fmt: skip
        registry[(room, participant)] = uplink
        forward = self._forward(uplink)
        bundle = self.bundles.get((room, participant)) if registry is self.uplinks else None
        for dtls in uplink.dtls:
            if self.mux is not None:
                receive_directly(dtls, self._forward_now(forward))  # before the shield
            guard_transport(dtls, self.dropped)
            on_rtcp = self._on_uplink_rtcp(uplink)
            if bundle is not None:
                on_rtcp = self._on_bundle_rtcp(uplink, bundle, dtls._handle_rtcp_data)
            intercept_uplink(dtls, self._on_uplink_rtp(forward), on_rtcp)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected" and bundle is not None:
                self._spawn(self._activate(bundle, list(bundle.receiving)))
            # We pop a leg before closing it: one still registered died by itself.
            if pc.connectionState not in ("failed", "closed"):
                return
            if registry.get((room, participant)) is not uplink:
                return
            if uplink.source is Source.SCREEN:
                # A screen's end is no loss of the participant's media: the sharer closes it
                # (maybe before its ``unpublish`` reaches us), or it ended with the share.
                self._spawn(self._screen_ended(room, participant))
            else:
                self.forwarder.leg_failed(room, participant)

    async def _screen_ended(self, room: str, participant: str) -> None:
        with contextlib.suppress(errors.MediaError):  # the participant or room went meanwhile
            await self.unpublish_screen(room, participant)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _uplink(self, room: str, participant: str, source: Source) -> Uplink | None:
        registry = self.screens if source is Source.SCREEN else self.uplinks
        return registry.get((room, participant))

    async def leave(self, room: str, participant: str) -> None:
        gone = self.forwarder.remove_participant(room, participant)
        self.bundles.pop((room, participant), None)
        pcs = self._release(gone)
        for registry in (self.uplinks, self.screens):
            uplink = registry.pop((room, participant), None)
            if uplink is not None:
                pcs.append(uplink.pc)
        await _close_all(pcs)

    async def subscribe(
        self, room: str, subscriber: str, publisher: str, source: Source = Source.CAMERA
    ) -> tuple[str, str | None]:
        """A downlink to ``subscriber`` carrying ``publisher``'s ``source`` (camera: audio and
        video; screen: video): returns (id, our offer SDP). A bundled subscriber gets it on
        its one connection: (id, None), and ``offer`` has the SDP that adds it."""
        self.forwarder.participant(room, subscriber)
        self.forwarder.participant(room, publisher)
        if subscriber == publisher:
            raise errors.InvalidState("a participant cannot subscribe to itself")
        kinds = (Kind.VIDEO,) if source is Source.SCREEN else (Kind.AUDIO, Kind.VIDEO)
        bundle = self.bundles.get((room, subscriber))
        if bundle is not None:
            return self._subscribe_bundled(bundle, publisher, source, kinds), None
        pc = new_peer_connection()
        try:
            offer, senders = await offer_downlink(pc, kinds, self.mux)
            sub_id = secrets.token_urlsafe(12)
            legs = downlink_legs(parse_sdp(offer), None)
            self.forwarder.subscribe(room, subscriber, publisher, sub_id, legs, source)
        except BaseException:
            await close_peer(pc)
            raise
        downlink = Downlink(
            sub_id, room, subscriber, publisher, pc, senders, offer, self._loop.time()
        )
        downlink.prepare(self.mux.sender if self.mux is not None else None)
        self.downlinks[sub_id] = downlink
        for dtls in dtls_transports(pc):
            guard_transport(dtls, self.dropped)
        if downlink.transport is not None:
            intercept_downlink_rtcp(downlink.transport, self._on_downlink_rtcp(downlink))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                for request in self.forwarder.activate(sub_id, self._loop.time()):
                    await self._send_pli(request)
            elif pc.connectionState in ("failed", "closed") and self.downlinks.get(sub_id) is (
                downlink
            ):
                # Nothing will flow again on this leg. A subscriber closes a downlink itself
                # when its publisher leaves the roster (maybe before we hear of the leave): only
                # a failure (ICE consent lost, DTLS failed) means its media was lost.
                if pc.connectionState == "failed":
                    self.forwarder.leg_failed(room, subscriber)
                await self.drop_subscription(sub_id)

        return sub_id, announce(offer, self.limits.public_ip)

    async def drop_subscription(self, sub_id: str) -> None:
        self.forwarder.unsubscribe(sub_id)
        await _close_all(self._release([sub_id]))

    def _release(self, sub_ids: list[str]) -> list[RTCPeerConnection]:
        """Forget these subscriptions' downlinks: the connections of their own to close; the
        sections of one on a bundled connection go inactive in its next offer."""
        pcs = []
        for sub_id in sub_ids:
            downlink = self.downlinks.pop(sub_id, None)
            if downlink is None:
                continue
            if not downlink.shared:
                pcs.append(downlink.pc)
            elif (bundle := self.bundles.get((downlink.room, downlink.subscriber))) is not None:
                bundle.remove(sub_id)
        return pcs

    async def set_view(
        self,
        room: str,
        subscriber: str,
        publisher: str,
        source: Source,
        max_height: int | None,
    ) -> None:
        set_view(self.forwarder, room, subscriber, publisher, source, max_height)

    async def accept_answer(self, room: str, subscriber: str, sub_id: str, answer_sdp: str) -> None:
        downlink = self.downlinks.get(sub_id)
        if downlink is None or (downlink.room, downlink.subscriber) != (room, subscriber):
            raise errors.SubscriptionNotFound(f"no subscription {sub_id!r} for {subscriber!r}")
        if downlink.pc.signalingState != "have-local-offer":
            raise errors.InvalidState(f"subscription is in state {downlink.pc.signalingState!r}")
        answer = parse_sdp(answer_sdp)
        try:
            await downlink.pc.setRemoteDescription(
                RTCSessionDescription(sdp=answer_sdp, type="answer")
            )
        except Exception as exc:
            raise errors.InvalidSdp(f"cannot apply this answer: {exc}") from exc
        sub = self.forwarder.subscriptions.get(sub_id)
        if sub is not None:
            sub.legs = {leg.kind: leg for leg in downlink_legs(parse_sdp(downlink.offer), answer)}

    # --- packet paths -----------------------------------------------------------------------

    def _forward(self, uplink: Uplink) -> Callable[[bytes], Slow]:
        """One pass per packet: rewrite, protect and send to every subscriber (one
        ``sendmmsg`` on the shared socket); returns what only aiortc's async path can send."""
        forwarder, downlinks, loop = self.forwarder, self.downlinks, self._loop
        flush = self.mux.sender.flush if self.mux is not None else None
        room, name = uplink.room, uplink.participant

        def forward(data: bytes) -> Slow:
            now = loop.time()
            slow: Slow = []
            for sub_id, packet in forwarder.handle_rtp(room, name, data, now):
                downlink = downlinks.get(sub_id)
                if downlink is not None and not downlink.send_now(packet, now):
                    slow.append((downlink, packet))
            if flush is not None:
                flush()
            return slow

        return forward

    def _forward_now(self, forward: Callable[[bytes], Slow]) -> Callable[[bytes], None]:
        def on_rtp(data: bytes) -> None:
            slow = forward(data)
            if slow:
                task = asyncio.create_task(_send_slow(slow))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

        return on_rtp

    def _on_uplink_rtp(self, forward: Callable[[bytes], Slow]) -> Any:
        async def on_rtp(data: bytes) -> None:
            await _send_slow(forward(data))

        return on_rtp

    def _on_uplink_rtcp(self, uplink: Uplink) -> Any:
        async def on_rtcp(data: bytes) -> None:
            self.forwarder.handle_publisher_rtcp(
                uplink.room, uplink.participant, data, self._loop.time()
            )

        return on_rtcp

    def _on_downlink_rtcp(self, downlink: Downlink) -> Any:
        async def on_rtcp(data: bytes) -> None:
            await self._feedback(downlink, data)

        return on_rtcp

    async def _feedback(self, downlink: Downlink, data: bytes) -> None:
        feedback = self.forwarder.handle_subscriber_rtcp(downlink.id, data, self._loop.time())
        for request in feedback.keyframes:
            await self._send_pli(request)
        for packet in feedback.retransmit:
            await downlink.send_raw(packet)
        for nack in feedback.upstream_nacks:
            uplink = self._uplink(nack.room, nack.publisher, nack.source)
            if uplink is not None:
                await uplink.send_rtcp(build_nack(uplink.rtcp_ssrc, nack.ssrc, nack.lost))

    async def _send_publisher_rembs(self, now: float, every_second: bool) -> None:
        """Simulcast publishers are told the node's video cap (``selection.publisher_rembs``)."""
        for room, name, source, ssrcs, bps in publisher_rembs(self.forwarder, now, every_second):
            uplink = self._uplink(room, name, source)
            if uplink is not None:
                await uplink.send_rtcp(build_remb(uplink.rtcp_ssrc, bps, ssrcs))

    async def _send_pli(self, request: KeyframeRequest) -> None:
        uplink = self._uplink(request.room, request.publisher, request.source)
        if uplink is not None:
            await uplink.send_rtcp(build_pli(uplink.rtcp_ssrc, request.ssrc))

    async def _tick(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(TICK_S)
            ticks += 1
            now = self._loop.time()
            try:
                requests = self.forwarder.due_keyframe_requests(now)
                for request in requests + select_layers(self.forwarder, now):
                    await self._send_pli(request)
                await self._send_publisher_rembs(now, ticks % REPORT_EVERY_TICKS == 0)
                if ticks % REPORT_EVERY_TICKS == 0:
                    for stale in [
                        d.id
                        for d in self.downlinks.values()
                        if not d.shared
                        and d.pc.signalingState == "have-local-offer"
                        and now - d.created_at > UNANSWERED_TTL_S
                    ]:
                        await self.drop_subscription(stale)
                    for uplink in [*self.uplinks.values(), *self.screens.values()]:
                        report = self.forwarder.receiver_report(
                            uplink.room, uplink.participant, uplink.rtcp_ssrc, now, uplink.source
                        )
                        if report is not None:
                            await uplink.send_rtcp(report)
            except errors.MediaError:
                continue  # a participant left between the lookups
            except Exception:
                log.exception("media ticker")

    async def _pace(self) -> None:
        """Padding probes (``media.probing``), a few packets every ``PACE_S`` while any runs."""
        flush = self.mux.sender.flush if self.mux is not None else None
        while True:
            await asyncio.sleep(PACE_S if self.forwarder.pacing else TICK_S)
            now = self._loop.time()
            try:
                slow: Slow = []
                for sub_id, packet in padding_due(self.forwarder, now):
                    downlink = self.downlinks.get(sub_id)
                    if downlink is not None and not downlink.send_now(packet, now):
                        slow.append((downlink, packet))
                if flush is not None:
                    flush()
                await _send_slow(slow)
            except Exception:
                log.exception("media pacer")

    # --- stats ------------------------------------------------------------------------------

    async def room_stats(self, room: str) -> dict[str, Any]:
        found = self.forwarder.room(room)
        now = self._loop.time()
        participants = []
        for name, participant in found.participants.items():
            uplink = self.uplinks.get((room, name))
            entry: dict[str, Any] = {
                "participant": name,
                "publishing": {
                    "audio": (Source.CAMERA, Kind.AUDIO) in participant.by_track,
                    "video": (Source.CAMERA, Kind.VIDEO) in participant.by_track,
                    "screen": (Source.SCREEN, Kind.VIDEO) in participant.by_track,
                },
                "ice_state": uplink.pc.iceConnectionState if uplink else "closed",
                "packets_in": participant.packets_in,
                "bytes_in": participant.bytes_in,
                "media_failed": participant.media_failed,
                **self._connections_of(room, name),
            }
            entry.update(await self._downlink_quality(room, name))
            participants.append(entry)
        return {
            "room": room,
            "max_participants": found.max_participants,
            "participants": participants,
            "subscriptions": len(found.subscriptions),
            "active_speaker": self.forwarder.active_speaker(room, now),
            **_counters(found.counters),
        }

    async def _downlink_quality(self, room: str, subscriber: str) -> dict[str, float]:
        """RTT from aiortc's senders (SR/RR round trip), loss/jitter from the RRs we parsed."""
        rtts: list[float] = []
        losses: list[float] = []
        jitters: list[float] = []
        for downlink in self.downlinks.values():
            if downlink.room != room or downlink.subscriber != subscriber:
                continue
            for sender in downlink.senders.values():
                report = await sender.getStats()
                for stat in report.values():
                    rtt = getattr(stat, "roundTripTime", None)
                    if stat.type == "remote-inbound-rtp" and rtt is not None:
                        rtts.append(rtt * 1000)
            sub = self.forwarder.subscriptions.get(downlink.id)
            if sub is None:
                continue
            publisher = self.forwarder.rooms[room].participants.get(sub.publisher)
            for publication in publisher.by_track.values() if publisher else ():
                target = publication.targets.get(downlink.id)
                if target is not None and target.fraction_lost is not None:
                    losses.append(target.fraction_lost)
                if target is not None and target.jitter_ms is not None:
                    jitters.append(target.jitter_ms)
        out = {}
        if rtts:
            out["rtt_ms"] = round(sum(rtts) / len(rtts), 2)
        if losses:
            out["loss"] = round(max(losses), 4)
        if jitters:
            out["jitter_ms"] = round(max(jitters), 2)
        return out

    def _connections_of(self, room: str, name: str) -> dict[str, int]:
        """The participant's peer connections and DTLS sessions on this node (bundled: 1,
        plus one while it shares its screen)."""
        pcs = {id(u.pc): u.pc for r in (self.uplinks, self.screens) if (u := r.get((room, name)))}
        for d in self.downlinks.values():
            if (d.room, d.subscriber) == (room, name):
                pcs[id(d.pc)] = d.pc
        sessions = {id(t) for pc in pcs.values() for t in dtls_transports(pc)}
        return {"peer_connections": len(pcs), "dtls_sessions": len(sessions)}

    def _peer_connections(self) -> list[RTCPeerConnection]:
        pcs = {id(u.pc): u.pc for r in (self.uplinks, self.screens) for u in r.values()}
        pcs.update((id(d.pc), d.pc) for d in self.downlinks.values())
        return list(pcs.values())

    def node_stats(self) -> dict[str, Any]:
        counters = _counters(self.forwarder.counters)
        dropped = dict(counters.pop("dropped"))
        dropped.update(self.dropped.as_dict())
        return {
            **(self.mux.stats() if self.mux is not None else {}),
            "draining": self.draining,
            "rooms": len(self.forwarder.rooms),
            "participants": sum(len(r.participants) for r in self.forwarder.rooms.values()),
            "subscriptions": len(self.forwarder.subscriptions),
            "uplinks": len(self.uplinks) + len(self.screens),
            "downlinks": len(self.downlinks),
            "bundles": len(self.bundles),
            "peer_connections": len(self._peer_connections()),
            "dropped": dropped,
            **counters,
            **simulcast_stats(self.forwarder, self._loop.time()),
        }

    async def close(self) -> None:
        for task in (self._ticker, self._pacer):
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pcs = self._peer_connections()
        self.bundles.clear()
        self.downlinks.clear()
        self.uplinks.clear()
        self.screens.clear()
        await _close_all(pcs)


async def _send_slow(slow: Slow) -> None:
    for downlink, packet in slow:
        await downlink.send(packet)


def _counters(counters: Counters) -> dict[str, Any]:
    return {
        "received_packets": counters.received_packets,
        "forwarded_packets": counters.forwarded_packets,
        "forwarded_bytes": counters.forwarded_bytes,
        "retransmitted_packets": counters.retransmitted_packets,
        "keyframe_requests": counters.keyframe_requests,
        "keyframe_requests_received": counters.keyframe_requests_received,
        "keyframe_requests_coalesced": counters.keyframe_requests_coalesced,
        "held_for_keyframe": counters.held_for_keyframe,
        "padding_only": counters.padding_only,
        "legs_failed": counters.legs_failed,
        "layer_switches": counters.layer_switches,
        "probes": counters.probes,
        "padding_probes": counters.padding_probes,
        "probe_padding_packets": counters.probe_padding_packets,
        "probe_padding_bytes": counters.probe_padding_bytes,
        "dropped": dict(counters.dropped),
    }


async def _close_all(pcs: list[RTCPeerConnection]) -> None:
    distinct = {id(pc): pc for pc in pcs}.values()  # a bundled one is named by each leg
    results = await asyncio.gather(*(close_peer(pc) for pc in distinct), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("closing a peer connection failed: %r", result)
