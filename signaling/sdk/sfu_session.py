"""A softphone's media through the SFU: one sending connection, one receiving per participant.

Used for group calls and for 1:1 calls relayed through the SFU (hide-my-IP without TURN). Every
frame is end-to-end encrypted (docs/e2ee.md): ``keys`` holds this device's keys for the call and
puts the frame encryption into aiortc. What arrives (decrypted and decoded) is counted per
participant, so a bot can tell from whom it received audio and video.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

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
    ) -> None:
        """``participant``: this device's id in the call's SFU room. ``host`` (an account id):
        leave when the host has left, as a guest bot should."""
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
        self._uplink = peer_connection([], relay_only=False, dropped=self.dropped)
        self._downlinks: dict[str, tuple[str, RTCPeerConnection]] = {}
        #: Media received, per participant id of its sender.
        self.received: dict[str, Received] = {}
        self.roster: dict[str, m.Participant] = {}
        #: Every SDP the SFU sent this device, and every SDP it sent, for inspection.
        self.received_signaling: list[str] = []
        self.sent_signaling: list[str] = []
        self.sent_packets = 0

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
        await self.line.send(m.Publish(call_id=self.call_id, sdp=offer))

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
            return None
        match message:
            case m.PublishAnswer(sdp=sdp):
                self.received_signaling.append(sdp)
                await self._uplink.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
            case m.SubscribeOffer():
                await self._subscribe(message)
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
        await self.keys.participants(participants)
        handles = sorted(p.person.handle or "" for p in participants)
        self._emit({"event": "participants", "call_id": self.call_id, "handles": handles,
                    "safety_number": self.keys.safety_number})  # fmt: skip

    async def _subscribe(self, offer: m.SubscribeOffer) -> None:
        self.received_signaling.append(offer.sdp)
        pc = peer_connection([], relay_only=False, dropped=self.dropped)
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
        for counter in self.received.values():
            await counter.stop()
        for _, pc in self._downlinks.values():
            await pc.close()
        self._downlinks.clear()
        await self._uplink.close()
        await self.keys.close()
