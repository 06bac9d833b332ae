"""The web client in a real Chromium: sign-up and reload, settings through the UI, erase,
screenshots of the main screens, and a browser-to-browser video call.

Chromium is Debian's (never downloaded); its fake camera and microphone stand in for devices.
Pages load from the test server's own origin, since the call WebSocket allows only that origin.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from signaling.protocol import messages as m
from signaling.sdk.client import Client, ClientError
from signaling.sdk.line import Line
from signaling.sdk.softphone import Softphone
from tests.conftest import Server, befriend

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
RECOVERY_CODE = re.compile(r"^[a-z2-7]{4}(-[a-z2-7]{4}){7}$")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")

expect.set_options(timeout=10_000)

# Inbound RTP of the page's current call, e.g. {"video": frames decoded, "audio": packets}.
STATS_JS = """async () => {
  const pc = window.callbook && window.callbook.pc;
  if (!pc) return null;
  const out = {state: pc.connectionState};
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") out.video = s.framesDecoded || 0;
    if (s.type === "inbound-rtp" && s.kind === "audio") out.audio = s.packetsReceived || 0;
  });
  return out;
}"""


class Browsers:
    """One Chromium per test; each person gets a context of their own (own IndexedDB)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.errors: list[str] = []
        self._contexts: list[BrowserContext] = []

    async def page(self, viewport: dict[str, int] = DESKTOP) -> Page:
        context = await self.browser.new_context(viewport=viewport, accept_downloads=True)
        self._contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        # The page's warnings and errors go to the test's output (shown when it fails).
        page.on("console", lambda msg: _print_console(msg.type, msg.text))
        return page

    async def close(self) -> None:
        for context in self._contexts:
            await context.close()


def _print_console(kind: str, text: str) -> None:
    if kind in ("error", "warning"):
        print(f"[page {kind}] {text}")


@pytest.fixture
async def browsers() -> AsyncIterator[Browsers]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pool = Browsers(browser)
        try:
            yield pool
        finally:
            await pool.close()
            await browser.close()
    assert pool.errors == [], f"uncaught errors in the page: {pool.errors}"


async def sign_up(page: Page, server: Server, handle: str, name: str | None = None) -> str:
    """Create an account in the page; returns the recovery code it showed."""
    await page.goto(server.url + "/")
    await page.fill("#signup-handle", handle)
    if name:
        await page.fill("#signup-name", name)
    await page.click("#form-signup button[type=submit]")
    code_box = page.locator("#recovery-code")
    await expect(code_box).to_be_visible()
    code = await code_box.get_attribute("data-code")
    assert code is not None
    await expect(page.locator("#code-continue")).to_be_disabled()
    await page.check("#code-saved")
    await page.click("#code-continue")
    await expect(page.locator("#screen-home")).to_be_visible()
    await expect(page.locator("#status-pill")).to_have_attribute("data-state", "online")
    return code


async def account_of(server: Server, handle: str, code: str) -> Client:
    """A REST client in the page's account, enrolled with the recovery code the page showed."""
    client = server.client()
    await client.recover(handle, code, device_name="test")
    return client


async def add_contact(page: Page, handle: str, nickname: str = "") -> None:
    await page.click("#contact-add-toggle")
    await page.fill("#contact-handle", handle)
    await page.fill("#contact-nickname", nickname)
    await page.click("#form-contact button[type=submit]")


async def stats(page: Page) -> dict[str, Any]:
    result: dict[str, Any] | None = await page.evaluate(STATS_JS)
    return result or {}


