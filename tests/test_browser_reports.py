"""Reporting a person from the web client (a contact's menu, the end-of-call screen), what the
server's moderators then receive, and the decision read back as a notice in settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from directory import operators
from directory.store import Store
from tests.conftest import Server
from tests.test_browser import (
    CHROMIUM,
    DESKTOP,
    PHONE,
    Browsers,
    account_of,
    add_contact,
    screenshot,
    sign_up,
)
from tests.test_browser import browsers as _browsers  # noqa: F401 (the ``browsers`` fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

STATEMENT = "Repeated unwanted calls after being asked to stop."


@pytest.fixture
def browsers(_browsers: Browsers) -> Browsers:  # noqa: F811 (the imported fixture)
    return _browsers


async def as_operator(server: Server, token: str, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, server.url + path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return json.loads(await response.read())


async def test_report_from_a_contact_and_after_a_call_then_read_the_notice(
    server: Server, store: Store, browsers: Browsers
) -> None:
    operator = await operators.create(store, "olga")
    alice = await browsers.page()
    bob = await browsers.page()
    await sign_up(alice, server, "alice", "Alice")
    bob_code = await sign_up(bob, server, "bob", "Bob Builder")
    bob_id = (await (await account_of(server, "bob", bob_code)).me()).id
    await add_contact(alice, "bob")
    await expect(alice.locator("#contacts-list .item")).to_have_count(1)

    # From the contact's menu, by keyboard: a category by arrow keys, a sentence, send.
    await alice.get_by_label("More options for Bob Builder").click()
    await alice.get_by_role("button", name="Report").click()
    dialog = alice.locator("#dialog-report")
    await expect(dialog).to_be_visible()
    await expect(alice.locator("#report-title")).to_have_text("Report Bob Builder")
    await expect(alice.get_by_label("Spam or unwanted calls")).to_be_focused()
    await alice.keyboard.press("Space")
    await alice.keyboard.press("ArrowDown")  # harassment
    await alice.get_by_label("Details").fill("Calls me every night.")
    await alice.get_by_role("button", name="Send report").press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(alice.locator("#toasts")).to_contain_text("Report sent.")

    # After a call Bob ended: Report on the end-of-call screen names the call; also block him.
    await bob.fill("#dial-handle", "alice")
    await bob.click("#dial-audio")
    await alice.get_by_role("button", name="Answer").click()
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "connected")
    call_id = await bob.evaluate("window.callbook.call.callId")
    await bob.get_by_role("button", name="End call").click()
    await expect(alice.locator("#screen-call")).to_have_attribute("data-state", "ended")
    await alice.locator("#btn-report").focus()
    await alice.keyboard.press("Enter")
    await expect(dialog).to_be_visible()
    await alice.get_by_label("Spam or unwanted calls").check()
    await alice.get_by_label("Also block Bob Builder").check()
    await alice.get_by_role("button", name="Send report").click()
    await expect(dialog).to_be_hidden()
    await expect(alice.locator("#blocks-list .item")).to_have_count(1)
    # Reaching for Report kept the end-of-call screen up; focus is back on it.
    await expect(alice.locator("#btn-report")).to_be_focused()
    await alice.locator("#btn-close").click()
    await expect(alice.locator("#screen-call")).to_be_hidden()

    # What the moderators received.
    queue = (await as_operator(server, operator, "GET", "/v1/operator/reports"))["reports"]
    got = sorted((r["category"], r["text"], r["call_id"], r["reported"]) for r in queue)
    assert got == [
        ("harassment", "Calls me every night.", None, bob_id),
        ("spam", "", call_id, bob_id),
    ]

    # A decision comes back as a notice, with its statement of reasons, in settings.
    first = next(r for r in queue if r["category"] == "harassment")
    await as_operator(
        server,
        operator,
        "POST",
        f"/v1/operator/reports/{first['id']}/decide",
        {"decision": "warn", "statement": STATEMENT},
    )
    await alice.get_by_role("link", name="Settings").click()
    notice = alice.locator("#notices-list .notice")
    await expect(notice).to_have_count(1)
    await expect(notice.locator(".notice-title")).to_have_text(
        "Your report was decided: a warning was given"
    )
    await expect(notice.locator(".notice-statement")).to_have_text(STATEMENT)
    for viewport, name in ((DESKTOP, "notices.png"), (PHONE, "notices-phone.png")):
        await alice.set_viewport_size(viewport)
        await alice.locator("#notices-card").scroll_into_view_if_needed()
        await screenshot(alice, name)
