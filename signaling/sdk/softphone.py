"""A softphone: places or answers one call with synthetic media and reports what happened.

Events go to a callback as dicts (the CLI prints them as JSON lines); the result is a summary
with an outcome and what media was received.

A call survives a change of network on either side. The device that moved gets its line back
(``Line`` with ``follows_network``: it resumes the WebSocket by itself) and, as aiortc cannot
restart ICE, offers from a new peer connection in the same call, whichever its role (protocol
11.5.10); the other device answers from a new connection too. Both report ``reconnecting``
and then ``reconnected`` once the new connection carries media.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiortc import RTCPeerConnection, RTCSessionDescription

from signaling.protocol import messages as m
from signaling.protocol.bodies import IceServers
from signaling.sdk.client import Client
from signaling.sdk.ice import allow_loopback_ice
from signaling.sdk.line import Line, LineClosed
from signaling.sdk.media import (
    AudioSource,
    PatternTrack,
    Received,
    ToneTrack,
    add_remote_candidate,
    is_loopback_url,
    packets_sent,
    peer_connection,
    quality_sample,
    selected_pair,
)
from signaling.sdk.origin import Origins, session_of
from signaling.sdk.sfu_session import SfuSession
from signaling.sdk.shield import Dropped

Outcome = Literal["connected", "declined", "busy", "unavailable", "no_answer", "failed"]
Emit = Callable[[dict[str, Any]], None]

_OUTCOME_OF_END: dict[str, Outcome] = {
    "declined": "declined",
    "declined_elsewhere": "declined",
    "busy": "busy",
    "no_answer": "no_answer",
    "missed": "no_answer",
    "cancelled": "no_answer",
    "glare": "failed",
    "peer_lost": "failed",
    "media_failed": "failed",
    "failed": "failed",
}
#: How long an answered call may take to carry media before it counts as failed.
MEDIA_TIMEOUT_S = 15.0
#: How long a peer-to-peer call may take to connect before it asks for a relay (11.9.1).
FALLBACK_AFTER_S = 5.0
#: How often a connected call sends a ``quality`` report (the server keeps one per 2 s).
QUALITY_INTERVAL_S = 5.0


@dataclass
class Summary:
    outcome: Outcome
    call_id: str | None = None
    reason: str | None = None
    media: Received = field(default_factory=Received)
    sent_packets: int = 0
    #: Group calls: the other participants from whom audio (and video, if sent) arrived.
    participants_received: int | None = None

    @property
    def media_both_ways(self) -> bool:
        return self.sent_packets > 0 and self.media.audio_packets_received > 0

    def as_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event": "summary",
            "outcome": self.outcome,
            "call_id": self.call_id,
            "reason": self.reason,
            "media": {
                "audio_packets_received": self.media.audio_packets_received,
                "video_frames_received": self.media.video_frames_received,
                "packets_sent": self.sent_packets,
            },
        }
        if self.participants_received is not None:
            event["participants_received"] = self.participants_received
        return event


class _ToSfu(Exception):
    """The call moved to the SFU (``relayed`` with ``sfu``): its peer connection is done."""

    def __init__(self, relayed: m.Relayed) -> None:
        super().__init__("the call moved to the SFU")
        self.relayed = relayed


class Softphone:
    def __init__(
        self,
        client: Client,
        *,
        video: bool = False,
        emit: Emit | None = None,
        audio: AudioSource = ToneTrack,
        bundle: bool = True,
    ) -> None:
        """``audio`` makes the audio track each call sends (a tone unless told). ``bundle``:
        calls through the SFU on one connection (protocol 11.15.2); False: the old mode."""
        self.client = client
        self.bundle = bundle
        self.audio = audio
        self.video = video
        self._emit = emit or (lambda _event: None)
        self.line = Line(client, follows_network=True)
        #: Every SDP and candidate received from the peer, for inspection (hide-my-IP tests).
        self.received_signaling: list[str] = []
        #: Every SDP this phone sent to the SFU (calls through the SFU only).
        self.sent_signaling: list[str] = []
        #: Hostile or stray datagrams its connections dropped, by reason.
        self.dropped = Dropped()
        #: The media through the SFU of the call in progress, if any.
        self.session: SfuSession | None = None
        #: The peer-to-peer connection of the call in progress and what it received, if any.
        self.connection: RTCPeerConnection | None = None
        self.received: Received | None = None
        self._hanging_up: asyncio.Event | None = None
        self._ice_servers: list[m.IceServer] = []
        self._relay_only = False
        # After a move to TURN the caller offers again: until the answer to that offer (marked
        # ``restart``) comes, an answer is one to the offer before the move, for a closed
        # connection.
        self._awaiting_restart_answer = False
        self._origins = Origins()  # the o= line of each connection's descriptions
        self._role = "caller"
        self._reconnecting = False
        self._sent_before = 0
        self._applied_offer: str | None = None
        #: The ``o=`` session id of the peer's last description: a new one means the peer
        #: made a new connection (it moved too), the same one an ICE restart of the old one.
        self._remote_session: str | None = None
        if is_loopback_url(client.server):
            allow_loopback_ice()

    async def close(self) -> None:
        await self.line.close()

    async def hang_up(self) -> None:
        """End the 1:1 call in progress now, as the person pressing the red button does."""
        if self._hanging_up is not None:
            self._hanging_up.set()

    async def call(self, handle: str, duration_s: float | None) -> Summary:
        await self.line.open()
        await self.line.send(m.Invite(handle=handle, media="video" if self.video else "audio"))
        call_id: str | None = None
        while True:
            message = await self.line.receive()
            if isinstance(message, m.Ringing):
                call_id = message.call_id
                self._emit({"event": "ringing", "call_id": call_id})
            elif isinstance(message, m.Accepted) and message.call_id == call_id:
                return await self._talk(message, duration_s)
            elif isinstance(message, m.Ended) and message.call_id == call_id:
                self._emit({"event": "ended", "call_id": call_id, "reason": message.reason})
                return Summary(
                    _OUTCOME_OF_END.get(message.reason, "failed"), call_id, message.reason
                )
            elif isinstance(message, m.Error):
                self._emit({"event": "error", "code": message.code, "detail": message.detail})
                return Summary("unavailable", call_id, message.code)

    async def answer(self, duration_s: float | None) -> Summary:
        """Wait for a call, answer it, talk until it ends (or ``duration_s``), hang up."""
        if self.line.welcome is None:
            welcome = await self.line.open()
            self._emit({"event": "ready", "device_id": welcome.device_id})
        while True:
            message = await self.line.receive()
            if isinstance(message, m.Incoming):
                self._emit({"event": "incoming", "call_id": message.call_id,
                            "from": message.caller.handle, "busy": message.busy,
                            "group": message.group})  # fmt: skip
                await self.line.send(m.Accept(call_id=message.call_id))
            elif isinstance(message, m.Accepted):
                return await self._talk(message, duration_s)
            elif isinstance(message, m.Joined):
                return await self._in_group(message, duration_s)

    async def group(self, handles: list[str], duration_s: float | None) -> Summary:
        """Start a group call with these handles and take part until ``duration_s`` passes."""
        await self.line.open()
        media: m.Media = "video" if self.video else "audio"
        await self.line.send(m.GroupInvite(handles=handles, media=media))
        while True:
            message = await self.line.receive()
            if isinstance(message, m.Joined):
                return await self._in_group(message, duration_s)
            if isinstance(message, m.Error):
                self._emit({"event": "error", "code": message.code, "detail": message.detail})
                return Summary("unavailable", None, message.code)

    async def _in_group(self, joined: m.Joined, duration_s: float | None) -> Summary:
        self._emit({"event": "joined", "call_id": joined.call_id,
                    "participant": joined.participant})  # fmt: skip
        mine = self.client.profile.account_id if self.client.profile else None
        host = None if joined.host.account_id == mine else joined.host.account_id
        return await self._through_sfu(joined.call_id, joined.participant, duration_s, host)

    async def _through_sfu(
        self,
        call_id: str,
        participant: str,
        duration_s: float | None,
        host: str | None = None,
        participants: list[m.Participant] | None = None,
    ) -> Summary:
        session = SfuSession(
            self.line, call_id, participant=participant, video=self.video, emit=self._emit,
            host=host, dropped=self.dropped, audio=self.audio, bundle=self.bundle,
        )  # fmt: skip
        self.session = session
        try:
            if participants is not None:
                await session.introduce(participants)
            reason = await session.run(duration_s)
        finally:
            self.session = None
            await session.close()
        self.received_signaling.extend(session.received_signaling)
        self.sent_signaling.extend(session.sent_signaling)
        summary = Summary("failed", call_id, reason, media=session.total())
        summary.sent_packets = session.sent_packets
        summary.participants_received = session.participants_received(self.video)
        if summary.participants_received > 0:
            summary.outcome = "connected"
        self._emit({"event": "ended", "call_id": call_id, "reason": reason})
        return summary

    async def _talk(self, accepted: m.Accepted, duration_s: float | None) -> Summary:
        call_id = accepted.call_id
        self._emit({"event": "accepted", "call_id": call_id, "relay_only": accepted.relay_only,
                    "sfu": accepted.sfu})  # fmt: skip
        if accepted.sfu:
            if accepted.participant is None:
                detail = "the server relays this call without end-to-end keys"
                self._emit({"event": "error", "code": "no_participant_id", "detail": detail})
                await self._hang_up(call_id)
                return Summary("failed", call_id, "no_participant_id")
            return await self._through_sfu(
                call_id, accepted.participant, duration_s, participants=accepted.participants or []
            )
        turn: IceServers = await self.client.request("GET", "/v1/turn", IceServers)
        self._ice_servers, self._relay_only = turn.ice_servers, accepted.relay_only
        pc = peer_connection(turn.ice_servers, accepted.relay_only, self.dropped)
        received = Received()
        self.connection, self.received = pc, received
        pc.on("track", received.consume)
        received.on_gap = lambda: self._media_stopped(call_id)
        received.on_back = lambda: self._note_reconnected(call_id)
        summary = Summary("failed", call_id, media=received)
        reporter = asyncio.create_task(self._report_quality(call_id, accepted.relay_only))
        self._role, self._remote_session, self._reconnecting = accepted.role, None, False
        self._sent_before = 0  # packets sent by the call's connections before the last one
        self._applied_offer = None
        moved: m.Relayed | None = None
        try:
            if accepted.role == "caller":
                await self._offer(call_id, pc)
            ended = await self._negotiate_and_run(pc, call_id, accepted.role, duration_s)
            summary.reason = ended
            summary.sent_packets = self._sent_before + await packets_sent(self.connection)
            if received.audio_packets_received > 0:
                summary.outcome = "connected"
        except _ToSfu as to_sfu:
            moved = to_sfu.relayed
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            await received.stop()
            await self.connection.close()
            self.connection = self.received = None
        if moved is not None:
            return await self._through_sfu(
                call_id, moved.participant or "", duration_s, participants=moved.participants or []
            )
        self._emit({"event": "ended", "call_id": call_id, "reason": summary.reason})
        return summary

    async def _offer(self, call_id: str, pc: RTCPeerConnection, restart: bool = False) -> None:
        self._add_tracks(pc)
        await pc.setLocalDescription(await pc.createOffer())
        await self._send_description(call_id, pc, restart)

    async def _report_quality(self, call_id: str, relay_only: bool) -> None:
        """Every QUALITY_INTERVAL_S while media flows: a ``quality`` report for operators."""
        sent = 0
        while True:
            await asyncio.sleep(QUALITY_INTERVAL_S)
            pc = self.connection
            if pc is None or pc.connectionState != "connected":
                continue
            try:
                fields, sent = await quality_sample(pc, sent, QUALITY_INTERVAL_S)
                path = selected_pair(pc)
                quality = m.Quality(
                    call_id=call_id, rtt_ms=fields["rtt_ms"], jitter_ms=fields["jitter_ms"],
                    loss=fields["loss"], bitrate_kbps=fields["bitrate_kbps"],
                    relayed=("relay" in path) if path else (True if relay_only else None),
                )  # fmt: skip
                await self.line.send(quality)
            except (ConnectionError, RuntimeError, AssertionError):
                return

    def _add_tracks(self, pc: RTCPeerConnection) -> None:
        pc.addTrack(self.audio())
        if self.video:
            pc.addTrack(PatternTrack())

    async def _send_description(
        self, call_id: str, pc: RTCPeerConnection, restart: bool = False
    ) -> None:
        local = pc.localDescription
        kind: Literal["offer", "answer"] = "offer" if local.type == "offer" else "answer"
        sdp = self._origins.stamp(pc, local.sdp)
        description = m.Description(call_id=call_id, kind=kind, sdp=sdp, restart=restart)
        await self.line.send(description)

    async def _negotiate_and_run(
        self, pc: RTCPeerConnection, call_id: str, role: str, duration_s: float | None
    ) -> str:
        """Exchange SDP and candidates, then keep the call up for ``duration_s`` from the moment
        media connects (on a slow network too); returns the end reason."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        connected_by = loop.time() + MEDIA_TIMEOUT_S
        # Until it connects, a peer-to-peer call asks once for a relay (protocol 11.9.1).
        fallback_at: float | None = None if self._relay_only else loop.time() + FALLBACK_AFTER_S
        connected = asyncio.Event()
        failed = asyncio.Event()
        #: The connection carrying the call's media broke (ICE failed): it needs a new one.
        broken = asyncio.Event()

        watched: set[RTCPeerConnection] = set()

        def watch(pc: RTCPeerConnection | None) -> None:
            """Every connection of the call (it gets new ones when it moves) reports in."""
            if pc is None or pc in watched:
                return
            watched.add(pc)

            @pc.on("connectionstatechange")
            def _state() -> None:
                nonlocal deadline
                if pc is not self.connection:
                    return
                if pc.connectionState == "failed":
                    failed.set()
                if pc.connectionState in ("failed", "closed") and connected.is_set():
                    broken.set()
                if pc.connectionState == "connected":
                    self._note_reconnected(call_id)
                if pc.connectionState == "connected" and not connected.is_set():
                    connected.set()
                    deadline = None if duration_s is None else loop.time() + duration_s
                    # Which candidates carry the media: "relay" on either side means TURN.
                    path = selected_pair(pc)
                    self._emit({"event": "connected", "call_id": call_id,
                                "path": list(path) if path else None})  # fmt: skip

        watch(pc)

        self._hanging_up = asyncio.Event()
        connecting = asyncio.ensure_future(connected.wait())
        failing = asyncio.ensure_future(failed.wait())
        breaking = asyncio.ensure_future(broken.wait())
        hanging_up = asyncio.ensure_future(self._hanging_up.wait())
        receiving: asyncio.Future[m.ServerMessage] | None = None
        try:
            while True:
                now = loop.time()
                asking = fallback_at is not None and not connected.is_set()
                if asking and fallback_at is not None and (now >= fallback_at or failed.is_set()):
                    fallback_at, connected_by = None, now + MEDIA_TIMEOUT_S
                    await self.line.send(m.RelayFallback(call_id=call_id))
                limit = deadline if connected.is_set() else connected_by
                if hanging_up.done() or (limit is not None and now >= limit):
                    reason = "hangup" if connected.is_set() or hanging_up.done() else "failed"
                    await self._hang_up(call_id)
                    return reason
                if receiving is None:
                    receiving = asyncio.ensure_future(self.line.receive())
                # Until media connects, connecting ends the wait too: the call's length counts
                # from then. An unfinished receive is kept for the next turn, never lost.
                waits: set[asyncio.Future[Any]] = {receiving, hanging_up}
                if not connected.is_set():
                    waits.add(connecting)
                else:
                    waits.add(breaking)
                wake = limit
                if fallback_at is not None and not connected.is_set():
                    waits.add(failing)
                    wake = min(connected_by, fallback_at)
                timeout = None if wake is None else wake - now
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if breaking.done():
                    broken.clear()
                    breaking = asyncio.ensure_future(broken.wait())
                    # Either side's move breaks it; as in the web client, the caller mends it
                    # unless a new connection is already on its way.
                    if role == "caller" and not self._awaiting_restart_answer:
                        watch(await self._restart(call_id, "ice_failed"))
                if not receiving.done():
                    continue
                done, receiving = receiving, None
                try:
                    message = done.result()
                    if isinstance(message, m.Relayed) and message.call_id == call_id:
                        fallback_at, connected_by = None, loop.time() + MEDIA_TIMEOUT_S
                        watch(await self._relay(call_id, role, message))
                        continue
                    if isinstance(message, m.Welcome):
                        # The line came back after losing its connection (this device's
                        # network changed): the old media path went with it.
                        if message.resumed and self._negotiated():
                            watch(await self._restart(call_id, "network"))
                        continue
                    ended = await self._on_message(call_id, message)
                    watch(self.connection)
                except LineClosed:
                    return "peer_lost"
                if ended is not None:
                    return ended
        finally:
            self._hanging_up = None
            for waiting in (connecting, failing, breaking, hanging_up, receiving):
                if waiting is not None:
                    waiting.cancel()

    async def _relay(self, call_id: str, role: str, relayed: m.Relayed) -> RTCPeerConnection:
        """The call moved to a relay (protocol 11.9.1): through the SFU, or through TURN on a
        new relay-only connection (aiortc cannot restart ICE), the caller offering again."""
        self._emit({"event": "relayed", "call_id": call_id, "sfu": relayed.sfu})
        if relayed.sfu:
            raise _ToSfu(relayed)
        assert self.connection is not None
        self._relay_only = True
        pc = await self._renew(self.connection)
        if role == "caller":
            self._awaiting_restart_answer = True
            await self._offer(call_id, pc, restart=True)
        return pc

    def _negotiated(self) -> bool:
        """Whether the call's media was negotiated once (a restart offer of this device that
        went into a dead connection counts: it is made again)."""
        return self.connection is not None and self._remote_session is not None

    async def _restart(self, call_id: str, why: str) -> RTCPeerConnection:
        """This device moved (or its media path broke): aiortc cannot restart ICE, so it
        offers from a new connection in the same call, whatever its role (protocol 11.5.10);
        until the answer it ignores restarts of the old connection (its own offer wins)."""
        self._note_reconnecting(call_id, why)
        assert self.connection is not None
        pc = await self._renew(self.connection)
        self._awaiting_restart_answer = True
        await self._offer(call_id, pc, restart=True)
        return pc

    def _note_reconnecting(self, call_id: str, why: str) -> None:
        if not self._reconnecting:
            self._reconnecting = True
            self._emit({"event": "reconnecting", "call_id": call_id, "why": why})

    def _note_reconnected(self, call_id: str) -> None:
        pc = self.connection
        if self._reconnecting and pc is not None and pc.connectionState == "connected":
            self._reconnecting = False
            path = selected_pair(pc)
            self._emit({"event": "reconnected", "call_id": call_id,
                        "path": list(path) if path else None})  # fmt: skip

    def _media_stopped(self, call_id: str) -> None:
        """No media for a while: the path broke, on this side or the other. If this device's
        network changed, its WebSocket is likely dead too: check it now, so that the line comes
        back (and the media with it, see ``_restart``) without waiting for a heartbeat."""
        if self.connection is not None:
            self._note_reconnecting(call_id, "media")
            self.line.probe()

    def _crossed(self, message: m.PeerDescription) -> bool:
        """An offer that crossed this device's own restart offer and loses to it: a restart of
        the peer's old connection, or (both moved) a new connection of the callee's."""
        if message.kind != "offer" or not self._awaiting_restart_answer:
            return False
        if session_of(message.sdp) == self._remote_session or self._role == "caller":
            return True
        self._awaiting_restart_answer = False  # the caller's new connection wins
        return False

    async def _on_message(self, call_id: str, message: m.ServerMessage) -> str | None:
        """Applies one message of the call's signaling; returns the end reason if it ended."""
        pc = self.connection
        assert pc is not None
        if isinstance(message, m.PeerDescription) and message.call_id == call_id:
            self.received_signaling.append(message.sdp)
            if self._crossed(message):
                if self._role == "caller" and session_of(message.sdp) != self._remote_session:
                    # Both moved. Ours may have gone into the callee's dead connection: sent
                    # again, it reaches the callee, which yields to it (a copy is ignored).
                    await self._send_description(call_id, pc, restart=True)
                return None
            if message.kind == "offer" and message.sdp == self._applied_offer:
                return None  # a copy of an offer already answered
            if message.kind == "answer" and pc.signalingState == "stable":
                return None  # answers an offer of a connection given up since
            if message.kind == "answer" and self._awaiting_restart_answer:
                if not message.restart:
                    return None
                self._awaiting_restart_answer = False
            if message.restart and message.kind == "offer" and pc.signalingState != "stable":
                pc = await self._renew(pc)  # both offered at once; this offer won
            elif message.restart and message.kind == "offer" and pc.remoteDescription is not None:
                self._note_reconnecting(call_id, "peer")  # the peer moved
                pc = await self._renew(pc)
            self._remote_session = session_of(message.sdp)
            if message.kind == "offer":
                self._applied_offer = message.sdp
            await pc.setRemoteDescription(RTCSessionDescription(message.sdp, message.kind))
            if message.kind == "offer":
                self._add_tracks(pc)
                await pc.setLocalDescription(await pc.createAnswer())
                await self._send_description(call_id, pc, message.restart)
        elif isinstance(message, m.PeerIce) and message.call_id == call_id:
            self.received_signaling.append(message.candidate)
            with contextlib.suppress(ValueError):
                await add_remote_candidate(pc, message)
        elif isinstance(message, m.Ended) and message.call_id == call_id:
            return message.reason
        elif isinstance(message, (m.PeerReconnecting, m.PeerResumed)):
            # The peer's WebSocket dropped, or came back (its media may be mended next).
            if message.call_id == call_id:
                back = isinstance(message, m.PeerResumed)
                self._emit({"event": "peer_resumed" if back else "peer_reconnecting",
                            "call_id": call_id})  # fmt: skip
        elif isinstance(message, m.Incoming):
            await self.line.send(m.Decline(call_id=message.call_id, busy=True))
        return None

    async def _renew(self, old: RTCPeerConnection) -> RTCPeerConnection:
        """An ICE restart from the other device (it changed networks): aiortc cannot restart
        ICE on a connection, so the call goes on over a new one (protocol 11.5.9)."""
        assert self.received is not None
        pc = peer_connection(self._ice_servers, self._relay_only, self.dropped)
        pc.on("track", self.received.consume)
        self.connection = pc
        with contextlib.suppress(Exception):  # stats of a connection that failed: none to add
            self._sent_before += await packets_sent(old)
        await old.close()
        return pc

    async def _hang_up(self, call_id: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.line.send(m.Hangup(call_id=call_id))
