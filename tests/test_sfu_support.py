"""Helpers for the SFU tests: a media node in its own process, and aiortc peers driving it
through ``MediaControl`` exactly as signaling does. (No tests in this module.)"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from media.control import MediaControl
from media.server import allow_loopback_ice
from signaling.sdk.media import PatternTrack, Received, ToneTrack
from tests.ports import free_port


async def until(predicate: Callable[[], bool], limit_s: float = 15.0, what: str = "") -> None:
    """Poll ``predicate`` until true; fail with ``what`` at the deadline (no fixed sleeps)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)


@dataclass
class SfuProcess:
    url: str
    secret: str
    pid: int


@asynccontextmanager
async def sfu_process(*args: str) -> AsyncIterator[SfuProcess]:
    """``python -m media.server`` on a free loopback port, stopped with SIGTERM afterwards."""
    port = free_port()
    secret = secrets.token_urlsafe(16)
    env = dict(os.environ, CALLBOOK_MEDIA_SECRET=secret)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media.server", "--host", "127.0.0.1", "--port", str(port), *args,
        env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    control = MediaControl(url, secret)
    try:
        deadline = time.monotonic() + 60  # a node and its workers, on a loaded machine
        while True:
            try:
                if await control.health():
                    break
            except OSError:
                pass
            if proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError("media server did not start")
            await asyncio.sleep(0.05)
        yield SfuProcess(url, secret, proc.pid)
    finally:
        await control.close()
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def new_pc() -> RTCPeerConnection:
    allow_loopback_ice()
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def publisher_offer(pc: RTCPeerConnection) -> str:
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    pc.addTransceiver(PatternTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


@dataclass
class Downlink:
    subscription: str
    pc: RTCPeerConnection
    received: Received
    connected_at: float | None = None


@dataclass
class Peer:
    """One call participant: an uplink publishing tone+pattern, one downlink per publisher."""

    name: str
    control: MediaControl
    room: str
    uplink: RTCPeerConnection | None = None
    downlinks: dict[str, Downlink] = field(default_factory=dict)
    screen: RTCPeerConnection | None = None

    async def publish(self) -> None:
        self.uplink = new_pc()
        offer = await publisher_offer(self.uplink)
        answer = await self.control.join(self.room, self.name, offer)
        await self.uplink.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def share_screen(self) -> None:
        """A second uplink: one video track, published as this peer's screen."""
        self.screen = new_pc()
        self.screen.addTransceiver(PatternTrack(), direction="sendonly")
        await self.screen.setLocalDescription(await self.screen.createOffer())
        offer = str(self.screen.localDescription.sdp)
        answer = await self.control.publish_screen(self.room, self.name, offer)
        await self.screen.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def stop_sharing(self) -> None:
        await self.control.unpublish_screen(self.room, self.name)
        if self.screen is not None:
            await self.screen.close()
            self.screen = None

    async def subscribe(self, publisher: str, source: str = "camera") -> Downlink:
        """``publisher``'s camera, or with ``source="screen"`` its screen (kept as
        ``downlinks[publisher + ":screen"]``)."""
        sub_id, offer = await self.control.subscribe(self.room, self.name, publisher, source)
        pc = new_pc()
        down = Downlink(sub_id, pc, Received())
        pc.on("track", down.received.consume)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected" and down.connected_at is None:
                down.connected_at = time.monotonic()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.control.answer(self.room, self.name, sub_id, pc.localDescription.sdp)
        self.downlinks[publisher if source == "camera" else f"{publisher}:{source}"] = down
        return down

    def decoded(self, publisher: str) -> tuple[int, int]:
        down = self.downlinks.get(publisher)
        if down is None:
            return (0, 0)
        return down.received.audio_packets_received, down.received.video_frames_received

    async def drop_downlink(self, publisher: str) -> None:
        down = self.downlinks.pop(publisher, None)
        if down is not None:
            await down.received.stop()
            await down.pc.close()

    async def close(self) -> None:
        for publisher in list(self.downlinks):
            await self.drop_downlink(publisher)
        if self.uplink is not None:
            await self.uplink.close()
            self.uplink = None
        if self.screen is not None:
            await self.screen.close()
            self.screen = None


@dataclass
class BundlePeer:
    """A participant on one connection (protocol 11.15): it publishes tone+pattern with its
    offer, and everything it receives is added by the SFU's offers, pulled and answered here
    as signaling would (``sync``)."""

    name: str
    control: MediaControl
    room: str
    pc: RTCPeerConnection | None = None
    #: mid -> (participant, source, kind), from the last offer's ``streams``.
    streams: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    by_mid: dict[str, Received] = field(default_factory=dict)
    revisions: list[int] = field(default_factory=list)

    async def publish(self, sync: bool = True) -> None:
        self.pc = pc = new_pc()
        offer = await publisher_offer(pc)
        answer = await self.control.join(self.room, self.name, offer, bundle=True)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        @pc.on("track")
        def on_track(track: object) -> None:
            for transceiver in pc.getTransceivers():
                if transceiver.receiver.track is track and transceiver.mid is not None:
                    received = self.by_mid.setdefault(transceiver.mid, Received())
                    received.consume(transceiver.receiver.track)

        if sync:
            await self.sync()

    async def sync(self) -> None:
        """Pull the SFU's offers and answer them until none is due."""
        assert self.pc is not None
        offer = await self.control.offer(self.room, self.name)
        while offer is not None:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            self.streams = {
                s.mid: (s.participant, s.source.value, s.kind.value) for s in offer.streams
            }
            self.revisions.append(offer.revision)
            offer = await self.control.answer_offer(
                self.room, self.name, offer.revision, self.pc.localDescription.sdp
            )

    def decoded(self, publisher: str, source: str = "camera") -> tuple[int, int]:
        audio = video = 0
        for mid, (participant, src, kind) in self.streams.items():
            received = self.by_mid.get(mid)
            if received is None or (participant, src) != (publisher, source):
                continue
            if kind == "audio":
                audio += received.audio_packets_received
            else:
                video += received.video_frames_received
        return audio, video

    async def close(self) -> None:
        for received in self.by_mid.values():
            await received.stop()
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
