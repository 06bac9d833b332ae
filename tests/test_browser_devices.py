"""Settings in the web client, driven in Chromium as a person would: the devices list with
revoke, and signing out of this browser (both keys and the call history leave it; the device
is revoked)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.conftest import Server
from tests.test_browser import CHROMIUM, DESKTOP, PHONE, Browsers, account_of, screenshot, sign_up
from tests.test_browser import browsers as _browsers  # noqa: F401 (the ``browsers`` fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

# Everything the page keeps in its "callbook" IndexedDB store, keys as their algorithm names.
STORED_KEYS_JS = """async () => {
  const db = await new Promise((ok, fail) => {
    const r = indexedDB.open("callbook");
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
  const names = [];
  for (const store of db.objectStoreNames) {
    const all = await new Promise((ok) => {
      const r = db.transaction(store).objectStore(store).getAll();
      r.onsuccess = () => ok(r.result);
    });
    const walk = (value) => {
      if (value instanceof CryptoKey) names.push(value.algorithm.name);
      else if (value && typeof value === "object") Object.values(value).forEach(walk);
    };
    all.forEach(walk);
  }
  db.close();
  return names.sort();
}"""


@pytest.fixture
def browsers(_browsers: Browsers) -> Browsers:  # noqa: F811 (the imported fixture)
    return _browsers


HISTORY_JS = """() => new Promise((ok) => {
  const r = indexedDB.open("callbook-history");
  r.onsuccess = () => {
    const count = r.result.transaction("calls").objectStore("calls").count();
    count.onsuccess = () => { ok(count.result); r.result.close(); };
  };
})"""


async def open_settings(page: Page) -> None:
    await page.get_by_role("link", name="Settings").click()
    await expect(page.locator("#devices-list .device")).not_to_have_count(0)


async def test_devices_list_revoke_and_sign_out(server: Server, browsers: Browsers) -> None:
    page = await browsers.page()
    code = await sign_up(page, server, "alice", "Alice")
    other = await account_of(server, "alice", code)  # a second device, named "test"
    assert await page.evaluate(STORED_KEYS_JS) == ["Ed25519", "Ed25519", "X25519", "X25519"]

    await open_settings(page)
    rows = page.locator("#devices-list .device")
    await expect(rows).to_have_count(2)
    here = rows.filter(has_text="This browser")
    await expect(here).to_contain_text("Added today · Last seen today")
    await expect(rows.filter(has_text="test")).to_contain_text("Added today")
    for viewport, name in ((DESKTOP, "devices.png"), (PHONE, "devices-phone.png")):
        await page.set_viewport_size(viewport)
        await page.locator("#devices-card").scroll_into_view_if_needed()
        await screenshot(page, name)
    await page.set_viewport_size(DESKTOP)

    other_token = await other.token()
    # Revoking the other device, by keyboard: it is refused by the server from then on.
    revoke = page.get_by_role("button", name="Revoke test")
    await revoke.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#confirm-title")).to_have_text("Revoke test?")
    await page.locator("#confirm-ok").focus()
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(1)
    assert await _status(server, other_token) == 401

    old_id = await page.evaluate(
        """async () => (await import('/static/sdk/keystore.js'))
             .loadIdentity().then((i) => i.deviceId)"""
    )
    # A call in this browser's history (kept by history.js as a finished call is).
    await page.evaluate(
        """async () => (await import("/static/history.js")).recordCall({
          direction: "incoming", media: "audio", endReason: "missed", connectedAt: 0,
          endedAt: Date.now(), peer: {account_id: null, handle: "bob", display_name: "Bob"}})"""
    )
    await expect(page.locator("#history-list .history-item")).to_have_count(1)

    # Sign out: warned that this is the last device, then both keys are gone from the browser.
    await page.get_by_role("button", name="Sign out", exact=True).click()
    await expect(page.locator("#confirm-text")).to_contain_text("This is your only device")
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#screen-welcome")).to_be_visible()
    await expect(page.locator("#toasts")).to_contain_text("You’re signed out.")
    await expect(page.locator("#tab-recover")).to_be_focused()
    assert await page.evaluate(STORED_KEYS_JS) == []
    assert await page.evaluate(HISTORY_JS) == 0  # whom this person called leaves with them
    await page.reload()
    await expect(page.locator("#screen-welcome")).to_be_visible()
    # No "signed out from elsewhere" notice: this person chose to leave.
    await expect(page.locator("#form-recover .form-error")).to_be_hidden()

    # The device is revoked on the server too: the account has no devices left, and the
    # recovery code brings this browser back in.
    await page.get_by_role("tab", name="Sign in").click()
    await page.fill("#recover-handle", "alice")
    assert other.profile is not None  # its recovery gave the account a new code
    await page.fill("#recover-code", other.profile.recovery_code)
    await page.click("#form-recover button[type=submit]")
    await expect(page.locator("#recovery-code")).to_be_visible()
    new_code = await page.locator("#recovery-code").get_attribute("data-code")
    assert new_code
    left = {d.id for d in await (await account_of(server, "alice", new_code)).devices()}
    assert old_id not in left and len(left) == 2  # this browser anew, and the test's client


async def _status(server: Server, token: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/v1/me", headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        return response.status
