"""``MediaNode``'s part for participants on one connection (protocol 11.15.2): subscriptions
added to their connection, offers pulled and answered through the control API, RTCP on the
shared transport dispatched by SSRC. The connection itself is media/bundling.py."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

from media import errors
from media.bundle import Offer, rtcp_media_ssrcs
from media.bundling import Bundle
from media.forwarding import Forwarder, KeyframeRequest, Kind, Source
from media.nat import announce
from media.peer import Downlink, Uplink
from media.udpmux import UdpMux

if TYPE_CHECKING:
    from media.node import NodeLimits


class BundledConnections:
    forwarder: Forwarder
    downlinks: dict[str, Downlink]
    bundles: dict[tuple[str, str], Bundle]
    mux: UdpMux | None
    limits: NodeLimits
    _loop: asyncio.AbstractEventLoop

    if TYPE_CHECKING:

        async def _send_pli(self, request: KeyframeRequest) -> None: ...
        async def _feedback(self, downlink: Downlink, data: bytes) -> None: ...

    def _subscribe_bundled(
        self, bundle: Bundle, publisher: str, source: Source, kinds: tuple[Kind, ...]
    ) -> str:
        found = bundle.find(publisher, source)
        if found is not None:
            return found  # asked again (a takeover re-subscribes): the one it has
        room, subscriber = bundle.room, bundle.participant
        # only the sections the publisher sends: an audio-only one gets no idle video section
        sends = self.forwarder.participant(room, publisher).by_track
        kinds = tuple(k for k in kinds if (source, k) in sends) or kinds
        sub_id = secrets.token_urlsafe(12)
        # legs are known once the answer is in; inactive until then
        self.forwarder.subscribe(room, subscriber, publisher, sub_id, [], source)
        senders = bundle.add(sub_id, publisher, source, kinds)
        downlink = Downlink(sub_id, room, subscriber, publisher, bundle.pc, senders, "")
        downlink.shared = True
        downlink.prepare(self.mux.sender if self.mux is not None else None)
        self.downlinks[sub_id] = downlink
        return sub_id

    def _bundle(self, room: str, participant: str) -> Bundle | None:
        self.forwarder.participant(room, participant)
        return self.bundles.get((room, participant))

    async def offer(self, room: str, participant: str) -> Offer | None:
        """The participant's outstanding offer (made now if something changed), or None:
        nothing to negotiate, or a participant with a connection per subscription."""
        bundle = self._bundle(room, participant)
        if bundle is None:
            return None
        offer = await bundle.offer()
        if offer is None:
            return None
        return Offer(offer.revision, announce(offer.sdp, self.limits.public_ip), offer.streams)

    async def accept_offer_answer(
        self, room: str, participant: str, revision: int, answer_sdp: str
    ) -> Offer | None:
        """Apply the answer to offer ``revision``; the next offer if more changed meanwhile."""
        bundle = self._bundle(room, participant)
        if bundle is None:
            raise errors.NotBundled(f"{participant!r} did not join with one connection")
        for sub_id, legs in (await bundle.answer(revision, answer_sdp)).items():
            sub = self.forwarder.subscriptions.get(sub_id)
            if sub is not None and not sub.active:
                sub.legs = {leg.kind: leg for leg in legs}
        await self._activate(bundle, list(bundle.receiving))
        return await self.offer(room, participant)

    async def _activate(self, bundle: Bundle, sub_ids: list[str]) -> None:
        """Forward to the subscriptions whose sections are answered, once the transport is up."""
        if bundle.pc.connectionState != "connected":
            return
        for sub_id in sub_ids:
            sub = self.forwarder.subscriptions.get(sub_id)
            if sub is None or sub.active or not sub.legs:
                continue
            for request in self.forwarder.activate(sub_id, self._loop.time()):
                await self._send_pli(request)

    def _on_bundle_rtcp(self, uplink: Uplink, bundle: Bundle, aiortc_rtcp: Any) -> Any:
        """RTCP on a bundled transport: sender reports about what the participant publishes
        go to the forwarder; PLI/FIR/NACK/RR about our sending SSRCs to their subscription;
        then aiortc's senders see it for their RTT estimate."""

        async def on_rtcp(data: bytes) -> None:
            self.forwarder.handle_publisher_rtcp(
                uplink.room, uplink.participant, data, self._loop.time()
            )
            for sub_id in dict.fromkeys(
                bundle.by_ssrc[s] for s in rtcp_media_ssrcs(data) if s in bundle.by_ssrc
            ):
                downlink = self.downlinks.get(sub_id)
                if downlink is not None:
                    await self._feedback(downlink, data)
            await aiortc_rtcp(data)

        return on_rtcp
