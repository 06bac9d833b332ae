"""Screen sharing in the web client (issue 17, item 7): the sharer's screen replaces its camera
on its video sender (through the SFU, end-to-end encrypted like the camera), and the others show
it large. Two Chromiums and a bot. The camera is a 320x240 video file
(``--use-file-for-fake-video-capture``), Chromium's fake screen is 1280x720: frames wider than
320 are the screen, whatever the encoder does to the camera's size or the screen's frame rate
(its track's contentHint "detail" keeps the resolution).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.conftest import Server, befriend
from tests.test_browser import CHROMIUM, FLAGS, PHONE, Browsers, account_of, screenshot, sign_up
from tests.test_browser_group import bot, until, until_decoding

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

# What the page decodes from one participant: frames so far, and whether they are a screen's
# (wider than the camera file's 320) or a camera's.
VIDEO_FROM_JS = """async (participant) => {
  const group = window.callbook && window.callbook.group;
  let frames = 0, shape = "";
  const CAMERA_WIDTH = 320;
  for (const pc of group?.sfu?.connectionsOf(participant) ?? []) {
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        frames += s.framesDecoded || 0;
        if (s.frameWidth) shape = s.frameWidth > CAMERA_WIDTH ? "screen" : "camera";
      }
    });
  }
  return {frames, shape};
}"""


# The same for the video a page decodes in its 1:1 call.
CALL_VIDEO_JS = """async () => {
  const call = window.callbook.call;
  const sfu = call && call.sfu;
  const pcs = sfu ? [...sfu.downlinks.values()].map((d) => d.pc) : [call && call.pc];
  let frames = 0, shape = "";
  const CAMERA_WIDTH = 320;
  for (const pc of pcs.filter(Boolean)) (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      frames += s.framesDecoded || 0;
      if (s.frameWidth) shape = s.frameWidth > CAMERA_WIDTH ? "screen" : "camera";
    }
  });
  return {frames, shape};
}"""


CAMERA_W, CAMERA_H = 320, 240


def camera_file(path: Path, frames: int = 20) -> Path:
    """A small y4m clip (4:2:0) that Chromium loops as its camera: a grey that brightens."""
    header = f"YUV4MPEG2 W{CAMERA_W} H{CAMERA_H} F20:1 Ip A1:1 C420jpeg\n".encode()
    chroma = bytes([128]) * (CAMERA_W // 2) * (CAMERA_H // 2) * 2
    with path.open("wb") as out:
        out.write(header)
        for i in range(frames):
            out.write(b"FRAME\n" + bytes([60 + 6 * i]) * (CAMERA_W * CAMERA_H) + chroma)
    return path


@pytest.fixture
async def browsers(tmp_path: Path) -> AsyncIterator[Browsers]:
    """test_browser.py's Chromium, with a camera smaller than any screen."""
    camera = camera_file(tmp_path / "camera.y4m")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*FLAGS, f"--use-file-for-fake-video-capture={camera}"]
        )
        pool = Browsers(browser)
        try:
            yield pool
        finally:
            await pool.close()
            await browser.close()
    assert pool.errors == [], f"uncaught errors in the page: {pool.errors}"


async def video_from(page: Page, participant: str) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(VIDEO_FROM_JS, participant)
    return result


async def until_shape(page: Page, participant: str, shape: str) -> dict[str, Any]:
    """Wait until the page decodes ``shape`` frames from ``participant``, and more after."""
    first = await until(
        lambda: _shape_is(page, participant, shape), f"{shape} frames from {participant}"
    )
    await until(
        lambda: _more_frames(page, participant, first["frames"]), f"frames from {participant}"
    )
    return first


async def _shape_is(page: Page, participant: str, shape: str) -> dict[str, Any] | None:
    seen = await video_from(page, participant)
    return seen if seen["shape"] == shape else None


async def _more_frames(page: Page, participant: str, before: int) -> bool:
    return bool((await video_from(page, participant))["frames"] > before)


