"""Headless Chromium through the SFU, both ways, with an aiortc peer on the other side."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, async_playwright

from media.config import MediaConfig
from media.control import MediaControl, create_app
from tests.test_sfu_support import Peer, until

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
]  # fmt: skip
SECRET = "browser-test-secret"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

GATHERED = """
async (pc) => {
  await pc.setLocalDescription();
  if (pc.iceGatheringState !== "complete") {
    await new Promise((resolve) => pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && resolve()));
  }
  return pc.localDescription.sdp;
}
"""

PUBLISH = """
async () => {
  const stream = await navigator.mediaDevices.getUserMedia(
    {audio: true, video: {width: 320, height: 240, frameRate: 15}});
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
  window.uplink = pc;
  return await (GATHERED)(pc);
}
""".replace("GATHERED", GATHERED)

SUBSCRIBE = """
async (offer) => {
  const pc = new RTCPeerConnection();
  window.downlink = pc;
  await pc.setRemoteDescription({type: "offer", sdp: offer});
  return await (GATHERED)(pc);
}
""".replace("GATHERED", GATHERED)

INBOUND = """
async () => {
  const out = {};
  (await window.downlink.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp") out[s.kind] = {
      packets: s.packetsReceived, frames: s.framesDecoded || 0,
      samples: s.totalSamplesReceived || 0};
  });
  return out;
}
"""

# The SFU's port of each of Chromium's connections (its nominated, succeeded pair).
SFU_PORTS = """
async () => {
  const ports = [];
  for (const pc of [window.uplink, window.downlink]) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded")
        ports.push(stats.get(s.remoteCandidateId).port);
    });
  }
  return ports;
}
"""


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def test_chromium_and_aiortc_decode_each_other_through_the_sfu(page: Page) -> None:
    server = TestServer(create_app(MediaConfig(secret=SECRET)), host="127.0.0.1")
    await server.start_server()
    control = MediaControl(str(server.make_url("")), SECRET)
    bot = Peer("bot", control, "r")
    try:
        await control.create_room("r")
        await page.goto(str(server.make_url("/healthz")))  # a secure context on 127.0.0.1
        offer = await page.evaluate(PUBLISH)
        answer = await control.join("r", "chrome", offer)
        await page.evaluate(
            "(sdp) => window.uplink.setRemoteDescription({type: 'answer', sdp})", answer
        )
        await bot.publish()

        sub_id, sfu_offer = await control.subscribe("r", "chrome", "bot")
        chrome_answer = await page.evaluate(SUBSCRIBE, sfu_offer)
        await control.answer("r", "chrome", sub_id, chrome_answer)
        await bot.subscribe("chrome")

        stats: dict[str, Any] = {}

        async def chrome_decodes() -> bool:
            stats.update(await page.evaluate(INBOUND))
            # Audio is decoded only when something plays it; received packets are the check.
            video, audio = stats.get("video", {}), stats.get("audio", {})
            return video.get("frames", 0) > 5 and audio.get("packets", 0) > 10

        try:
            await until_async(chrome_decodes, "chromium decodes the bot")
        except AssertionError:
            node = await control.stats()
            raise AssertionError(f"chromium saw {stats}; node {node}") from None
        try:
            await until(lambda: bot.decoded("chrome")[1] > 5, what="bot decodes chromium video")
            await until(lambda: bot.decoded("chrome")[0] > 10, what="bot decodes chromium audio")
        except AssertionError as exc:
            node, room = await control.stats(), await control.room_stats("r")
            raise AssertionError(
                f"{exc}: bot got {bot.decoded('chrome')}; {node}; {room}"
            ) from None
        room = await control.room_stats("r")
        chrome = next(p for p in room["participants"] if p["participant"] == "chrome")
        assert chrome["publishing"] == {"audio": True, "video": True, "screen": False}
        # Chromium's uplink and downlink both reach the node's one UDP port (media/udpmux.py).
        ports = await page.evaluate(SFU_PORTS)
        assert len(ports) >= 2 and set(ports) == {(await control.stats())["udp_port"]}, ports
        await until_async(
            lambda: _has_rtt(control, "chrome"), "RTT from Chromium's receiver reports"
        )
    finally:
        await bot.close()
        await control.close()
        await server.close()


async def _has_rtt(control: MediaControl, name: str) -> bool:
    room = await control.room_stats("r")
    entry = next(p for p in room["participants"] if p["participant"] == name)
    return "rtt_ms" in entry


async def until_async(check: Any, what: str, limit_s: float = 20.0) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + limit_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
