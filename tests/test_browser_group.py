"""Group calls in the web client: headless Chromium (fake camera and microphone) in a call with
aiortc bots, through the real SFU and the real server.

The page receives everyone over its one connection to the SFU (``callbook.group.sfu``, which
maps each received track to its sender); each track's inbound-rtp stats tell what the browser
decoded from whom.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from playwright.async_api import Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from signaling.protocol import messages as m
from signaling.protocol.bodies import AccountUpdate
from signaling.sdk import softphone
from signaling.sdk.sfu_session import SfuSession
from signaling.sdk.softphone import Softphone, Summary
from tests.conftest import Server
from tests.test_browser import ARTIFACTS, CHROMIUM, Browsers, screenshot, sign_up
from tests.test_browser import browsers as _browsers  # noqa: F401 (the ``browsers`` fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

# Per other participant of the page's group call: frames decoded and audio packets received
# (each received track's own stats, whichever connection carries it).
GROUP_STATS_JS = """async () => {
  const group = window.callbook && window.callbook.group;
  if (!group || !group.sfu) return null;
  const out = {};
  for (const {participant, pc, source, receiver} of group.sfu.receiving()) {
    if (source === "screen") continue;  // a shared screen: tests/test_browser_screenshare.py
    const entry = out[participant] ?? {state: pc.connectionState, video: 0, audio: 0};
    (await receiver.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") entry.video += s.framesDecoded || 0;
      if (s.type === "inbound-rtp" && s.kind === "audio") entry.audio += s.packetsReceived || 0;
    });
    out[participant] = entry;
  }
  return out;
}"""


# Where the page's group call stands with the SFU (for failure messages).
SFU_STATE_JS = """() => {
  const sfu = window.callbook.group && window.callbook.group.sfu;
  if (!sfu) return "no SFU media";
  const pc = sfu.uplink;
  return JSON.stringify({mode: sfu.mode, revision: sfu.bundled.revision,
    connections: sfu.connections().length, downlinks: sfu.downlinks.size,
    uplink: pc && [pc.signalingState, pc.connectionState],
    transceivers: pc && pc.getTransceivers().map((t) => [t.mid, t.direction, t.currentDirection]),
    mids: [...sfu.bundled.mids].map(([mid, e]) => [mid, e.participant, e.source, e.kind]),
    offers: sfu.bundled.offers, participants: window.callbook.group.participants.map(
      (p) => [p.participant, p.connected])});
}"""


# A 1:1 call through the SFU: whether the page decodes the other side's video and audio.
SFU_CALL_DECODES_JS = """async () => {
  const sfu = window.callbook.call && window.callbook.call.sfu;
  if (!sfu) return false;
  let frames = 0, packets = 0;
  for (const {receiver} of sfu.receiving()) {
    (await receiver.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") frames += s.framesDecoded || 0;
      if (s.kind === "audio") packets += s.packetsReceived || 0;
    });
  }
  return frames > 0 && packets > 0;
}"""


async def until(
    check: Callable[[], Awaitable[Any]], what: str, within: float = 15.0, every: float = 0.25
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)


async def holds(predicate: Callable[[], bool], what: str, within: float = 15.0) -> None:
    """Poll a plain predicate (the bots' counters live in this process)."""

    async def check() -> bool:
        return predicate()

    await until(check, what, within)


async def group_stats(page: Page) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] | None = await page.evaluate(GROUP_STATS_JS)
    return result or {}


async def until_decoding(page: Page, senders: int, video: bool = True) -> dict[str, Any]:
    """Wait until the page receives audio (and decodes video) from ``senders`` participants."""
    last: dict[str, Any] = {}

    async def check() -> dict[str, Any] | None:
        nonlocal last
        last = await group_stats(page)
        good = [s for s in last.values() if s["audio"] > 0 and (not video or s["video"] > 0)]
        return last if len(good) >= senders else None

    try:
        return await until(check, "media from every participant", within=20.0)  # type: ignore[no-any-return]
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last}; {await page.evaluate(SFU_STATE_JS)}") from None


@pytest.fixture
def browsers(_browsers: Browsers) -> Browsers:  # noqa: F811 (the imported fixture)
    """test_browser.py's Chromium (imported under another name, so it is not shadowed)."""
    return _browsers


