"""The host's view of a group call's invitees (issue 17, item 10) in Chromium: everyone it rang
shows "Ringing…" until they join or the ring time is over, then "No answer" — a decline and a
person who may not be rung look the same (docs/protocol.md 11.15) — and "Add people" rings
someone new into the running call. The invitees are WebSocket clients of the real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, expect

from signaling.protocol import messages as m
from tests.conftest import MakeServer
from tests.test_browser import CHROMIUM, PHONE, Browsers, screenshot, sign_up
from tests.test_browser import browsers as _browsers  # noqa: F401 (the ``browsers`` fixture)
from tests.test_calls import _line

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

RING_S = 4.0


@pytest.fixture
def browsers(_browsers: Browsers) -> Browsers:  # noqa: F811 (the imported fixture)
    return _browsers


def invitee(page: Page, handle: str) -> Locator:
    return page.locator(f'#group-invitees .invitee[data-handle="{handle}"]')


async def test_the_host_sees_who_is_rung_and_adds_someone(
    make_server: MakeServer, browsers: Browsers
) -> None:
    server = await make_server(ring_timeout_s=RING_S)
    page = await browsers.page()
    await sign_up(page, server, "alice", "Alice Liddell")
    bob, carol, dave, erin = [
        await server.signup(handle) for handle in ("bob", "carol", "dave", "erin")
    ]
    await dave.block("alice")  # Alice may not ring Dave: he is silently left out
    async with (
        await _line(bob) as b,
        await _line(carol) as c,
        await _line(erin) as e,
    ):
        await page.get_by_role("button", name="Group call").click()
        await page.fill("#group-handles", "bob carol dave")
        await page.click("#group-start")
        ring = await b.expect(m.Incoming)
        await c.expect(m.Incoming)
        roster = page.get_by_role("region", name="People you invited")
        await expect(roster).to_be_visible()
        for handle in ("bob", "carol", "dave"):
            await expect(invitee(page, handle)).to_have_text(
                "@handleRinging…".replace("handle", handle)
            )

        # Carol declines: to Alice that is no different from Dave, whom she may not ring.
        await c.send(m.Decline(call_id=ring.call_id))
        await c.expect(m.Ended)
        await b.send(m.Accept(call_id=ring.call_id))
        await b.expect(m.Joined)
        await expect(invitee(page, "bob")).to_have_attribute("data-state", "in_call")
        await expect(invitee(page, "carol")).to_have_attribute("data-state", "ringing")
        await expect(invitee(page, "dave")).to_have_attribute("data-state", "ringing")
        await screenshot(page, "group-invitees-desktop.png")
        for handle in ("carol", "dave"):
            await expect(invitee(page, handle)).to_have_text(
                f"@{handle}No answer", timeout=RING_S * 1000 + 10_000
            )

        # Alice adds Erin from the keyboard; Erin rings, joins, and shows as in the call.
        await page.locator("#group-add-handles").focus()
        await page.keyboard.type("@erin")
        await page.keyboard.press("Enter")
        added = await e.expect(m.Incoming)
        assert (added.call_id, added.group, added.caller.handle) == (ring.call_id, True, "alice")
        await expect(invitee(page, "erin")).to_have_attribute("data-state", "ringing")
        await e.send(m.Accept(call_id=ring.call_id))
        await e.expect(m.Joined)
        await expect(invitee(page, "erin")).to_have_text("@erinIn the call")
        await expect(page.locator("#group-grid .tile")).to_have_count(3)
        await page.set_viewport_size(PHONE)
        await screenshot(page, "group-invitees-phone.png")

        await b.send(m.Hangup(call_id=ring.call_id))
        await expect(invitee(page, "bob")).to_have_text("@bobLeft")
        await page.get_by_role("button", name="Leave group call").click()
        await expect(page.locator("#screen-group")).to_be_hidden()
