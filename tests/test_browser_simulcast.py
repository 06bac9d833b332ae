"""Simulcast in the web client (docs/protocol.md 11.15.3): three Chromium participants publish
their camera in layers through the real SFU; a subscriber that asks for a small tile gets the
small layer while another gets the full one, switches start at keyframes and decode cleanly.
The group view asks by itself (sdk/view.js): a small window gets a small layer, a hidden tab no
video (its audio goes on), and coming back brings the video back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect

from media.control import MediaControl
from media.embedded import EmbeddedMedia
from tests.conftest import Server
from tests.test_browser import CHROMIUM, FLAGS, Browsers, screenshot, sign_up
from tests.test_browser_group import until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

#: Chromium sends fewer layers for small cameras (two at the fake device's 640x480); this field
#: trial lets it send all three, as it would from a 720p camera.
SIMULCAST_FLAGS = [*FLAGS, "--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/"]

#: Per other participant: the video the page decodes from them (size, frames, keyframes).
VIDEO_FROM_JS = """async () => {
  const group = window.callbook && window.callbook.group;
  if (!group || !group.sfu) return null;
  const out = {};
  for (const {participant, source, kind, receiver} of group.sfu.receiving()) {
    if (source === "screen" || kind !== "video") continue;
    (await receiver.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp" || s.kind !== "video") return;
      out[participant] = {
        height: s.frameHeight || 0, frames: s.framesDecoded || 0,
        keyframes: s.keyFramesDecoded || 0, freezes: s.freezeCount || 0,
      };
    });
  }
  return out;
}"""

#: What the page's own camera sends, per layer (rid -> frameHeight).
SENDING_JS = """async () => {
  const pc = window.callbook.group.sfu.uplink;
  const out = {};
  (await pc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video" && s.rid) out[s.rid] = s.frameHeight || 0;
  });
  return out;
}"""


#: Per other participant: the audio packets the page has received from them.
AUDIO_FROM_JS = """async () => {
  const out = {};
  for (const {participant, source, kind, receiver} of window.callbook.group.sfu.receiving()) {
    if (source !== "camera" || kind !== "audio") continue;
    (await receiver.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") out[participant] = s.packetsReceived || 0;
    });
  }
  return out;
}"""

#: Headless Chromium keeps every page visible (activating another tab, minimising the window and
#: the focus emulation all leave ``visibilityState`` "visible"), so the tab's hiding is emulated
#: where the page reads it: ``document.visibilityState`` and a ``visibilitychange`` event.
TAB_HIDDEN_JS = """(hidden) => {
  const state = hidden ? "hidden" : "visible";
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
  Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
  document.dispatchEvent(new Event("visibilitychange"));
}"""

#: A window large enough that a grid of three tiles shows each at 480 lines or more: the group
#: view then asks for (and gets) the full layer of a 640x480 camera.
LARGE = {"width": 1500, "height": 1400}

#: Keep the ``view`` messages the page sends (what its group view asks the SFU for).
RECORD_VIEWS_JS = """() => {
  const line = window.callbook.group.line;
  const send = line.send.bind(line);
  window.__views = [];
  line.send = (message) => {
    if (message.type === "view") window.__views.push(message);
    return send(message);
  };
}"""

#: Where a page's group call stands, for the messages of failed waits.
WHERE_JS = """() => {
  const group = window.callbook.group;
  if (!group) return "no group call";
  const pcs = group.sfu ? group.sfu.connections().map((pc) => pc.connectionState) : [];
  return `group ${group.state} (${group.endReason || "-"}), connections ${pcs.join(",")}`;
}"""

SIMULCAST_FIGURES = {"layer_switches", "probes", "video_paused", "subscriber_estimates_bps"}
SFU_STATS: Any = None


#: The web SDK sends two layers from a 480-line camera (Chromium's own limit, which the
#: field trial above lifts): these tests ask for all three.
FORCE_THREE_LAYERS_JS = """async () => {
  (await import("/static/sdk/simulcast.js")).setSimulcast(true, {layers: 3});
}"""


@pytest.fixture
async def browsers() -> AsyncIterator[Browsers]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=SIMULCAST_FLAGS)
        pool = Browsers(browser)
        try:
            yield pool
        finally:
            await pool.close()
            await browser.close()


@pytest.fixture
async def sfu_stats(sfu: EmbeddedMedia) -> AsyncIterator[None]:
    """The SFU's figures, for the messages of failed waits (``SFU_STATS``)."""
    global SFU_STATS
    async with MediaControl(sfu.url, sfu.secret) as control:
        SFU_STATS = control.stats
        try:
            yield
        finally:
            SFU_STATS = None