class RecordingSession(SfuSession):
    """An SfuSession that lets the test look at a bot's counters while the call runs."""

    live: ClassVar[list[RecordingSession]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        RecordingSession.live.append(self)


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[RecordingSession]:
    RecordingSession.live = []
    monkeypatch.setattr(softphone, "SfuSession", RecordingSession)
    return RecordingSession.live


async def bot(server: Server, handle: str, name: str, video: bool = True) -> Softphone:
    phone = Softphone(await server.signup(handle, name), video=video)
    await phone.line.open()
    return phone


async def finish(tasks: list[asyncio.Task[Summary]], within: float = 20.0) -> list[Summary]:
    try:
        return list(await asyncio.wait_for(asyncio.gather(*tasks), within))
    finally:
        for task in tasks:
            task.cancel()


async def test_chromium_hosts_a_group_call_with_three_bots_and_everyone_decodes_everyone(
    server: Server, browsers: Browsers, tmp_path: Path, sessions: list[RecordingSession]
) -> None:
    page = await browsers.page()
    await sign_up(page, server, "alice", "Alice Liddell")
    bots = [
        await bot(server, "bob", "Bob Builder"),
        await bot(server, "carol", "Carol Danvers"),
        await bot(server, "dave", "Dave Bowman"),
    ]
    # The bots stay until the test hangs them up (a fixed stay ran out on a loaded machine).
    answering = [asyncio.create_task(b.answer(120.0)) for b in bots]
    try:
        # Validation in the form, then the invite.
        await page.get_by_role("button", name="Group call").click()
        form = page.locator("#form-group")
        await page.fill("#group-handles", "bob, alice")
        await page.click("#group-start")
        await expect(form.locator(".form-error")).to_contain_text("leave your own handle out")
        await page.fill("#group-handles", "@bob,  carol dave")
        await form.get_by_role("radio", name="Video", exact=True).check()
        await page.click("#group-start")

        screen = page.locator("#screen-group")
        await expect(screen).to_be_visible()
        tiles = page.locator("#group-grid .tile")
        await expect(tiles).to_have_count(4)
        await expect(screen).to_have_attribute("data-state", "joined")
        await expect(page.locator("#group-title")).to_have_text("Your group call")
        await expect(page.locator("#group-status")).to_contain_text("4 people")
        await expect(tiles.filter(has_text="Bob Builder")).to_have_count(1)
        await expect(tiles.filter(has_text="Carol Danvers")).to_have_count(1)

        stats = await until_decoding(page, 3)
        assert len(stats) == 3, stats
        # One encrypted room (docs/e2ee.md): the browser decrypts the bots' frames and they its
        # own, and the browser and the three bots show one safety number.
        await expect(page.locator("#group-e2ee")).to_have_text("End-to-end encrypted")
        number = await page.locator("#group-safety-number").text_content()
        await holds(
            lambda: len(sessions) == 3 and all(s.keys.safety_number == number for s in sessions),
            "the bots' safety numbers",
        )
        e2ee = await page.evaluate("() => window.callbook.group.e2ee.stats()")
        assert e2ee["decrypted"] > 0 and e2ee["auth_failed"] == e2ee["bad_blob"] == 0, e2ee
        await expect(page.locator('#group-grid .tile[data-video="on"]')).to_have_count(4)

        # Muting shows on our own tile and tells the server (the bots see it in participants).
        await page.get_by_role("button", name="Mute microphone").click()
        await expect(page.locator("#group-mute")).to_have_attribute("aria-pressed", "true")
        await expect(page.locator('#group-grid .tile[data-self="yes"] .tile-muted')).to_be_visible()
        muted = await page.evaluate(
            "() => window.callbook.group.localStream.getAudioTracks().every((t) => !t.enabled)"
        )
        assert muted

        await page.wait_for_timeout(300)  # let the tiles' video settle for the picture
        await page.screenshot(path=str(tmp_path / "group-call.png"))
        await screenshot(page, "group-call.png")

        call_id = await page.evaluate("() => window.callbook.group.callId")
        for b in bots:
            await b.line.send(m.Hangup(call_id=call_id))
        summaries = await finish(answering)
        # The bots hung up: their tiles go, and so do their tracks.
        await expect(tiles).to_have_count(1)
        await until(
            lambda: page.evaluate("() => window.callbook.group.sfu.receiving().length === 0"),
            "no more received tracks",
        )
        await page.get_by_role("button", name="Leave group call").click()
        await expect(screen).to_be_hidden()
        await expect(page.locator("#screen-home")).to_be_visible()
    finally:
        for b in bots:
            await b.close()
    for summary in summaries:
        assert summary.outcome == "connected", summary.as_event()
        # Each bot received audio and video from the two other bots and from the browser.
        assert summary.participants_received == 3, summary.as_event()
    assert (tmp_path / "group-call.png").stat().st_size > 0
    assert (ARTIFACTS / "group-call.png").exists()


async def test_chromium_joins_a_bots_group_call_then_leaves(
    server: Server, browsers: Browsers, sessions: list[RecordingSession]
) -> None:
    page = await browsers.page()
    await sign_up(page, server, "alice", "Alice Liddell")
    host = Softphone(await server.signup("bob", "Bob Builder"), video=True)
    carol = await bot(server, "carol", "Carol Danvers")
    tasks = [
        asyncio.create_task(host.group(["alice", "carol"], 14.0)),
        asyncio.create_task(carol.answer(13.0)),
    ]
    try:
        screen = page.locator("#screen-group")
        await expect(screen).to_have_attribute("data-state", "incoming")
        await expect(page.locator("#group-title")).to_have_text(
            "Bob Builder invites you to a group call"
        )
        await expect(page.locator("#group-kind")).to_have_text("Incoming group video call")
        await expect(page.locator("#group-join")).to_be_focused()
        await page.get_by_role("button", name="Join group call").click()

        await expect(page.locator("#group-grid .tile")).to_have_count(3)
        await expect(page.locator("#group-title")).to_have_text("Bob Builder’s group call")
        await until_decoding(page, 2)
        me = await page.evaluate("() => window.callbook.group.me")
        # The bots decode the browser too: they have its key (and a keyframe after it) only
        # once its media_keys reached them, which may be after the browser decodes them.
        await holds(
            lambda: (
                len(sessions) == 2
                and all(
                    me in s.received and s.received[me].video_frames_received > 0 for s in sessions
                )
            ),
            "both bots decoding the browser's video",
        )

        # The browser leaves; the bots carry on and keep receiving each other.
        await page.get_by_role("button", name="Leave group call").click()
        await expect(screen).to_be_hidden()
        await holds(lambda: len(sessions) == 2, "both bots in the call")

        def from_bots() -> list[int]:
            return [
                counter.audio_packets_received
                for session in sessions
                for participant, counter in session.received.items()
                if participant != me
            ]

        def roster_sizes() -> list[int]:
            return [len(session.roster) for session in sessions]

        await holds(lambda: roster_sizes() == [2, 2], "the roster without us")
        before = from_bots()
        assert len(before) == 2, before
        await holds(
            lambda: all(a > b for a, b in zip(from_bots(), before, strict=True)),
            "the bots receiving each other after the browser left",
        )
        # Both bots had the browser's media while it was there.
        for session in sessions:
            assert session.received[me].audio_packets_received > 0
            assert session.received[me].video_frames_received > 0
        summaries = await finish(tasks)
    finally:
        for phone in (host, carol):
            await phone.close()
    for summary in summaries:
        assert summary.outcome == "connected", summary.as_event()
        assert summary.participants_received == 2, summary.as_event()


async def test_active_speaker_is_highlighted(server: Server, browsers: Browsers) -> None:
    page = await browsers.page()
    await sign_up(page, server, "alice", "Alice Liddell")
    bots = [
        await bot(server, "bob", "Bob Builder", video=False),
        await bot(server, "carol", "Carol Danvers", video=False),
    ]
    answering = [asyncio.create_task(b.answer(120.0)) for b in bots]  # cancelled at the end
    try:
        await page.get_by_role("button", name="Group call").click()
        await page.fill("#group-handles", "bob carol")
        await page.click("#group-start")
        await expect(page.locator("#group-grid .tile")).to_have_count(3)
        await until_decoding(page, 2, video=False)
        # Audio only: avatars instead of video, and no camera button.
        await expect(page.locator('#group-grid .tile[data-video="off"]')).to_have_count(3)
        await expect(page.locator("#group-camera-wrap")).to_be_hidden()

        # The bots send a steady tone; the SFU names the loudest participant about once a second.
        # Two equal tones: the SFU may name either and switch between them, so the highlight and
        # the app's speaker are read in one go rather than one after the other. The bound is
        # generous: once, in CI under a CPU hog, 15 s went by without a consistent highlight.
        try:
            await page.wait_for_function(
                """() => {
                    const tiles = document.querySelectorAll("#group-grid .tile.is-speaking");
                    if (tiles.length !== 1) return false;
                    const tile = tiles[0];
                    return tile.dataset.participant === window.callbook.group.speaker
                        && tile.getAttribute("aria-current") === "true"
                        && /: .*speaking$/.test(tile.getAttribute("aria-label") || "");
                }""",
                timeout=45_000,
            )
        except PlaywrightTimeout:
            seen = await page.evaluate(
                """() => ({
                    speaker: window.callbook.group.speaker,
                    tiles: [...document.querySelectorAll("#group-grid .tile")].map((t) => ({
                        participant: t.dataset.participant, cls: t.className,
                        current: t.getAttribute("aria-current"),
                        label: t.getAttribute("aria-label"),
                    })),
                })"""
            )
            pytest.fail(f"no consistent active-speaker highlight: {seen}")
    finally:
        for task in answering:
            task.cancel()
        for b in bots:
            await b.close()


async def test_hide_my_ip_call_without_turn_goes_through_the_sfu(
    server: Server, browsers: Browsers
) -> None:
    page = await browsers.page()
    await sign_up(page, server, "alice", "Alice Liddell")
    robot = Softphone(await server.signup("robot", "Robot"), video=True)
    await robot.client.update(AccountUpdate(hide_ip=True))
    await robot.line.open()
    answering = asyncio.create_task(robot.answer(None))
    try:
        await page.fill("#dial-handle", "robot")
        await page.click("#dial-video")
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "connected")
        await until(
            lambda: page.evaluate(SFU_CALL_DECODES_JS),
            "the robot's media through the SFU",
            within=20.0,
        )
        await expect(page.locator("#screen-call")).to_have_attribute("data-video", "on")
        await page.wait_for_timeout(1500)  # the robot decodes for a moment
        await page.get_by_role("button", name="End call").click()
        summary = await asyncio.wait_for(answering, 20)
    finally:
        answering.cancel()
        await robot.close()
    assert summary.outcome == "connected", summary.as_event()
    assert summary.media.video_frames_received > 0
    assert summary.media.audio_packets_received > 0
