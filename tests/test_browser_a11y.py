"""Keyboard and touch use of the web client (issue 17, item 11): every button and link reached
with Tab shows a focus ring (the accent buttons too); Escape closes dialogs and the end-of-call
screen, and focus lands somewhere useful; a toggle keeps one name and says "pressed" only in its
state; small controls are 44 px on phones."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.conftest import Server
from tests.test_browser import (
    DESKTOP,
    PHONE,
    Browsers,
    add_contact,
    browsers,
    screenshot,
    sign_up,
)

__all__ = ["browsers"]

# The focused element, and whether it shows a ring of at least 2 px: an outline, or a shadow
# with no offset and no blur but a spread (a drop shadow is no ring).
FOCUSED_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const outline = style.outlineStyle !== "none" && (parseFloat(style.outlineWidth) || 0) >= 2;
  const spread = [...style.boxShadow.matchAll(/0px 0px 0px (\\d+(?:\\.\\d+)?)px/g)]
    .some((m) => parseFloat(m[1]) >= 2);
  return {
    what: `${el.tagName.toLowerCase()}#${el.id}.${[...el.classList].join(".")} ${
      (el.getAttribute("aria-label") || el.textContent).trim().slice(0, 30)}`,
    control: el.matches("button, a[href]"),
    primary: el.classList.contains("btn-primary"),
    ring: outline || spread,
  };
}"""


async def tab_through(page: Page, steps: int = 40) -> list[dict[str, object]]:
    """Tab from the top of the page; what each stop was."""
    await page.evaluate("() => document.activeElement && document.activeElement.blur()")
    seen = []
    for _ in range(steps):
        await page.keyboard.press("Tab")
        stop = await page.evaluate(FOCUSED_JS)
        if stop is not None:
            seen.append(stop)
    return seen


@pytest.mark.slow
async def test_focus_rings_and_touch_targets_on_the_home_screen(
    server: Server, browsers: Browsers
) -> None:
    await server.signup("bob", "Bob Builder")
    page = await browsers.page()
    await sign_up(page, server, "alice", "Alice Liddell")
    await add_contact(page, "bob", "Bobby")
    await expect(page.locator("#contacts-list li")).to_have_count(1)

    stops = await tab_through(page)
    controls = [stop for stop in stops if stop["control"]]
    assert any(stop["primary"] for stop in controls), stops
    assert [stop["what"] for stop in controls if not stop["ring"]] == []

    await screenshot(page, "home-keyboard.png")
    await page.set_viewport_size(PHONE)
    for target in (
        page.locator("#contact-add-toggle"),
        page.get_by_role("link", name="Change"),
        page.locator("#my-handle"),
        page.get_by_role("link", name="Your profile"),
    ):
        box = await target.bounding_box()
        assert box is not None and box["width"] >= 44 and box["height"] >= 44, (target, box)
    small = await page.evaluate(
        """() => [...document.querySelectorAll("#screen-home button, #screen-home a[href]")]
          .filter((el) => el.getClientRects().length && !el.closest("[hidden]"))
          .map((el) => [el.id || el.textContent.trim(), el.getBoundingClientRect()])
          .filter(([, r]) => r.width < 44 || r.height < 44)
          .map(([what, r]) => `${what} ${Math.round(r.width)}x${Math.round(r.height)}`)"""
    )
    assert small == [], small
    await screenshot(page, "home-keyboard-phone.png")
    await page.set_viewport_size(DESKTOP)


@pytest.mark.slow
async def test_escape_closes_dialogs_and_the_end_of_call_screen_and_toggles_keep_their_name(
    server: Server, browsers: Browsers
) -> None:
    alice = await browsers.page()
    bob = await browsers.page()
    await sign_up(alice, server, "alice", "Alice Liddell")
    await sign_up(bob, server, "bob", "Bob Builder")

    # A dialog: Escape closes it and focus goes back to the button that opened it.
    await alice.goto(server.url + "/#settings")
    await alice.locator("#erase-btn").focus()
    await alice.keyboard.press("Enter")
    await expect(alice.locator("#dialog-erase")).to_be_visible()
    await alice.keyboard.press("Escape")
    await expect(alice.locator("#dialog-erase")).to_be_hidden()
    await expect(alice.locator("#erase-btn")).to_be_focused()
    await alice.goto(server.url + "/#calls")

    async def dial() -> None:
        await alice.locator("#dial-handle").focus()
        await alice.keyboard.type("bob")
        await alice.keyboard.press("Enter")
        await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "incoming")
        await expect(bob.locator("#btn-answer-audio")).to_be_focused()

    # Bob declines by keyboard; Alice's "Call declined" screen closes with Escape, wherever
    # her focus was, and focus goes back to the dialler.
    await dial()
    await bob.get_by_role("button", name="Decline").focus()
    await bob.keyboard.press("Enter")
    await expect(alice.locator("#call-status")).to_have_text("Call declined")
    await alice.keyboard.press("Escape")
    assert await alice.evaluate("document.querySelector('#screen-call').hidden")
    await expect(alice.locator("#dial-handle")).to_be_focused()

    # Answered by keyboard; the mute toggle keeps its name and reports "pressed" in its state.
    await alice.fill("#dial-handle", "")
    await dial()
    await bob.keyboard.press("Enter")
    for page in (alice, bob):
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "connected")
    mute = bob.get_by_role("button", name="Mute microphone", exact=True)
    await mute.focus()
    await bob.keyboard.press("Enter")
    await expect(mute).to_have_attribute("aria-pressed", "true")
    await expect(bob.get_by_role("button", name="Mute microphone", pressed=True)).to_be_visible()
    await expect(bob.get_by_role("button", name="Unmute microphone")).to_have_count(0)
    await bob.keyboard.press("Enter")
    await expect(bob.get_by_role("button", name="Mute microphone", pressed=False)).to_be_visible()

    # Alice hangs up: Bob's end-of-call screen goes with Escape, focus lands on his dialler.
    await alice.get_by_role("button", name="End call").click()
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "ended")
    await bob.keyboard.press("Escape")
    assert await bob.evaluate("document.querySelector('#screen-call').hidden")
    await expect(bob.locator("#dial-handle")).to_be_focused()
