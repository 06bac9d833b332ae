"""A reload in the middle of a 1:1 call (issue 17, item 1): the tab keeps its resume token, asks
before leaving, resumes within the window and sets media up again; the other person sees
"Reconnecting…" and then the call goes on, with new media both ways."""

from __future__ import annotations

import pytest
from playwright.async_api import Dialog, Page, expect

from signaling.protocol.bodies import AccountUpdate
from tests.conftest import Server, befriend
from tests.test_browser import (
    STATS_JS,
    Browsers,
    account_of,
    browsers,
    sign_up,
    stats,
    until_frames,
)

__all__ = ["browsers"]

# Every text #call-status shows from now on, so a passing state can be asserted afterwards.
WATCH_STATUS_JS = """() => {
  window.__statuses = [];
  const box = document.querySelector("#call-status");
  new MutationObserver(() => window.__statuses.push(box.textContent))
    .observe(box, {childList: true, characterData: true, subtree: true});
}"""


async def connected_call(alice: Page, bob: Page) -> None:
    await alice.fill("#dial-handle", "bob")
    await alice.click("#dial-video")
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "incoming")
    await bob.get_by_role("button", name="Answer with video").click()
    for page in (alice, bob):
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "connected")
        await until_frames(page)


async def more_frames(page: Page) -> None:
    """Frames keep coming on the page's current peer connection."""
    before = (await stats(page)).get("video", 0)
    await page.wait_for_function(f"async () => ({STATS_JS})().then((s) => s.video > {before})")


@pytest.mark.slow
@pytest.mark.parametrize("who", ["callee", "caller"])
async def test_a_reload_resumes_the_call_and_the_other_side_sees_reconnecting(
    server: Server, browsers: Browsers, who: str
) -> None:
    alice = await browsers.page()
    bob = await browsers.page()
    alice_code = await sign_up(alice, server, "alice", "Alice Liddell")
    bob_code = await sign_up(bob, server, "bob", "Bob Builder")
    await befriend(
        await account_of(server, "alice", alice_code), await account_of(server, "bob", bob_code)
    )
    await connected_call(alice, bob)
    leaving, staying = (bob, alice) if who == "callee" else (alice, bob)
    call_id = await staying.evaluate("window.callbook.call.callId")
    await staying.evaluate(WATCH_STATUS_JS)

    # Leaving asks first; the person confirms (a reload) and the tab comes back into the call.
    prompts: list[str] = []

    async def confirm(dialog: Dialog) -> None:
        prompts.append(dialog.type)
        await dialog.accept()

    leaving.on("dialog", confirm)
    await leaving.reload()
    assert prompts == ["beforeunload"]
    await expect(leaving.locator("#screen-call")).to_be_visible()
    await expect(leaving.locator("#call-name")).to_have_text(
        "Alice Liddell" if leaving is bob else "Bob Builder"
    )
    await leaving.wait_for_function("() => window.callbook.line.welcome?.resumed === true")
    assert await leaving.evaluate("window.callbook.call.callId") == call_id
    for page in (leaving, staying):
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "connected")
    await until_frames(leaving)
    await more_frames(staying)
    await expect(staying.locator("#call-note")).to_be_hidden()

    seen = await staying.evaluate("window.__statuses")
    assert "Reconnecting…" in seen, seen
    assert await staying.evaluate("window.callbook.call.callId") == call_id

    # The call goes on as any other: hanging up ends it for both.
    await leaving.get_by_role("button", name="End call").click()
    await expect(staying.locator("#screen-call")).to_have_attribute("data-state", "ended")


@pytest.mark.slow
async def test_without_a_call_a_reload_asks_nothing(server: Server, browsers: Browsers) -> None:
    page = await browsers.page()
    await sign_up(page, server, "alice")
    prompts: list[str] = []
    page.on("dialog", lambda dialog: prompts.append(dialog.type))
    await page.click("#dial-handle")  # a user gesture, without which no prompt could show
    await page.reload()
    await expect(page.locator("#status-pill")).to_have_attribute("data-state", "online")
    assert prompts == []


# Frames decoded from the other side through the SFU, on the page's current 1:1 call.
SFU_FRAMES_JS = """async () => {
  const sfu = window.callbook.call && window.callbook.call.sfu;
  if (!sfu) return 0;
  let frames = 0;
  for (const {receiver} of sfu.receiving()) {
    (await receiver.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
    });
  }
  return frames;
}"""


async def sfu_frames_grow(page: Page, beyond: int = 0) -> None:
    await page.wait_for_function(
        f"async () => ({SFU_FRAMES_JS})().then((n) => n > {beyond})", timeout=20_000
    )


@pytest.mark.slow
async def test_a_reload_in_a_call_through_the_sfu_says_the_call_ended(
    server: Server, browsers: Browsers
) -> None:
    """The SFU ends a relayed call once a side's media connection closes, as a reload does:
    the reloaded page says so instead of showing a call that cannot come back."""
    alice = await browsers.page()
    bob = await browsers.page()
    await sign_up(alice, server, "alice", "Alice Liddell")
    bob_code = await sign_up(bob, server, "bob", "Bob Builder")
    # Hide-my-IP with no TURN server: the server relays the call through its SFU.
    await (await account_of(server, "bob", bob_code)).update(AccountUpdate(hide_ip=True))
    await alice.fill("#dial-handle", "bob")
    await alice.click("#dial-video")
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "incoming")
    await bob.get_by_role("button", name="Answer with video").click()
    for page in (alice, bob):
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "connected")
        await sfu_frames_grow(page)

    bob.on("dialog", lambda dialog: dialog.accept())
    await bob.reload()
    await expect(bob.locator("#toasts")).to_contain_text("Your call ended when the page reloaded")
    await expect(bob.locator("#screen-call")).to_be_hidden()
    await expect(alice.locator("#screen-call")).to_have_attribute("data-state", "ended")
