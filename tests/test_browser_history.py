"""Call history in the web client: kept in this browser's IndexedDB only (no request or
WebSocket frame carries it), shown with display names, kept over a reload, cleared by a button."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, Request, WebSocket, expect

from tests.conftest import Server
from tests.test_browser import CHROMIUM, Browsers, sign_up
from tests.test_browser import browsers as _browsers  # noqa: F401 (the ``browsers`` fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

STORED_JS = """() => new Promise((ok, fail) => {
  const r = indexedDB.open("callbook-history");
  r.onerror = () => fail(r.error);
  r.onsuccess = () => {
    const db = r.result;
    const all = db.transaction("calls").objectStore("calls").getAll();
    all.onsuccess = () => { ok(all.result); db.close(); };
  };
})"""


@pytest.fixture
def browsers(_browsers: Browsers) -> Browsers:  # noqa: F811 (the imported fixture)
    return _browsers


class Outbox:
    """Everything a page sends to the server: request URLs and bodies, WebSocket frames."""

    def __init__(self, page: Page) -> None:
        self.sent: list[str] = []
        page.on("request", self._request)
        page.on("websocket", self._socket)

    def _request(self, request: Request) -> None:
        if "/static/" not in request.url:  # the page's own modules (history.js among them)
            self.sent.append(f"{request.method} {request.url} {request.post_data}")

    def _socket(self, socket: WebSocket) -> None:
        socket.on("framesent", lambda payload: self.sent.append(str(payload)))


async def test_history_stays_in_the_browser_with_names_and_clears(
    server: Server, browsers: Browsers
) -> None:
    alice = await browsers.page()
    bob = await browsers.page()
    await sign_up(alice, server, "alice", "Alice")
    outbox = Outbox(alice)
    await sign_up(bob, server, "bob", "Bob Builder")
    history = alice.locator("#history-list .history-item")
    await expect(alice.locator("#history-empty")).to_be_visible()

    # Bob rings and gives up: a missed call, under his display name (he's no contact of hers),
    # in her history and in the server's missed-call list alike.
    await bob.fill("#dial-handle", "alice")
    await bob.click("#dial-audio")
    await expect(alice.locator("#screen-call")).to_have_attribute("data-state", "incoming")
    await bob.get_by_role("button", name="Cancel call").click()
    await expect(alice.locator("#screen-call")).to_be_hidden()
    await expect(history).to_have_count(1)
    await expect(history.first).to_have_attribute("data-outcome", "missed")
    await expect(history.first.locator(".item-title")).to_have_text("Bob Builder")
    await expect(alice.locator("#missed-list .item-title")).to_have_text(["Bob Builder"])

    # Alice calls him back from her history, by keyboard; he answers; she hangs up.
    await alice.get_by_role("button", name="Call Bob Builder", exact=True).focus()
    await alice.keyboard.press("Enter")
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "incoming")
    await bob.get_by_role("button", name="Answer").click()
    await expect(alice.locator("#screen-call")).to_have_attribute("data-state", "connected")
    await alice.get_by_role("button", name="End call").click()
    await expect(history).to_have_count(2)
    first = history.first
    await expect(first).to_have_attribute("data-direction", "outgoing")
    await expect(first).to_have_attribute("data-outcome", "answered")
    await expect(first.locator(".item-sub")).to_contain_text("Outgoing · 0:")

    # Kept in IndexedDB: a reload shows the same list.
    await alice.reload()
    await expect(history).to_have_count(2)
    stored = await alice.evaluate(STORED_JS)
    assert sorted(e["outcome"] for e in stored) == ["answered", "missed"]
    assert {e["displayName"] for e in stored} == {"Bob Builder"}

    # Nothing of it ever left the browser: Bob's display name (which only history keeps on
    # Alice's side) and the history fields are in no request and no frame she sent.
    assert outbox.sent, "the outbox saw no traffic"
    for sent in outbox.sent:
        assert "Bob Builder" not in sent and "outcome" not in sent and "history" not in sent, sent

    # Clear, by keyboard, after a confirmation: gone from the page and from the browser.
    await alice.locator("#history-clear").focus()
    await alice.keyboard.press("Enter")
    await expect(alice.locator("#confirm-title")).to_have_text("Clear your call history?")
    await alice.locator("#confirm-ok").press("Enter")
    await expect(history).to_have_count(0)
    await expect(alice.locator("#history-empty")).to_be_visible()
    await expect(alice.locator("#history-title")).to_be_focused()
    assert await alice.evaluate(STORED_JS) == []


async def test_group_calls_are_in_history_too(server: Server, browsers: Browsers) -> None:
    alice = await browsers.page()
    bob = await browsers.page()
    await sign_up(alice, server, "alice", "Alice Liddell")
    await sign_up(bob, server, "bob", "Bob")

    # Alice hosts; Bob declines the invitation; Alice leaves the call she was in alone.
    await alice.get_by_role("button", name="Group call").click()
    await alice.fill("#group-handles", "bob")
    await alice.click("#group-start")
    await expect(bob.locator("#screen-group")).to_have_attribute("data-state", "incoming")
    await bob.get_by_role("button", name="Decline group call").click()
    await expect(bob.locator("#screen-group")).to_be_hidden()
    entry = bob.locator("#history-list .history-item")
    await expect(entry).to_have_count(1)
    await expect(entry).to_have_attribute("data-outcome", "declined")
    await expect(entry.locator(".item-title")).to_have_text("Group call · Alice Liddell")

    await expect(alice.locator("#screen-group")).to_be_visible()
    await alice.get_by_role("button", name="Leave group call").click()
    mine = alice.locator("#history-list .history-item")
    await expect(mine).to_have_count(1)
    await expect(mine).to_have_attribute("data-direction", "outgoing")
    await expect(mine.locator(".item-title")).to_have_text("Group call")
