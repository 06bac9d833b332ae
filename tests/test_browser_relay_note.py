"""The note next to "Hide my IP address from" (issue 17, item 4) says what happens on this
server: without TURN, calls go through its SFU, end to end encrypted (they connect); only a
server with neither says they cannot connect. ``GET /v1/turn`` tells which (its ``sfu``)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from signaling.protocol.bodies import IceServers
from tests.conftest import MakeServer, Server
from tests.test_browser import Browsers, browsers, sign_up

__all__ = ["browsers"]


async def hide_from(page: Page, whom: str) -> None:
    await page.goto(page.url.split("#")[0] + "#settings")
    relay = page.get_by_role("group", name="Hide my IP address from")
    await relay.get_by_role("radio", name=whom, exact=True).check()
    await expect(page.locator("#privacy-saved")).to_be_visible()


@pytest.mark.slow
async def test_without_turn_the_note_says_calls_go_through_the_media_server(
    server: Server, browsers: Browsers
) -> None:
    turn = await (await server.signup("robot")).request("GET", "/v1/turn", IceServers)
    assert (turn.ice_servers, turn.sfu) == ([], True)
    page = await browsers.page()
    await sign_up(page, server, "alice")
    note = page.locator("#relay-warning")
    await hide_from(page, "Everyone")
    await expect(note).to_have_attribute("data-kind", "info")
    await expect(note).to_contain_text("Every call goes through this server’s media server")
    await expect(note).to_contain_text("end-to-end encrypted")
    await expect(note).not_to_contain_text("can’t connect")
    await hide_from(page, "Non-contacts")
    await expect(note).to_contain_text("Calls with people who aren’t your contacts go through")
    await hide_from(page, "No one")
    await expect(note).to_be_hidden()


@pytest.mark.slow
async def test_with_neither_turn_nor_sfu_the_note_warns(
    make_server: MakeServer, browsers: Browsers
) -> None:
    bare = await make_server(media_url=None, media_secret=None)
    turn = await (await bare.signup("robot")).request("GET", "/v1/turn", IceServers)
    assert (turn.ice_servers, turn.sfu) == ([], False)
    page = await browsers.page()
    await sign_up(page, bare, "alice")
    await hide_from(page, "Everyone")
    note = page.locator("#relay-warning")
    await expect(note).to_have_attribute("data-kind", "warning")
    await expect(note).to_have_text(
        "This server has no relay, so calls that hide your IP address can’t connect."
    )
