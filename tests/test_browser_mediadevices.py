"""Choosing camera, microphone and speaker in the web client (Chromium with two fake cameras):
the choice and preview in settings are what a call then sends, and a switch during an end-to-end
encrypted call through the SFU keeps the same sender and its encryption transform, while the
other person goes on decoding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.conftest import Server
from tests.test_browser import CHROMIUM, FLAGS, PHONE, Browsers, screenshot, sign_up

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

# Chromium's fake capture can offer more than one camera; a phone has a front and a back one.
TWO_CAMERAS = [
    "--use-fake-device-for-media-stream=device-count=2"
    if flag == "--use-fake-device-for-media-stream"
    else flag
    for flag in FLAGS
]

# What the page's 1:1 call sends, per kind: the device, and whether it is the sender and
# encryption transform remembered by ``remember`` (window.__senders).
SENDING_JS = """(remember) => {
  const call = window.callbook.call;
  const pc = call.sfu ? call.sfu.uplink : call.pc;
  const out = {};
  for (const sender of pc.getSenders()) {
    if (!sender.track) continue;
    const kind = sender.track.kind;
    window.__senders = window.__senders || {};
    if (remember) window.__senders[kind] = [sender, sender.transform];
    const [was, transform] = window.__senders[kind] || [];
    out[kind] = {device: sender.track.getSettings().deviceId, same: was === sender,
                 transform: Boolean(sender.transform),
                 sameTransform: transform === sender.transform};
  }
  return out;
}"""

# Video frames the page's SFU call decoded from the other side (after decryption).
FRAMES_JS = """async () => {
  const sfu = window.callbook.call && window.callbook.call.sfu;
  let frames = 0;
  for (const {receiver} of sfu ? sfu.receiving() : []) {
    (await receiver.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
    });
  }
  return frames;
}"""

DEVICES_JS = """async (kind) => (await navigator.mediaDevices.enumerateDevices())
  .filter((d) => d.kind === kind).map((d) => ({id: d.deviceId, label: d.label}))"""


@pytest.fixture
async def browsers() -> AsyncIterator[Browsers]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=TWO_CAMERAS)
        pool = Browsers(browser)
        try:
            yield pool
        finally:
            await pool.close()
            await browser.close()
    assert pool.errors == [], f"uncaught errors in the page: {pool.errors}"


async def frames_after(page: Page, count: int) -> None:
    await page.wait_for_function(f"async () => ({FRAMES_JS})().then((n) => n > {count})")


async def test_settings_choice_and_preview_are_what_a_call_sends(
    server: Server, browsers: Browsers
) -> None:
    alice = await browsers.page()
    bob = await browsers.page()
    await sign_up(alice, server, "alice", "Alice")
    await sign_up(bob, server, "bob", "Bob")
    await alice.get_by_role("link", name="Settings").click()
    cameras = await alice.evaluate(DEVICES_JS, "videoinput")
    assert len(cameras) == 2

    # Preview by keyboard, then choose the second camera: the preview follows the choice.
    await alice.locator("#preview-btn").focus()
    await alice.keyboard.press("Enter")
    preview = alice.locator("#media-preview")
    await expect(preview).to_be_visible()
    await expect(alice.locator("#pick-videoinput option")).to_have_count(2)
    await expect(alice.locator("#pick-videoinput option").first).to_have_text("fake_device_0")
    await alice.locator("#pick-videoinput").select_option(label="fake_device_1")
    preview_device = """() => {
      const s = document.querySelector("#media-preview").srcObject;
      return s && s.getVideoTracks()[0].getSettings().deviceId;
    }"""
    await alice.wait_for_function(f"() => ({preview_device})() === {cameras[1]['id']!r}")
    await alice.locator("#preview-btn").press("Enter")
    await expect(preview).to_be_hidden()

    # The next call sends from the chosen camera.
    await alice.get_by_role("link", name="Calls").click()
    await alice.fill("#dial-handle", "bob")
    await alice.click("#dial-video")
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "incoming")
    await bob.get_by_role("button", name="Answer with video").click()
    await expect(alice.locator("#screen-call")).to_have_attribute("data-state", "connected")
    sending = await alice.evaluate(SENDING_JS, True)
    assert sending["video"]["device"] == cameras[1]["id"]
    await alice.get_by_role("button", name="End call").click()


async def test_switching_during_an_encrypted_call_keeps_sender_and_transform(
    server: Server, browsers: Browsers
) -> None:
    alice = await browsers.page(PHONE)
    bob = await browsers.page()
    await sign_up(alice, server, "alice", "Alice")
    await sign_up(bob, server, "bob", "Bob")
    # Not contacts: the call goes through the SFU, end-to-end encrypted frame by frame.
    await alice.fill("#dial-handle", "bob")
    await alice.click("#dial-video")
    await bob.get_by_role("button", name="Answer with video").click()
    await expect(alice.locator("#screen-call")).to_have_attribute("data-state", "connected")
    await bob.wait_for_function("() => window.callbook.call.e2ee !== null")
    await frames_after(bob, 0)
    before = await alice.evaluate(SENDING_JS, True)
    assert before["video"]["transform"] and before["audio"]["transform"]
    cameras = await alice.evaluate(DEVICES_JS, "videoinput")
    outputs = await alice.evaluate(DEVICES_JS, "audiooutput")
    microphones = await alice.evaluate(DEVICES_JS, "audioinput")

    # On a phone: the sheet leads with the front/back camera and speaker toggles.
    await alice.get_by_role("button", name="Camera, microphone and speaker").click()
    flip = alice.get_by_role("button", name="Switch camera")
    await expect(flip).to_be_visible()
    await screenshot(alice, "call-devices-phone.png")
    await flip.click()
    other = next(c["id"] for c in cameras if c["id"] != before["video"]["device"])
    await alice.wait_for_function(f"() => ({SENDING_JS})(false).video.device === {other!r}")
    decoded = await bob.evaluate(FRAMES_JS)
    await frames_after(bob, decoded + 30)  # Bob decrypts and decodes the new camera

    speaker = alice.locator("#toggle-speaker")
    await expect(alice.locator("#toggle-speaker-label")).to_have_text("Fake Default Audio Output")
    await speaker.click()
    await expect(alice.locator("#toggle-speaker-label")).to_have_text(outputs[1]["label"])
    await alice.wait_for_function(  # setSinkId settles after the click
        f"() => document.querySelector('#remote-video').sinkId === {outputs[1]['id']!r}"
    )

    # Another microphone from the list.
    await alice.locator("#call-pick-audioinput").select_option(microphones[2]["id"])
    await alice.wait_for_function(
        f"() => ({SENDING_JS})(false).audio.device === {microphones[2]['id']!r}"
    )
    await alice.keyboard.press("Escape")
    await expect(alice.locator("#dialog-media")).to_be_hidden()

    after = await alice.evaluate(SENDING_JS, False)
    for kind in ("audio", "video"):
        assert after[kind]["same"] and after[kind]["sameTransform"], (kind, after)
    # Muting after a switch mutes the new microphone.
    await alice.locator("#btn-mute").click()
    assert await alice.evaluate(
        "() => window.callbook.call.localStream.getAudioTracks().every((t) => !t.enabled)"
    )
    await alice.get_by_role("button", name="End call").click()
