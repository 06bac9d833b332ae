"""A softphone's media through the SFU: one connection for everything (protocol 11.15.2).

By default (``bundle``) the one connection that publishes this device's media also receives
everyone else's: the SFU adds a section per track with ``renegotiate`` offers, and the offer's
``streams`` say which participant (and source) each mid carries, for counting and for
decrypting. ``bundle=False`` is the old mode: one receiving connection per ``subscribe_offer``;
a server that refuses ``bundle`` (``invalid_message``) gets the same offer again without it.

Used for group calls and for 1:1 calls relayed through the SFU (hide-my-IP without TURN). Every
frame is end-to-end encrypted (docs/e2ee.md): ``keys`` holds this device's keys for the call and
puts the frame encryption into aiortc. What arrives (decrypted and decoded) is counted per
participant, so a bot can tell from whom it received audio and video. A participant's shared
screen (a second video track, ``subscribe_offer`` with ``source: "screen"``) is received too and
counted apart, in ``screens``, until its ``unpublished``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from signaling.protocol import messages as m
from signaling.sdk.e2ee.callkeys import CallKeys
from signaling.sdk.ice import codec_preferences
from signaling.sdk.line import Line, LineClosed
from signaling.sdk.media import (
    AudioSource,
    PatternTrack,
    Received,
    ToneTrack,
    packets_sent,
    peer_connection,
)
from signaling.sdk.shield import Dropped

Emit = Callable[[dict[str, Any]], None]


class SfuSession:
    def __init__(
        self,
        line: Line,
        call_id: str,
        *,
        participant: str,
        video: bool,
        emit: Emit,
        host: str | None = None,
        dropped: Dropped | None = None,
        audio: AudioSource = ToneTrack,
        bundle: bool = True,
    ) -> None:
        """``participant``: this device's id in the call's SFU room. ``host`` (an account id):
        leave when the host has left, as a guest bot should. ``bundle``: one connection."""
        profile = line.client.profile
        media_key = profile.media_key() if profile is not None else None
        if profile is None or media_key is None:
            raise ValueError("calls through the SFU need a device with a media key")
        self.keys = CallKeys(call_id, participant, profile.key(), media_key, line.send)
        self.line = line
        self._host = host
        self._host_seen = False
        self.call_id = call_id
        self.video = video
        self._audio = audio
        self._emit = emit
        self.dropped = dropped if dropped is not None else Dropped()
        self.bundle = bundle
        self._uplink = peer_connection([], relay_only=False, dropped=self.dropped, bundle=bundle)
        #: Bundled: what each mid of the one connection carries (the last ``renegotiate``).
        self.streams: dict[str, m.Stream] = {}
        #: Bundled: the last revision answered (a repeated ``renegotiate`` is ignored).
        self.revision = 0
        if bundle:
            self._uplink.on("track", self._on_bundled_track)
        self._downlinks: dict[str, tuple[str, RTCPeerConnection]] = {}
        #: The subscription of each participant's shared screen, while it shares.
        self._screen_subscriptions: dict[str, str] = {}
        #: Media received, per participant id of its sender.
        self.received: dict[str, Received] = {}
        #: Frames of shared screens received, per participant id of the sharer.
        self.screens: dict[str, Received] = {}
        #: Frames of each screen that has stopped, per sharer.
        self.screens_seen: dict[str, int] = {}
        self.roster: dict[str, m.Participant] = {}
        #: Every SDP the SFU sent this device, and every SDP it sent, for inspection.
        self.received_signaling: list[str] = []
        self.sent_signaling: list[str] = []
        self.sent_packets = 0
        #: The second sending connection while this device shares a (synthetic) screen.
        self._screen: RTCPeerConnection | None = None

    async def publish(self) -> None:
        tracks = [self._audio(), PatternTrack()] if self.video else [self._audio()]
        for track in tracks:
            # The encrypting encoders write VP8 and Opus: nothing else may be negotiated.
            sender = self._uplink.addTrack(track)
            self.keys.crypto.protect_sender(sender)
        for transceiver in self._uplink.getTransceivers():
            transceiver.setCodecPreferences(codec_preferences(transceiver.kind))
        # aiortc gathers every candidate inside setLocalDescription: the offer is complete.
        await self._uplink.setLocalDescription(await self._uplink.createOffer())
        offer = self._uplink.localDescription.sdp
        self.sent_signaling.append(offer)
        await self.line.send(m.Publish(call_id=self.call_id, sdp=offer, bundle=self.bundle))

    async def _publish_without_bundle(self, error: m.Error) -> None:
        """A server from before 11.15.2 (or one with bundling off) refuses ``publish {bundle}``
        with ``invalid_message`` naming no call: publish the same offer the old way, while ours
        is unanswered; what we receive then comes by ``subscribe_offer``."""
        if (
            error.code != "invalid_message"
            or "bundle" not in error.detail
            or not self.bundle
            or self._uplink.signalingState != "have-local-offer"
        ):
            return
        self.bundle = False
        offer = self._uplink.localDescription.sdp
        await self.line.send(m.Publish(call_id=self.call_id, sdp=offer))

    async def share_screen(self) -> None:
        """Share a screen (a moving pattern, like the camera's) as a second video track, on a
        second connection with the same media key: ``publish`` with ``source: "screen"``."""
        if self._screen is not None:
            return
        self._screen = peer_connection([], relay_only=False, dropped=self.dropped)
        sender = self._screen.addTrack(PatternTrack())
        self.keys.crypto.protect_sender(sender)
        for transceiver in self._screen.getTransceivers():
            transceiver.setCodecPreferences(codec_preferences("video"))
        await self._screen.setLocalDescription(await self._screen.createOffer())
        offer = self._screen.localDescription.sdp
        self.sent_signaling.append(offer)
        await self.line.send(m.Publish(call_id=self.call_id, sdp=offer, source="screen"))
        await self.line.send(self._mute(screen=True))

    async def stop_sharing(self) -> None:
        if self._screen is None:
            return
        screen, self._screen = self._screen, None
        await self.line.send(m.Unpublish(call_id=self.call_id))
        await self.line.send(self._mute(screen=False))
        await screen.close()

    def _mute(self, *, screen: bool) -> m.Mute:
        return m.Mute(
            call_id=self.call_id, audio_muted=False, video_muted=not self.video, screen=screen
        )

    async def run(self, duration_s: float | None) -> str:
        """Publish, subscribe as offers come, until the call ends or ``duration_s`` passes."""
        await self.publish()
        loop = asyncio.get_running_loop()
        deadline = None if duration_s is None else loop.time() + duration_s
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                await self.line.send(m.Hangup(call_id=self.call_id))
                return "hangup"
            try:
                message = await self.line.receive(within=remaining)
            except TimeoutError:
                continue
            except LineClosed:
                return "peer_lost"
            reason = await self._on(message)
            if reason is not None:
                return reason
            if deadline is None and self._host_left():
                await self.line.send(m.Hangup(call_id=self.call_id))
                return "hangup"

    async def _on(self, message: m.ServerMessage) -> str | None:
        if getattr(message, "call_id", None) != self.call_id:
            if isinstance(message, m.Incoming):
                await self.line.send(m.Decline(call_id=message.call_id, busy=True))
            elif isinstance(message, m.Error) and message.call_id is None:
                await self._publish_without_bundle(message)
            return None
        match message:
            case m.PublishAnswer(sdp=sdp, source=source):
                self.received_signaling.append(sdp)
                uplink = self._screen if source == "screen" else self._uplink
                if uplink is not None:
                    await uplink.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
            case m.SubscribeOffer():
                await self._subscribe(message)
            case m.Renegotiate():
                await self._renegotiate(message)
            case m.Unpublished(participant=participant):
                await self._close_screen(participant)
            case m.Participants(participants=participants):
                await self.introduce(participants)
            case m.MediaKey():
                await self.keys.media_key(message)
            case m.PeerMediaKeyRequest():
                await self.keys.key_requested(message)
            case m.ActiveSpeaker(participant=speaker):
                person = self.roster.get(speaker or "")
                self._emit({"event": "active_speaker", "call_id": self.call_id,
                            "handle": person.person.handle if person else None})  # fmt: skip
            case m.Ended(reason=reason):
                return reason
        return None

    async def introduce(self, participants: list[m.Participant]) -> None:
        """Who is in the call, with their keys (``participants``, or ``accepted`` of a 1:1)."""
        self.roster = {p.participant: p for p in participants}
        for subscription, (publisher, pc) in list(self._downlinks.items()):
            if publisher not in self.roster:
                del self._downlinks[subscription]
                await pc.close()
        for publisher in [p for p in self._screen_subscriptions if p not in self.roster]:
            await self._close_screen(publisher)
        await self.keys.participants(participants)
        handles = sorted(p.person.handle or "" for p in participants)
        self._emit({"event": "participants", "call_id": self.call_id, "handles": handles,
                    "safety_number": self.keys.safety_number})  # fmt: skip

    async def _subscribe(self, offer: m.SubscribeOffer) -> None:
        self.received_signaling.append(offer.sdp)
        pc = peer_connection([], relay_only=False, dropped=self.dropped)
        if offer.source == "screen":
            await self._close_screen(offer.participant)  # a new share replaces an old one
            counter = self.screens.setdefault(offer.participant, Received())
            self._screen_subscriptions[offer.participant] = offer.subscription
        else:
            counter = self.received.setdefault(offer.participant, Received())
        pc.on("track", counter.consume)
        self._downlinks[offer.subscription] = (offer.participant, pc)
        await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        # Before the answer: no packet can arrive before its decryption is in place.
        self.keys.crypto.protect_receivers(pc, offer.participant)
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
        self.sent_signaling.append(answer)
        reply = m.SubscribeAnswer(call_id=self.call_id, subscription=offer.subscription, sdp=answer)
        await self.line.send(reply)

    async def _renegotiate(self, offer: m.Renegotiate) -> None:
        """An SFU offer for the one connection: what it now receives, by mid."""
        if offer.revision <= self.revision:
            return  # sent again after a resume, and answered already
        self.received_signaling.append(offer.sdp)
        self.streams = {s.mid: s for s in offer.streams}
        pc = self._uplink
        await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        # Before the answer: no packet can arrive before its decryption is in place.
        for transceiver in pc.getTransceivers():
            stream = self.streams.get(transceiver.mid or "")
            if stream is not None:
                self.keys.crypto.protect_receiver(
                    transceiver.receiver, transceiver.kind, stream.participant
                )
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
        self.sent_signaling.append(answer)
        self.revision = offer.revision
        reply = m.RenegotiateAnswer(call_id=self.call_id, revision=offer.revision, sdp=answer)
        await self.line.send(reply)

    def _on_bundled_track(self, track: MediaStreamTrack) -> None:
        """A track the SFU added: counted under the participant (and source) its mid carries."""
        for transceiver in self._uplink.getTransceivers():
            if transceiver.receiver.track is not track:
                continue
            stream = self.streams.get(transceiver.mid or "")
            if stream is None:
                return
            counters = self.screens if stream.source == "screen" else self.received
            counters.setdefault(stream.participant, Received()).consume(track)
            return

    async def _close_screen(self, participant: str) -> None:
        """``participant`` stopped sharing (or left): its screen's connection closes."""
        subscription = self._screen_subscriptions.pop(participant, None)
        entry = self._downlinks.pop(subscription, None) if subscription is not None else None
        counter = self.screens.pop(participant, None)
        if counter is not None:
            self.screens_seen[participant] = counter.video_frames_received
            await counter.stop()
        if entry is not None:
            await entry[1].close()

    def _host_left(self) -> bool:
        present = any(p.person.account_id == self._host for p in self.roster.values())
        self._host_seen = self._host_seen or present
        return self._host is not None and self._host_seen and not present

    def participants_received(self, video: bool) -> int:
        """Participants from whom audio packets (and, for video calls, frames) arrived."""
        return sum(
            1
            for counter in self.received.values()
            if counter.audio_packets_received > 0
            and (not video or counter.video_frames_received > 0)
        )

    def total(self) -> Received:
        total = Received()
        for counter in self.received.values():
            total.audio_packets_received += counter.audio_packets_received
            total.video_frames_received += counter.video_frames_received
        return total

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sent_packets = await packets_sent(self._uplink)
        for counter in [*self.received.values(), *self.screens.values()]:
            await counter.stop()
        for _, pc in self._downlinks.values():
            await pc.close()
        self._downlinks.clear()
        await self._uplink.close()
        if self._screen is not None:
            await self._screen.close()
        await self.keys.close()