async def until_frames(page: Page, within: float = 20.0) -> dict[str, Any]:
    """Wait until the page's call decodes remote video frames."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        current = await stats(page)
        if current.get("video", 0) > 0:
            return current
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no video frames decoded: {current}")
        await asyncio.sleep(0.25)


async def line_of(client: Client) -> Line:
    line = Line(client)
    await line.open()
    return line


async def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """Into test-artifacts/: without passing notices, hover or focus rings."""
    ARTIFACTS.mkdir(exist_ok=True)
    await page.evaluate(
        """() => {
          document.querySelectorAll("#toasts .toast").forEach((t) => t.remove());
          if (document.activeElement) document.activeElement.blur();
        }"""
    )
    await page.mouse.move(0, 0)
    await page.wait_for_timeout(250)  # hover transitions fade out
    await page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_sign_up_shows_the_code_once_and_survives_a_reload(
    server: Server, browsers: Browsers
) -> None:
    await server.signup("bob", "Bob")
    page = await browsers.page()
    await page.goto(server.url + "/")

    # A taken handle is explained in plain words, next to the field.
    await page.fill("#signup-handle", "Bob")
    await page.click("#form-signup button[type=submit]")
    error = page.locator("#form-signup .form-error")
    await expect(error).to_have_text("That handle is already taken. Try another one.")
    await expect(page.locator("#signup-handle")).to_have_attribute("aria-invalid", "true")

    code = await sign_up(page, server, "Alice", "Alice Liddell")
    assert RECOVERY_CODE.match(code)
    await expect(page.locator("#hero-title")).to_have_text("Hello, Alice Liddell")
    await expect(page.locator("#my-handle")).to_have_text("@alice")
    # Shown once: nothing of the code is left in the page.
    assert code not in await page.content()

    # The device key is a non-extractable WebCrypto key kept in IndexedDB.
    stored = await page.evaluate(
        """async () => {
          const {loadIdentity} = await import("/static/sdk/keystore.js");
          const id = await loadIdentity();
          return {handle: id.handle, algorithm: id.keyPair.privateKey.algorithm.name,
                  extractable: id.keyPair.privateKey.extractable,
                  account: id.accountId, device: id.deviceId};
        }"""
    )
    assert stored["handle"] == "alice"
    assert (stored["algorithm"], stored["extractable"]) == ("Ed25519", False)

    await page.reload()
    await expect(page.locator("#screen-home")).to_be_visible()
    await expect(page.locator("#screen-welcome")).to_be_hidden()
    await expect(page.locator("#my-handle")).to_have_text("@alice")
    await expect(page.locator("#status-pill")).to_have_attribute("data-state", "online")

    # Tokens live minutes: one about to expire is renewed before use, and one the server
    # refuses is replaced by signing in again, without bothering the person.
    for spoil in ("callbook.api.expiresAt = Date.now() + 5000", "callbook.api.token = 'x.y.z'"):
        await page.evaluate(spoil)
        async with page.expect_response("**/v1/auth/token") as renewal:
            assert (await page.evaluate("callbook.api.me()"))["handle"] == "alice"
        assert (await renewal.value).ok

    # The server sees exactly the account and device the page stored.
    alice = await account_of(server, "alice", code)
    me = await alice.me()
    assert (me.id, me.display_name) == (stored["account"], "Alice Liddell")
    assert stored["device"] in {device.id for device in await alice.devices()}


@pytest.mark.slow
async def test_recovery_code_brings_the_account_to_a_new_browser(
    server: Server, browsers: Browsers
) -> None:
    old = await browsers.page()
    code = await sign_up(old, server, "alice", "Alice")
    new = await browsers.page()
    await new.goto(server.url + "/")
    await new.get_by_role("tab", name="Sign in").click()
    await new.fill("#recover-handle", "@Alice")
    await new.fill("#recover-code", "aaaa-bbbb-cccc-dddd-eeee-ffff-gggg-hhhh")
    await new.click("#form-recover button[type=submit]")
    await expect(new.locator("#form-recover .form-error")).to_have_text(
        "The handle or recovery code is wrong."
    )

    # As written down: case, spaces and hyphens do not matter. The lost browser is signed out.
    await new.fill("#recover-code", code.upper().replace("-", " "))
    await new.get_by_label("Sign out all my other devices").check()
    await new.click("#form-recover button[type=submit]")
    await expect(new.locator("#recovery-code")).to_be_visible()
    fresh = await new.locator("#recovery-code").get_attribute("data-code")
    assert fresh is not None and RECOVERY_CODE.match(fresh) and fresh != code
    await new.check("#code-saved")
    await new.click("#code-continue")
    await expect(new.locator("#my-handle")).to_have_text("@alice")
    await expect(new.locator("#status-pill")).to_have_attribute("data-state", "online")

    # The lost browser learns it at once, and the notice outlives a reload.
    for _ in ("live", "after reload"):
        await expect(old.locator("#screen-welcome")).to_be_visible()
        await expect(old.locator("#form-recover .form-error")).to_contain_text(
            "no longer signed in to @alice"
        )
        await expect(old.locator("#recover-handle")).to_have_value("alice")
        await old.reload()
    # Only the new code works from now on.
    with pytest.raises(ClientError):
        await account_of(server, "alice", code)
    assert (await (await account_of(server, "alice", fresh)).me()).handle == "alice"


@pytest.mark.slow
async def test_contacts_blocks_and_privacy_set_through_the_ui(
    server: Server, browsers: Browsers
) -> None:
    bob = await server.signup("bob", "Bob")
    carol = await server.signup("carol")
    dave = await server.signup("dave")
    page = await browsers.page()
    code = await sign_up(page, server, "alice", "Alice")

    await add_contact(page, "bob", "Bobby")
    contacts = page.locator("#contacts-list")
    await expect(contacts.locator("li")).to_have_count(1)
    await expect(contacts).to_contain_text("Bobby")
    await expect(contacts).to_contain_text("@bob")

    # Someone who cannot be found: one plain message, whatever the reason.
    await add_contact(page, "nobody_here")
    await expect(page.locator("#form-contact .form-error")).to_have_text(
        "No one found with that handle."
    )
    await page.click("#contact-add-cancel")

    await add_contact(page, "dave")
    await expect(contacts.locator("li")).to_have_count(2)
    row = contacts.locator("li[data-handle=dave]")
    await row.locator("summary").click()
    await row.get_by_role("button", name="Remove contact").click()
    await page.locator("#confirm-ok").click()
    await expect(contacts.locator("li")).to_have_count(1)

    await page.click("#nav-settings")
    await expect(page.locator("#view-settings")).to_be_visible()
    for handle in ("carol", "dave"):
        await page.fill("#block-handle", handle)
        await page.click("#form-block button[type=submit]")
        await expect(page.locator(f"#blocks-list li[data-handle={handle}]")).to_be_visible()
    await page.get_by_role("button", name="Unblock @dave").click()
    await expect(page.locator("#blocks-list li")).to_have_count(1)

    saved = page.locator("#privacy-saved")
    find = page.get_by_role("group", name="Who can find me by handle")
    await find.get_by_role("radio", name="Contacts", exact=True).check()
    await expect(saved).to_be_visible()
    call = page.get_by_role("group", name="Who can call me")
    await call.get_by_role("radio", name="No one", exact=True).check()
    await expect(page.locator("#help-who_can_call")).to_contain_text("No one can ring you")
    await expect(saved).to_be_visible()
    relay = page.get_by_role("group", name="Hide my IP address from")
    await expect(relay.get_by_role("radio", name="Non-contacts")).to_be_checked()  # the default
    await relay.get_by_role("radio", name="Everyone", exact=True).check()
    await expect(page.locator("#help-relay_calls")).to_contain_text("Every call goes through")
    await expect(saved).to_be_visible()
    # The test server has no TURN relay but an SFU: calls go through it (test_browser_relay_note).
    await expect(page.locator("#relay-warning")).to_contain_text("media server")

    await page.fill("#profile-name", "Alice L.")
    await page.click("#form-profile button[type=submit]")
    await expect(page.locator("#hero-title")).to_have_text("Hello, Alice L.")

    # What the server now holds, read back over REST.
    alice = await account_of(server, "alice", code)
    me = await alice.me()
    assert (me.discoverable, me.who_can_call, me.relay_calls) == ("contacts", "nobody", "always")
    assert me.display_name == "Alice L."
    assert [(c.handle, c.nickname) for c in await alice.contacts()] == [("bob", "Bobby")]
    assert [b.handle for b in await alice.blocks()] == ["carol"]
    # ... and what it means for the others: only Bob, her contact, can still find her.
    assert (await bob.whois("alice")).display_name == "Alice L."
    for outsider in (carol, dave):
        with pytest.raises(ClientError) as refused:
            await outsider.whois("alice")
        assert refused.value.code == "not_found"


@pytest.mark.slow
async def test_export_downloads_json_and_erase_needs_the_handle_typed(
    server: Server, browsers: Browsers
) -> None:
    bob = await server.signup("bob")
    page = await browsers.page()
    await sign_up(page, server, "alice", "Alice")
    await page.goto(server.url + "/#settings")
    await expect(page.locator("#view-settings")).to_be_visible()

    async with page.expect_download() as download_info:
        await page.click("#export-btn")
    download = await download_info.value
    path = await download.path()
    exported = json.loads(await asyncio.to_thread(Path(path).read_text))
    assert exported["account"]["handle"] == "alice"
    assert "recovery_code" in exported
    assert download.suggested_filename.startswith("callbook-export-alice-")

    await page.click("#erase-btn")
    submit = page.locator("#erase-submit")
    await expect(submit).to_be_disabled()
    await page.fill("#erase-confirm", "alic")
    await expect(submit).to_be_disabled()
    await page.fill("#erase-confirm", "alice")
    await expect(submit).to_be_enabled()
    await submit.click()
    await expect(page.locator("#dialog-erased")).to_be_visible()
    await expect(page.locator("#screen-welcome")).to_be_visible()

    with pytest.raises(ClientError) as gone:
        await bob.whois("alice")
    assert gone.value.code == "not_found"
    # The key went with the account: a reload starts from scratch.
    await page.reload()
    await expect(page.locator("#screen-welcome")).to_be_visible()


@pytest.mark.slow
async def test_screenshots_of_home_and_incoming_call(server: Server, browsers: Browsers) -> None:
    bob = await server.signup("bob", "Bob Builder")
    carol = await server.signup("carol", "Carol Danvers")
    await server.signup("dave.smith", "Dave Smith")
    page = await browsers.page()
    await sign_up(page, server, "alice", "Alice Liddell")
    await add_contact(page, "bob", "Bobby")
    await expect(page.locator("#contacts-list li")).to_have_count(1)
    await add_contact(page, "carol")
    await expect(page.locator("#contacts-list li")).to_have_count(2)
    await add_contact(page, "dave.smith", "Dave from work")
    await expect(page.locator("#contacts-list li")).to_have_count(3)

    # A missed call: Carol rings and gives up.
    async with await line_of(carol) as carol_line:
        await carol_line.send(m.Invite(handle="alice", media="audio"))
        ringing = await carol_line.expect(m.Ringing)
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "incoming")
        await carol_line.send(m.Hangup(call_id=ringing.call_id))
        assert (await carol_line.expect(m.Ended)).reason == "cancelled"
    await expect(page.locator("#screen-call")).to_have_attribute("data-state", "ended")
    await expect(page.locator("#call-status")).to_have_text("Missed call")
    await expect(page.locator("#screen-call")).to_be_hidden()
    await expect(page.locator("#missed-list li")).to_have_count(1)
    await expect(page.locator("#missed-list")).to_contain_text("Carol Danvers")

    await screenshot(page, "home.png")
    await page.set_viewport_size(PHONE)
    await screenshot(page, "home-phone.png")
    await page.set_viewport_size(DESKTOP)

    async with await line_of(bob) as bob_line:
        await bob_line.send(m.Invite(handle="alice", media="video"))
        await bob_line.expect(m.Ringing)
        screen = page.locator("#screen-call")
        await expect(screen).to_have_attribute("data-state", "incoming")
        await expect(page.locator("#call-name")).to_have_text("Bobby")
        await expect(page.locator("#call-kind")).to_have_text("Incoming video call")
        await expect(page.get_by_role("button", name="Answer with video")).to_be_visible()
        await expect(page.locator("#btn-answer-audio")).to_be_focused()
        await expect(page.locator("#toasts .toast")).to_have_count(0)  # nothing over the buttons
        await page.wait_for_timeout(400)  # let the entrance settle
        await screenshot(page, "incoming-call.png")
        await page.set_viewport_size(PHONE)
        await screenshot(page, "incoming-call-phone.png")
        await page.set_viewport_size(DESKTOP)

        await page.get_by_role("button", name="Decline").click()
        assert (await bob_line.expect(m.Ended)).reason == "declined"
    await expect(screen).to_be_hidden()


@pytest.mark.slow
async def test_browser_to_browser_video_call(server: Server, browsers: Browsers) -> None:
    alice = await browsers.page()
    bob = await browsers.page()
    alice_code = await sign_up(alice, server, "alice", "Alice Liddell")
    bob_code = await sign_up(bob, server, "bob", "Bob Builder")
    # Contacts, so the call is peer to peer (the stats below read that peer connection).
    await befriend(
        await account_of(server, "alice", alice_code), await account_of(server, "bob", bob_code)
    )
    alice_call, bob_call = alice.locator("#screen-call"), bob.locator("#screen-call")

    # A reserved handle: the lookup finds no one, as for any handle nobody has.
    await alice.fill("#dial-handle", "admin")
    await alice.click("#dial-audio")
    await expect(alice.locator("#form-dial .form-error")).to_have_text(
        "No one found with that handle."
    )
    await expect(alice_call).to_be_hidden()

    # First attempt: Bob declines, and Alice is told so.
    await alice.fill("#dial-handle", "bob")
    await alice.click("#dial-audio")
    await expect(bob_call).to_have_attribute("data-state", "incoming")
    await expect(bob.locator("#call-name")).to_have_text("Alice Liddell")
    await bob.get_by_role("button", name="Decline").click()
    await expect(alice_call).to_have_attribute("data-state", "ended")
    await expect(alice.locator("#call-status")).to_have_text("Call declined")
    await alice.click("#btn-close")
    await expect(alice_call).to_be_hidden()

    # Second attempt, with video: Bob answers and both see the other's camera.
    await alice.fill("#dial-handle", "@bob")
    await alice.click("#dial-video")
    await expect(alice_call).to_have_attribute("data-state", "ringing")
    await expect(bob_call).to_have_attribute("data-state", "incoming")
    await bob.get_by_role("button", name="Answer with video").click()
    await expect(alice_call).to_have_attribute("data-state", "connected")
    await expect(bob_call).to_have_attribute("data-state", "connected")
    alice_stats = await until_frames(alice)
    bob_stats = await until_frames(bob)
    assert alice_stats["state"] == bob_stats["state"] == "connected"
    await expect(alice.locator("#call-name")).to_have_text("Bob Builder")
    await expect(alice.locator("#call-status")).to_have_text(re.compile(r"^0:0\d$"))
    await expect(alice_call).to_have_attribute("data-video", "on")
    # Peer to peer: DTLS-SRTP between the two browsers is end to end; no frame keys, so no
    # safety number (that is for calls through the SFU).
    for page in (alice, bob):
        await expect(page.locator("#call-e2ee")).to_have_text("End-to-end encrypted")
        await expect(page.locator("#call-safety")).to_be_hidden()

    await alice.get_by_role("button", name="Mute microphone").click()
    await expect(alice.locator("#btn-mute")).to_have_attribute("aria-pressed", "true")
    await alice.wait_for_timeout(600)
    await screenshot(alice, "in-call.png")

    # Alice's WebSocket drops; she resumes her session and the call carries on.
    await alice.evaluate("window.callbook.line.drop()")
    await alice.wait_for_function(
        "() => window.callbook.line.state === 'online' && window.callbook.line.welcome.resumed"
    )
    before = (await stats(bob))["video"]
    await bob.wait_for_function(f"async () => ({STATS_JS})().then((s) => s.video > {before})")

    await alice.get_by_role("button", name="End call").click()
    await expect(bob_call).to_have_attribute("data-state", "ended")
    await expect(bob.locator("#call-status")).to_have_text(re.compile(r"^Call ended · 0:\d\d$"))
    await expect(alice_call).to_be_hidden()
    await expect(bob_call).to_be_hidden()


@pytest.mark.slow
async def test_chromium_calls_an_aiortc_bot_and_both_decode(
    server: Server, browsers: Browsers
) -> None:
    page = await browsers.page()
    code = await sign_up(page, server, "alice", "Alice")
    robot = await server.signup("robot")
    await befriend(await account_of(server, "alice", code), robot)  # peer to peer
    bot = Softphone(robot, video=True)
    await bot.line.open()
    answering = asyncio.create_task(bot.answer(duration_s=None))
    try:
        await page.fill("#dial-handle", "robot")
        await page.click("#dial-video")
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "connected")
        page_stats = await until_frames(page)
        assert page_stats["audio"] > 0
        # Let the bot decode for a moment, then hang up from the browser.
        await page.wait_for_timeout(1500)
        await page.get_by_role("button", name="End call").click()
        summary = await asyncio.wait_for(answering, 20)
    finally:
        answering.cancel()
        await bot.close()
    assert summary.outcome == "connected", summary.as_event()
    assert summary.media.video_frames_received > 0
    assert summary.media.audio_packets_received > 0


@pytest.mark.slow
async def test_an_aiortc_bot_calls_chromium_and_both_decode(
    server: Server, browsers: Browsers
) -> None:
    page = await browsers.page()
    code = await sign_up(page, server, "alice", "Alice")
    robot = await server.signup("robot")
    await befriend(await account_of(server, "alice", code), robot)  # peer to peer
    bot = Softphone(robot, video=True)
    calling = asyncio.create_task(bot.call("alice", duration_s=6.0))
    try:
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "incoming")
        await page.get_by_role("button", name="Answer with video").click()
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "connected")
        page_stats = await until_frames(page)
        assert page_stats["audio"] > 0
        summary = await asyncio.wait_for(calling, 30)
    finally:
        calling.cancel()
        await bot.close()
    assert summary.outcome == "connected", summary.as_event()
    assert summary.media.video_frames_received > 0
    await expect(page.locator("#screen-call")).to_have_attribute("data-state", "ended")