async def video_from(page: Page) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] | None = await page.evaluate(VIDEO_FROM_JS)
    return result or {}


async def decoding_at(page: Page, who: str, height: int, what: str) -> dict[str, Any]:
    """Wait until ``page`` decodes ``who``'s video at ``height`` with frames still coming."""

    async def check() -> dict[str, Any] | None:
        first = (await video_from(page)).get(who)
        if first is None or first["height"] != height:
            return None
        await asyncio.sleep(0.5)
        later = (await video_from(page)).get(who)
        if later is None or later["height"] != height or later["frames"] <= first["frames"]:
            return None
        return later

    try:
        return await until(check, what, within=60.0)  # type: ignore[no-any-return]
    except AssertionError as exc:
        stats = await SFU_STATS() if SFU_STATS else {}
        figures = {k: v for k, v in stats.items() if k in SIMULCAST_FIGURES}
        where = await page.evaluate(WHERE_JS)
        raise AssertionError(f"{exc}: {await video_from(page)}; {where}; SFU {figures}") from None


async def test_three_chromium_publish_simulcast_and_a_small_tile_gets_the_small_layer(
    server: Server, browsers: Browsers, sfu_stats: None
) -> None:
    pages = [await browsers.page() for _ in range(3)]
    for page, name in zip(pages, ("alice", "bob", "carol"), strict=True):
        await sign_up(page, server, name, name.title())
    alice, bob, carol = pages
    layers = await group_call(alice, bob, carol)
    full = layers["f"]
    me = await alice.evaluate("() => window.callbook.group.me")

    # With room to spare, both get the full layer.
    await decoding_at(bob, me, full, "bob decoding alice's full layer")
    before = await decoding_at(carol, me, full, "carol decoding alice's full layer")

    # Carol shows alice in a small tile: the quarter layer, from a keyframe, decoding on.
    await carol.evaluate(
        """(who) => window.callbook.group.line.send({type: "view",
            call_id: window.callbook.group.callId, participant: who, max_height: 120})""",
        me,
    )
    small = await decoding_at(carol, me, layers["q"], "carol switched to alice's small layer")
    assert small["keyframes"] > before["keyframes"]  # the switch began at a keyframe
    await decoding_at(bob, me, full, "bob still on alice's full layer")
    await screenshot(carol, "simulcast-small-tile.png")

    # The tile grows again: back to the full layer.
    await carol.evaluate(
        """(who) => window.callbook.group.line.send({type: "view",
            call_id: window.callbook.group.callId, participant: who, max_height: null})""",
        me,
    )
    await decoding_at(carol, me, full, "carol back on alice's full layer")
    errors = await carol.evaluate("() => window.callbook.group.e2ee.stats()")
    assert errors["auth_failed"] == errors["bad_blob"] == 0, errors


async def group_call(alice: Page, bob: Page, carol: Page) -> dict[str, int]:
    """Alice calls bob and carol, who join; returns the heights of alice's three layers."""
    for page in (alice, bob, carol):  # three layers even from the fake 640x480 camera
        await page.evaluate(FORCE_THREE_LAYERS_JS)
        await page.set_viewport_size(LARGE)  # tiles tall enough for the full layer
    await alice.get_by_role("button", name="Group call").click()
    await alice.fill("#group-handles", "bob carol")
    await alice.locator("#form-group").get_by_role("radio", name="Video", exact=True).check()
    await alice.click("#group-start")
    for page in (bob, carol):
        await expect(page.locator("#screen-group")).to_have_attribute(
            "data-state", "incoming", timeout=30_000
        )
        await page.get_by_role("button", name="Join group call").click()
    for page in (alice, bob, carol):
        await expect(page.locator("#group-grid .tile")).to_have_count(3, timeout=30_000)
    # Alice's camera goes out in three layers, a quarter, a half and all of its height.
    layers: dict[str, int] = await until(
        lambda: _all_layers(alice), "alice sending three layers", within=30.0
    )
    assert layers["q"] * 4 == layers["f"] and layers["h"] * 2 == layers["f"], layers
    return layers


