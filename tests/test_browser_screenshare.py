"""Screen sharing in the web client (issue 17, item 7; docs/protocol.md 11.15.1, 11.5.13): the
sharer's screen is a SECOND video track — through the SFU in group and relayed calls, a second
transceiver peer to peer — the camera goes on beside it, and the others show the screen large
with the camera small. The camera is a 320x240 video file (``--use-file-for-fake-video-capture``),
Chromium's fake screen is wider: frames wider than 320 are the screen's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, async_playwright, expect

from signaling.sdk import softphone
from tests.conftest import Server, befriend
from tests.test_browser import CHROMIUM, FLAGS, PHONE, Browsers, account_of, screenshot, sign_up
from tests.test_browser_group import RecordingSession, bot, holds, until, until_decoding

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

CAMERA_W, CAMERA_H = 320, 240

# What a group page decodes from one participant, per source (camera, screen): frames so far,
# the last frame width, and how many video tracks carry it; and how many connections the page
# has to the SFU (one: everything comes over the connection that publishes).
GROUP_VIDEO_JS = """async (participant) => {
  const sfu = window.callbook.group && window.callbook.group.sfu;
  const out = {camera: {frames: 0, width: 0, tracks: 0}, screen: {frames: 0, width: 0, tracks: 0},
               connections: sfu ? sfu.connections().length : 0};
  for (const entry of sfu ? sfu.receiving() : []) {
    if (entry.participant !== participant || entry.kind !== "video") continue;
    const which = out[entry.source];
    which.tracks += 1;
    (await entry.receiver.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        which.frames += s.framesDecoded || 0;
        which.width = s.frameWidth || which.width;
      }
    });
  }
  return out;
}"""

# The same for the other side of a 1:1 call: through the SFU, per received track and its source;
# peer to peer, the screen is the track in ``call.screenStream``.
CALL_VIDEO_JS = """async () => {
  const call = window.callbook.call;
  const out = {camera: {frames: 0, width: 0}, screen: {frames: 0, width: 0}};
  const count = (which, s) => {
    which.frames += s.framesDecoded || 0;
    which.width = s.frameWidth || which.width;
  };
  if (call.sfu) {
    for (const r of call.sfu.receiving()) {
      if (r.kind !== "video") continue;
      (await r.receiver.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") count(out[r.source], s);
      });
    }
    return out;
  }
  const screenIds = new Set(call.screenStream.getTracks().map((t) => t.id));
  (await call.pc.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp" || s.kind !== "video") return;
    count(screenIds.has(s.trackIdentifier) ? out.screen : out.camera, s);
  });
  return out;
}"""


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


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[RecordingSession]:
    """The bots' SfuSessions, reachable while their calls run."""
    RecordingSession.live = []
    monkeypatch.setattr(softphone, "SfuSession", RecordingSession)
    return RecordingSession.live


Video = dict[str, dict[str, int]]


async def group_video(page: Page, participant: str) -> Video:
    result: Video = await page.evaluate(GROUP_VIDEO_JS, participant)
    return result


async def call_video(page: Page) -> Video:
    result: Video = await page.evaluate(CALL_VIDEO_JS)
    return result


async def both_flow(read: Any, what: str, *, screen: bool) -> Video:
    """Wait until the camera (320 wide) decodes more frames — and the screen (wider) too when
    ``screen`` — than at the first look; returns the last look."""
    first: Video = await read()

    async def check() -> Video | None:
        now: Video = await read()
        camera = now["camera"]["frames"] > first["camera"]["frames"] + 5
        camera = camera and now["camera"]["width"] == CAMERA_W
        shared = now["screen"]["frames"] > first["screen"]["frames"] + 5
        shared = shared and now["screen"]["width"] > CAMERA_W
        return now if camera and (shared or not screen) else None

    try:
        return await until(check, what, within=30.0)  # type: ignore[no-any-return]
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {await read()}") from None