async def test_a_shared_screen_reaches_the_others_and_is_shown_large(
    server: Server, browsers: Browsers
) -> None:
    alice = await browsers.page()
    bob = await browsers.page()
    await sign_up(alice, server, "alice", "Alice Liddell")
    await sign_up(bob, server, "bob", "Bob Builder")
    carol = await bot(server, "carol", "Carol Danvers")
    answering = asyncio.create_task(carol.answer(40.0))
    try:
        await alice.get_by_role("button", name="Group call").click()
        await alice.fill("#group-handles", "bob carol")
        await alice.locator("#form-group").get_by_role("radio", name="Video", exact=True).check()
        await alice.click("#group-start")

        await expect(bob.locator("#screen-group")).to_have_attribute("data-state", "incoming")
        await screenshot(bob, "group-incoming-desktop.png")
        await bob.set_viewport_size(PHONE)
        await screenshot(bob, "group-incoming-phone.png")
        await bob.set_viewport_size({"width": 1280, "height": 800})
        await bob.get_by_role("button", name="Join group call").click()
        await expect(bob.locator("#group-grid .tile")).to_have_count(3)
        await until_decoding(bob, 2)
        sharer = await alice.evaluate("() => window.callbook.group.me")
        await until_shape(bob, sharer, "camera")
        tile = bob.locator(f'#group-grid .tile[data-participant="{sharer}"]')
        await expect(tile).not_to_have_class("tile is-screen")

        # Alice shares her screen (keyboard: the button is a real button).
        share = alice.get_by_role("button", name="Share screen")
        await share.focus()
        await alice.keyboard.press("Enter")
        await expect(share).to_have_attribute("aria-pressed", "true")
        await expect(alice.locator("#group-lbl-screen")).to_have_text("Stop sharing")

        # Bob decodes the screen (not the camera) and shows it first and large.
        await until_shape(bob, sharer, "screen")
        await expect(tile).to_have_class("tile is-screen")
        await expect(tile).to_have_attribute("data-video", "on")
        await expect(tile).to_have_attribute(
            "aria-label", "Alice Liddell (@alice): sharing their screen"
        )
        await expect(bob.locator("#group-grid .tile").first).to_have_attribute(
            "data-participant", sharer
        )
        box = await tile.bounding_box()
        others = bob.locator(f'#group-grid .tile:not([data-participant="{sharer}"])')
        other = await others.first.bounding_box()
        assert box is not None and other is not None
        assert box["width"] > 1.5 * other["width"], (box, other)
        e2ee = await bob.evaluate("() => window.callbook.group.e2ee.stats()")
        assert e2ee["auth_failed"] == 0 and e2ee["decrypted"] > 0, e2ee
        await bob.wait_for_timeout(300)  # let the tiles' video settle for the picture
        await screenshot(bob, "group-screen-share-desktop.png")
        await bob.set_viewport_size(PHONE)
        await expect(tile).to_be_visible()
        await screenshot(bob, "group-screen-share-phone.png")

        # Stopping puts the camera back, and the tile goes back in line.
        await alice.get_by_role("button", name="Share screen").click()
        await expect(share).to_have_attribute("aria-pressed", "false")
        await until_shape(bob, sharer, "camera")
        await expect(tile).not_to_have_class("tile is-screen")

        await alice.get_by_role("button", name="Leave group call").click()
        await bob.get_by_role("button", name="Leave group call").click()
    finally:
        answering.cancel()  # Carol stays on her own until her bot's time is up
        await carol.close()


async def call_video_is(page: Page, shape: str) -> bool:
    seen = await page.evaluate(CALL_VIDEO_JS)
    return bool(seen["shape"] == shape and seen["frames"] > 0)


@pytest.mark.parametrize("contacts", [True, False], ids=["peer-to-peer", "through-the-sfu"])
async def test_a_screen_shared_in_a_one_to_one_call_replaces_the_camera_for_the_other(
    server: Server, browsers: Browsers, contacts: bool
) -> None:
    alice = await browsers.page()
    bob = await browsers.page()
    alice_code = await sign_up(alice, server, "alice", "Alice Liddell")
    bob_code = await sign_up(bob, server, "bob", "Bob Builder")
    if contacts:  # else strangers: the server relays the call through its SFU (E2EE frames)
        await befriend(
            await account_of(server, "alice", alice_code),
            await account_of(server, "bob", bob_code),
        )
    await alice.fill("#dial-handle", "bob")
    await alice.click("#dial-video")
    await bob.get_by_role("button", name="Answer with video").click()
    await expect(alice.locator("#screen-call")).to_have_attribute("data-state", "connected")
    await until(lambda: call_video_is(bob, "camera"), "Bob decoding Alice's camera")

    share = alice.get_by_role("button", name="Share screen")
    await share.click()
    await expect(share).to_have_attribute("aria-pressed", "true")
    await until(lambda: call_video_is(bob, "screen"), "Bob decoding Alice's screen")
    await expect(bob.locator("#screen-call")).to_have_attribute("data-video", "on")
    through_sfu = await bob.evaluate("() => Boolean(window.callbook.call.sfu)")
    assert through_sfu is not contacts

    await share.click()
    await expect(share).to_have_attribute("aria-pressed", "false")
    await until(lambda: call_video_is(bob, "camera"), "Bob decoding Alice's camera again")
    await alice.get_by_role("button", name="End call").click()
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "ended")
