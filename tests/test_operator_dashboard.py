"""The operator dashboard in a real Chromium: a real 1:1 call between two aiortc softphones
shows up within 2 s of being answered, with quality reports, and is gone after hang-up."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import async_playwright, expect

from directory import operators
from directory.store import Store
from signaling.appkeys import CALLS
from signaling.calls import machine as sm
from signaling.rest.reports import ReportRequest
from signaling.sdk.softphone import Softphone
from tests.conftest import Server, befriend
from tests.test_browser import ARTIFACTS, CHROMIUM, DESKTOP, FLAGS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason="no chromium"),
]


async def _answered_call(server: Server, within: float = 20.0) -> tuple[str, float]:
    """The id of the first connected call, and when (loop time) it was first seen connected."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        for call in server.app[CALLS].live_calls():
            if call.phase is sm.Phase.CONNECTED:
                return call.id, loop.time()
        await asyncio.sleep(0.01)
    raise AssertionError("the call was not answered")


async def test_a_live_call_appears_within_2_s_and_leaves_after_hang_up(
    server: Server, store: Store
) -> None:
    token = await operators.create(store, "dashboard")
    alice = Softphone(await server.signup("alice"))
    bob = Softphone(await server.signup("bob"))
    await befriend(alice.client, bob.client)  # a peer-to-peer call, with quality reports
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page(viewport=DESKTOP)
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(server.url + "/operator")
            await page.fill("#token", token)
            await page.click("#signin button[type=submit]")
            await expect(page.locator("#dashboard")).to_be_visible()
            # This node and its media node.
            await expect(page.locator("#nodes tbody tr")).to_have_count(2)
            # A report waits in the queue.
            await alice.client.request(
                "POST", "/v1/reports", None,
                ReportRequest(handle="bob", category="spam", text="Adverts in every call."),
            )  # fmt: skip
            await page.click("#reload-reports")
            await expect(page.locator("#reports tbody tr")).to_have_count(1)

            await bob.line.open()
            answering = asyncio.create_task(bob.answer(duration_s=None))
            calling = asyncio.create_task(alice.call("bob", duration_s=8.0))
            call_id, answered_at = await _answered_call(server)
            row = page.locator(f'#calls tr[data-call-id="{call_id}"][data-state="connected"]')
            await expect(row).to_be_visible(timeout=2_000)
            assert asyncio.get_running_loop().time() - answered_at <= 2.0
            text = await row.inner_text()
            assert "alice" not in text and "bob" not in text and "1:1" in text
            # The softphones report quality every 5 s: a leg shows up with a sparkline.
            await expect(row.locator(".leg")).not_to_have_count(0, timeout=8_000)
            # Reveal asks for a reason, shows who is in the call, and is audited.
            page.once(
                "dialog",
                lambda dialog: asyncio.ensure_future(
                    dialog.accept("Checking a report about this call.")
                ),
            )
            await row.locator("button", has_text="Reveal").click()
            await expect(page.locator("#revealed")).to_contain_text("caller: alice")
            await expect(page.locator("#revealed")).to_contain_text("callee: bob")
            await expect(page.locator("#audit tbody tr")).to_have_count(1)
            await expect(page.locator("#audit tbody")).to_contain_text("reveal")
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "operator-dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")

            caller = await asyncio.wait_for(calling, 20)
            await asyncio.wait_for(answering, 10)
            assert caller.outcome == "connected"
            await expect(page.locator(f'#calls tr[data-call-id="{call_id}"]')).to_have_count(
                0, timeout=3_000
            )
            await expect(page.locator("#no-calls")).to_be_visible()
        finally:
            await alice.close()
            await bob.close()
            await browser.close()
    assert errors == []
