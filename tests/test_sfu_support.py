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