async def _all_layers(page: Page) -> dict[str, int] | None:
    layers: dict[str, int] = await page.evaluate(SENDING_JS)
    return layers if len(layers) == 3 and all(layers.values()) else None


async def tile_height(page: Page, who: str) -> int:
    """The height in device pixels of the tile ``page`` shows ``who`` in."""
    height: int = await page.evaluate(
        """(who) => {
          const tile = document.querySelector(`#group-grid .tile[data-participant="${who}"]`);
          return Math.round(tile.clientHeight * devicePixelRatio);
        }""",
        who,
    )
    return height


def layer_for(layers: dict[str, int], height: int) -> int:
    """The layer the SFU picks for a tile ``height`` high: the tallest that fits, or the lowest."""
    fitting = [h for h in layers.values() if h <= height]
    return max(fitting) if fitting else min(layers.values())


async def asked(page: Page, who: str, height: int) -> bool:
    """Whether ``page`` asked the SFU for at most ``height`` lines of ``who``'s camera."""
    views: list[dict[str, Any]] = await page.evaluate("() => window.__views")
    return any(
        v["participant"] == who and v["source"] == "camera" and v["max_height"] == height
        for v in views
    )


async def video_stopped(page: Page, who: str) -> dict[str, Any] | None:
    first = (await video_from(page)).get(who)
    await asyncio.sleep(1.0)
    later = (await video_from(page)).get(who)
    if not (first and later and later["frames"] == first["frames"]):
        return None
    # Frames may stall for other reasons: the SFU must also count a video it holds back.
    return later if SFU_STATS and (await SFU_STATS()).get("video_paused", 0) >= 1 else None


async def audio_rising(page: Page, who: str) -> bool:
    first = (await page.evaluate(AUDIO_FROM_JS)).get(who, 0)
    await asyncio.sleep(0.5)
    return bool((await page.evaluate(AUDIO_FROM_JS)).get(who, 0) > first)


async def test_a_small_window_gets_a_small_layer_and_a_hidden_tab_no_video(
    server: Server, browsers: Browsers, sfu_stats: None
) -> None:
    pages = [await browsers.page() for _ in range(3)]
    for page, name in zip(pages, ("alice", "bob", "carol"), strict=True):
        await sign_up(page, server, name, name.title())
    alice, bob, carol = pages
    layers = await group_call(alice, bob, carol)
    full = layers["f"]
    me = await alice.evaluate("() => window.callbook.group.me")
    assert await tile_height(carol, me) >= full  # a large window: the full layer is wanted
    await decoding_at(bob, me, full, "bob decoding alice's full layer")
    await decoding_at(carol, me, full, "carol decoding alice's full layer")

    # Carol makes her window small: her tiles shrink, the group view says so, and the SFU sends
    # her the layer that fits her tile of alice while bob keeps the full one.
    await carol.evaluate(RECORD_VIEWS_JS)
    await carol.set_viewport_size({"width": 800, "height": 560})
    small_tile = await tile_height(carol, me)
    expected = layer_for(layers, small_tile)
    assert expected < full, (small_tile, layers)
    await until(
        lambda: asked(carol, me, small_tile), f"carol asking for {small_tile} lines", within=30.0
    )
    await decoding_at(carol, me, expected, f"carol decoding the layer of a {small_tile}-pixel tile")
    await decoding_at(bob, me, full, "bob still on alice's full layer")
    await screenshot(carol, "simulcast-small-window.png")

    # Carol's tab goes to the background: no video for her any more, her audio goes on.
    await carol.evaluate(TAB_HIDDEN_JS, True)
    assert await asked(carol, me, 0)  # at once, without waiting for a timer
    await until(lambda: video_stopped(carol, me), "carol's video of alice paused", within=60.0)
    await until(lambda: audio_rising(carol, me), "carol still hearing alice", within=30.0)
    await decoding_at(bob, me, full, "bob still on alice's full layer while carol is away")

    # She comes back: the video of her small tile resumes.
    await carol.evaluate(TAB_HIDDEN_JS, False)
    await decoding_at(carol, me, expected, "carol's video of alice back after the tab shows again")
    errors = await carol.evaluate("() => window.callbook.group.e2ee.stats()")
    assert errors["auth_failed"] == errors["bad_blob"] == 0, errors
