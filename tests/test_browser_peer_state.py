"""What the other side of a 1:1 call does (issue 17, item 3): when one person mutes and turns
their camera off, the other sees it said under their name and their avatar instead of a black
picture; it clears when they come back. The Python SDK takes the new message in its stride."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Page, expect

from signaling.sdk.softphone import Softphone
from tests.conftest import Server, befriend
from tests.test_browser import (
    DESKTOP,
    PHONE,
    Browsers,
    account_of,
    browsers,
    screenshot,
    sign_up,
    until_frames,
)

__all__ = ["browsers"]


async def video_call(alice: Page, bob: Page) -> None:
    await alice.fill("#dial-handle", "bob")
    await alice.click("#dial-video")
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "incoming")
    await bob.get_by_role("button", name="Answer with video").click()
    for page in (alice, bob):
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "connected")
        await until_frames(page)


@pytest.mark.slow
async def test_the_other_side_sees_mute_and_camera_off_and_their_avatar(
    server: Server, browsers: Browsers
) -> None:
    alice = await browsers.page()
    bob = await browsers.page()
    alice_code = await sign_up(alice, server, "alice", "Alice Liddell")
    bob_code = await sign_up(bob, server, "bob", "Bob Builder")
    await befriend(
        await account_of(server, "alice", alice_code), await account_of(server, "bob", bob_code)
    )
    await video_call(alice, bob)
    screen, state = alice.locator("#screen-call"), alice.locator("#call-peer-state")
    await expect(screen).to_have_attribute("data-video", "on")
    await expect(state).to_be_hidden()

    # Bob, by keyboard: mute, then camera off.
    await bob.get_by_role("button", name="Mute microphone").focus()
    await bob.keyboard.press("Enter")
    await expect(state).to_have_text("Bob Builder is muted")
    await expect(screen).to_have_attribute("data-video", "on")
    await bob.get_by_role("button", name="Turn camera off").focus()
    await bob.keyboard.press("Enter")
    await expect(state).to_have_text("Bob Builder is muted and their camera is off")
    await expect(screen).to_have_attribute("data-video", "off")
    await expect(alice.locator("#call-avatar")).to_be_visible()
    await expect(alice.locator("#call-announce")).to_contain_text("camera is off")
    # Bob's own screen says nothing of the kind about Alice.
    await expect(bob.locator("#call-peer-state")).to_be_hidden()

    await alice.wait_for_timeout(400)  # the picture fades out
    await screenshot(alice, "in-call-peer-muted.png")
    await alice.set_viewport_size(PHONE)
    await screenshot(alice, "in-call-peer-muted-phone.png")
    await alice.set_viewport_size(DESKTOP)

    # Back on: the label goes and his picture returns.
    await bob.get_by_role("button", name="Turn camera off").click()
    await bob.get_by_role("button", name="Mute microphone").click()
    await expect(state).to_be_hidden()
    await expect(screen).to_have_attribute("data-video", "on")


@pytest.mark.slow
async def test_a_python_softphone_takes_peer_mute_in_its_stride(
    server: Server, browsers: Browsers
) -> None:
    page = await browsers.page()
    code = await sign_up(page, server, "alice", "Alice")
    robot = await server.signup("robot")
    await befriend(await account_of(server, "alice", code), robot)
    bot = Softphone(robot, video=True)
    await bot.line.open()
    answering = asyncio.create_task(bot.answer(duration_s=None))
    try:
        await page.fill("#dial-handle", "robot")
        await page.click("#dial-video")
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "connected")
        await until_frames(page)
        await page.get_by_role("button", name="Mute microphone").click()
        await page.get_by_role("button", name="Turn camera off").click()
        await page.get_by_role("button", name="Mute microphone").click()
        # The call goes on: the bot's video still arrives after the messages.
        before = (await until_frames(page))["video"]
        await page.wait_for_function(
            f"""async () => {{
              const pc = window.callbook.pc; let n = 0;
              (await pc.getStats()).forEach((s) => {{
                if (s.type === "inbound-rtp" && s.kind === "video") n = s.framesDecoded;
              }});
              return n > {before};
            }}"""
        )
        await page.get_by_role("button", name="End call").click()
        summary = await asyncio.wait_for(answering, 20)
    finally:
        answering.cancel()
        await bot.close()
    assert summary.outcome == "connected", summary.as_event()
