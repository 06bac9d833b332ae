"""Dialling a handle (issue 17, item 2): a handle the lookup cannot find — nobody has it, its
owner hides or blocks us — is told at once with the lookup's one message; a person who exists
but may not be rung still gets the silent ring, as the privacy promise says."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from signaling.protocol.bodies import AccountUpdate
from tests.conftest import Server
from tests.test_browser import Browsers, browsers, sign_up

__all__ = ["browsers"]

NOT_FOUND = "No one found with that handle."


async def dial_by_keyboard(page: Page, handle: str) -> None:
    await page.fill("#dial-handle", "")
    await page.focus("#dial-handle")
    await page.keyboard.type(handle)
    await page.keyboard.press("Enter")


@pytest.mark.slow
async def test_a_handle_no_one_can_be_found_under_is_said_at_once(
    server: Server, browsers: Browsers
) -> None:
    page = await browsers.page()
    await sign_up(page, server, "alice", "Alice Liddell")
    blocking = await server.signup("carol", "Carol")
    await blocking.block("alice")
    hiding = await server.signup("dana", "Dana")
    await hiding.update(AccountUpdate(discoverable="nobody"))
    refusing = await server.signup("erin", "Erin Example")
    await refusing.update(AccountUpdate(who_can_call="nobody"))

    error = page.locator("#form-dial .form-error")
    for handle in ("bobb", "carol", "dana"):  # mistyped, blocks Alice, hides
        await dial_by_keyboard(page, handle)
        await expect(error).to_have_text(NOT_FOUND)
        await expect(page.locator("#dial-handle")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#dial-handle")).to_be_focused()
        await expect(page.locator("#screen-call")).to_be_hidden()

    # Someone who exists but takes no calls: the same ring as anyone else's, and nothing more.
    await dial_by_keyboard(page, "erin")
    await expect(error).to_be_hidden()
    await expect(page.locator("#screen-call")).to_have_attribute("data-state", "ringing")
    await expect(page.locator("#call-status")).to_have_text("Ringing…")
    await expect(page.locator("#call-name")).to_have_text("Erin Example")
    await page.get_by_role("button", name="Cancel call").click()
    await expect(page.locator("#screen-call")).to_have_attribute("data-state", "ended")