async def test_a_shared_screen_reaches_the_group_as_a_second_track_and_is_shown_large(
    server: Server, browsers: Browsers, sessions: list[RecordingSession]
) -> None:
    alice = await browsers.page()
    bob = await browsers.page()
    await sign_up(alice, server, "alice", "Alice Liddell")
    await sign_up(bob, server, "bob", "Bob Builder")
    carol = await bot(server, "carol", "Carol Danvers")  # an aiortc participant (Python SDK)
    answering = asyncio.create_task(carol.answer(90.0))
    try:
        await alice.get_by_role("button", name="Group call").click()
        await alice.fill("#group-handles", "bob carol")
        await alice.locator("#form-group").get_by_role("radio", name="Video", exact=True).check()
        await alice.click("#group-start")

        await expect(bob.locator("#screen-group")).to_have_attribute("data-state", "incoming")
        await bob.get_by_role("button", name="Join group call").click()
        await expect(bob.locator("#group-grid .tile")).to_have_count(3, timeout=30_000)
        await until_decoding(bob, 2)
        sharer = await alice.evaluate("() => window.callbook.group.me")
        await both_flow(lambda: group_video(bob, sharer), "Alice's camera", screen=False)
        tile = bob.locator(f'#group-grid .tile[data-participant="{sharer}"]')
        await expect(tile).not_to_have_class("tile is-screen")

        # Alice shares her screen (keyboard: the button is a real button).
        share = alice.get_by_role("button", name="Share screen")
        await press(share)
        await expect(share).to_have_attribute("aria-pressed", "true")
        await expect(alice.locator("#group-lbl-screen")).to_have_text("Stop sharing")

        # Bob decodes the screen as a second track while Alice's camera goes on, both over his
        # one connection to the SFU.
        seen = await both_flow(lambda: group_video(bob, sharer), "screen and camera", screen=True)
        assert seen["screen"]["tracks"] == 1 and seen["camera"]["tracks"] == 1, seen
        assert seen["connections"] == 1, seen
        # He shows it first and large, with her camera small in its corner.
        await expect(tile).to_have_class("tile is-screen")
        await expect(tile.locator("video.tile-screen")).to_be_visible()
        await expect(tile).to_have_attribute("data-video", "on")
        await expect(tile).to_have_attribute(
            "aria-label", "Alice Liddell (@alice): sharing their screen"
        )
        await expect(bob.locator("#group-grid .tile").first).to_have_attribute(
            "data-participant", sharer
        )
        box = await tile.bounding_box()
        camera = await tile.locator("video.tile-video").bounding_box()
        others = bob.locator(f'#group-grid .tile:not([data-participant="{sharer}"])')
        other = await others.first.bounding_box()
        assert box is not None and other is not None and camera is not None
        assert box["width"] > 1.5 * other["width"], (box, other)
        assert camera["width"] < box["width"] / 3, (camera, box)
        e2ee = await bob.evaluate("() => window.callbook.group.e2ee.stats()")
        assert e2ee["auth_failed"] == 0 and e2ee["decrypted"] > 0, e2ee

        # Carol, an aiortc participant, receives the screen too (decrypted with Alice's key).
        [carols] = sessions
        await holds(
            lambda: sharer in carols.screens and carols.screens[sharer].video_frames_received > 5,
            "Carol decoding Alice's screen",
            within=30.0,
        )
        await screenshot(bob, "group-screen-share-desktop.png")
        await bob.set_viewport_size(PHONE)
        await expect(tile).to_be_visible()
        await screenshot(bob, "group-screen-share-phone.png")
        await bob.set_viewport_size({"width": 1280, "height": 800})

        # Stopping removes the screen's track for everyone; the camera goes on.
        await press(share)
        await expect(share).to_have_attribute("aria-pressed", "false")
        await expect(tile).not_to_have_class("tile is-screen")
        await until(lambda: _no_screen(bob, sharer), "Bob's screen track gone", within=20.0)
        await both_flow(lambda: group_video(bob, sharer), "Alice's camera after", screen=False)
        await holds(
            lambda: sharer not in carols.screens, "Carol's screen connection closed", within=30.0
        )
        assert carols.screens_seen[sharer] > 5

        # The browser's own "Stop sharing" (the track ends) stops it the same way.
        await press(share)
        await expect(tile).to_have_class("tile is-screen", timeout=20_000)
        await alice.evaluate(
            "() => window.callbook.group.screen.track.dispatchEvent(new Event('ended'))"
        )
        await expect(share).to_have_attribute("aria-pressed", "false")
        await expect(tile).not_to_have_class("tile is-screen", timeout=20_000)

        await alice.get_by_role("button", name="Leave group call").click()
        await bob.get_by_role("button", name="Leave group call").click()
    finally:
        answering.cancel()
        await carol.close()


async def press(button: Locator) -> None:
    """Keyboard: the share button is a real button (and a busy renderer, sending a screen and
    a camera on a loaded machine, answers keys sooner than a mouse's stability checks)."""
    await button.focus()
    await button.press("Enter")


async def _no_screen(page: Page, participant: str) -> bool:
    return (await group_video(page, participant))["screen"]["tracks"] == 0


@pytest.mark.parametrize("contacts", [True, False], ids=["peer-to-peer", "through-the-sfu"])
async def test_a_screen_shared_in_a_one_to_one_call_is_a_second_track_beside_the_camera(
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
    through_sfu = await bob.evaluate("() => Boolean(window.callbook.call.sfu)")
    assert through_sfu is not contacts
    await both_flow(lambda: call_video(bob), "Bob decoding Alice's camera", screen=False)
    stage = bob.locator("#screen-call")
    await expect(stage).to_have_attribute("data-screen", "off")

    share = alice.get_by_role("button", name="Share screen")
    await press(share)
    await expect(share).to_have_attribute("aria-pressed", "true")
    await both_flow(lambda: call_video(bob), "Alice's screen beside her camera", screen=True)
    await expect(stage).to_have_attribute("data-screen", "on")
    await expect(bob.locator("#remote-screen")).to_be_visible()
    await expect(stage).to_have_attribute("data-video", "on")
    screen_box = await bob.locator("#remote-screen").bounding_box()
    camera_box = await bob.locator("#remote-video").bounding_box()
    assert screen_box is not None and camera_box is not None
    assert camera_box["width"] < screen_box["width"] / 3, (camera_box, screen_box)
    await holds_on(bob, "() => window.callbook.call.peerSharing", "peer_mute says sharing")
    name = "sfu" if through_sfu else "p2p"
    await screenshot(bob, f"call-screen-share-{name}-desktop.png")

    await press(share)
    await expect(share).to_have_attribute("aria-pressed", "false")
    await expect(stage).to_have_attribute("data-screen", "off", timeout=20_000)
    await both_flow(lambda: call_video(bob), "Alice's camera after the share", screen=False)
    await alice.get_by_role("button", name="End call").click()
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "ended")


async def holds_on(page: Page, script: str, what: str) -> None:
    async def check() -> bool:
        return bool(await page.evaluate(script))

    await until(check, what, within=15.0)
