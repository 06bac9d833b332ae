"""The web client's E2EE worker (signaling/web/e2ee-worker.js) on real media in Chromium: two
RTCPeerConnections in one page, each side with a worker of its own (as two devices have), the
fake camera and microphone encrypted by one and decrypted by the other.

What a receiver does with frames it cannot decrypt (no key, a wrong key) is the issue's "bad
input": dropped and counted, never shown, a key asked for, and decoding resumes with the key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, async_playwright

from signaling import pages
from tests.test_browser import CHROMIUM, FLAGS
from tests.test_browser_group import until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

# Sets up window.e2eeTest: a sending and a receiving connection, each with its own worker.
SETUP = """async () => {
  const stream = await navigator.mediaDevices.getUserMedia(
    {audio: true, video: {width: 320, height: 240, frameRate: 15}});
  const worker = (name) => {
    const w = new Worker("/static/sdk/e2ee-worker.js", {type: "module", name});
    w.requests = [];
    w.onmessage = ({data}) => { if (data.type === "key_request") w.requests.push(data); };
    return w;
  };
  const sending = worker("sender"), receiving = worker("receiver");
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  for (const track of stream.getTracks()) {
    const t = a.addTransceiver(track, {direction: "sendonly"});
    const options = {operation: "encrypt", kind: track.kind};
    t.sender.transform = new RTCRtpScriptTransform(sending, options);
  }
  b.ontrack = (e) => {
    e.receiver.transform = new RTCRtpScriptTransform(
      receiving, {operation: "decrypt", kind: e.track.kind, participant: "alice"});
    // Played, so that audio goes through the decoder (samples counted in the stats).
    const element = document.createElementNS("http://www.w3.org/1999/xhtml", e.track.kind);
    element.srcObject = new MediaStream([e.track]);
    element.muted = e.track.kind === "video";
    document.documentElement.append(element);
    element.play().catch(() => {});
  };
  const connect = async () => {
    await a.setLocalDescription();
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription();
    await a.setRemoteDescription(b.localDescription);
  };
  const stats = (w) => new Promise((resolve) => {
    const id = Math.random();
    const listener = ({data}) => {
      if (data.type === "stats" && data.id === id) {
        w.removeEventListener("message", listener); resolve(data.counts);
      }
    };
    w.addEventListener("message", listener);
    w.postMessage({type: "stats", id});
  });
  window.e2eeTest = {a, b, sending, receiving, stats, connect};
}"""

STATE = """async () => {
  const {b, sending, receiving, stats} = window.e2eeTest;
  const out = {video: 0, audio: 0};
  (await b.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") out.video = s.framesDecoded || 0;
    if (s.type === "inbound-rtp" && s.kind === "audio") out.audio = s.totalSamplesReceived || 0;
  });
  out.sender = await stats(sending);
  out.receiver = await stats(receiving);
  out.requests = receiving.requests.length;
  return out;
}"""


def key(seed: int) -> list[int]:
    return [seed] * 16


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    app = web.Application()
    pages.install(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    errors: list[str] = []
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = await browser.new_page()
                page.on("pageerror", lambda error: errors.append(str(error)))
                await page.goto(str(server.make_url("/static/icon.svg")))
                await page.evaluate(SETUP)
                yield page
            finally:
                await browser.close()
    finally:
        await server.close()
    assert errors == []


async def post(page: Page, side: str, message: dict[str, Any]) -> None:
    await page.evaluate(
        """([side, message]) => window.e2eeTest[side].postMessage(
             {...message, baseKey: message.baseKey && new Uint8Array(message.baseKey)})""",
        [side, message],
    )


async def state(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(STATE)
    return result


async def connect(page: Page) -> None:
    """Connect once both workers hold the keys posted so far (their messages are handled in
    order, so a stats answer means every earlier message was)."""
    await state(page)
    await page.evaluate("() => window.e2eeTest.connect()")


async def test_frames_encrypted_by_one_worker_decode_through_the_other(page: Page) -> None:
    await post(page, "sending", {"type": "send_key", "kid": 0, "baseKey": key(1)})
    await post(page, "receiving", {"type": "receive_key", "participant": "alice", "kid": 0,
                                   "baseKey": key(1)})  # fmt: skip
    await connect(page)

    async def decoding() -> dict[str, Any] | None:
        now = await state(page)
        return now if now["video"] > 5 and now["audio"] > 0 else None

    try:
        now = await until(decoding, "decoded video and audio", within=20.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {await state(page)}") from None
    assert now["sender"]["encrypted"] > 0
    assert now["receiver"]["decrypted"] > 0
    # Not "replayed": on a busy machine Chromium now and then hands the receive transform the
    # same video frame twice (same RTP timestamp, same CTR); the replay window drops the copy.
    bad = ("unknown_key", "auth_failed", "malformed")
    assert all(now["receiver"][name] == 0 for name in bad), str(now["receiver"])

    # A new sending key (kid 1) the receiver doesn't have yet: frames are dropped and counted,
    # a key is asked for; once it arrives, decoding carries on.
    await post(page, "sending", {"type": "send_key", "kid": 1, "baseKey": key(2)})
    await until(
        lambda: _counted(page, "unknown_key"), "frames under an unknown kid counted", within=10.0
    )
    stalled = await state(page)
    assert stalled["requests"] >= 1
    await post(page, "receiving", {"type": "receive_key", "participant": "alice", "kid": 1,
                                   "baseKey": key(2)})  # fmt: skip
    await until(
        lambda: _more_frames(page, stalled["video"] + 5), "decoding under the new key", within=20.0
    )


async def test_frames_under_a_wrong_key_are_dropped_and_never_decoded(page: Page) -> None:
    await post(page, "sending", {"type": "send_key", "kid": 3, "baseKey": key(1)})
    await post(page, "receiving", {"type": "receive_key", "participant": "alice", "kid": 3,
                                   "baseKey": key(9)})  # fmt: skip
    await connect(page)
    await until(lambda: _counted(page, "auth_failed", 30), "frames failing authentication")
    now = await state(page)
    assert now["video"] == 0 and now["audio"] == 0
    assert now["receiver"]["decrypted"] == 0
    # No key at all from a sender: nothing decoded, every frame counted, and the requests for a
    # key are far fewer than the frames (at most one a second).
    await post(page, "receiving", {"type": "forget", "participant": "alice"})
    await until(lambda: _counted(page, "unknown_key", 60), "frames without a key")
    now = await state(page)
    assert now["video"] == 0
    assert 1 <= now["requests"] < now["receiver"]["unknown_key"]


async def _counted(page: Page, name: str, at_least: int = 1) -> bool:
    return bool((await state(page))["receiver"][name] >= at_least)


async def _more_frames(page: Page, frames: int) -> bool:
    return bool((await state(page))["video"] >= frames)
