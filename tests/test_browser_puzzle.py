"""The web client solves the puzzles a busy server asks for, with WebCrypto's SHA-256: sign-up
and recovery through the page still work when they cost work (issue 11, finding 5)."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from signaling.limits import Budget
from signaling.puzzle import Settings
from tests.conftest import MakeServer
from tests.test_browser import Browsers, browsers, sign_up  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow


async def test_the_page_solves_puzzles_for_sign_up_and_recovery(
    make_server: MakeServer,
    browsers: Browsers,  # noqa: F811
) -> None:
    # Every request from this source is "under pressure": puzzles of 10-12 bits.
    server = await make_server(
        puzzle_source_quiet=0.5, puzzle=Settings(base_bits=10, max_bits=12),
        source_signups=Budget(100, 0.001), source_recoveries=Budget(100, 0.001),
    )  # fmt: skip
    page = await browsers.page()
    async with page.expect_response("**/v1/puzzles") as asked:
        code = await sign_up(page, server, "alice", "Alice")
    assert (await (await asked.value).json())["bits"] >= 10

    other = await browsers.page()
    await other.goto(server.url + "/")
    await other.get_by_role("tab", name="Sign in").click()
    await other.fill("#recover-handle", "alice")
    await other.fill("#recover-code", code)
    async with other.expect_response("**/v1/puzzles") as asked:
        await other.click("#form-recover button[type=submit]")
    assert (await (await asked.value).json())["bits"] >= 10
    await expect(other.locator("#recovery-code")).to_be_visible()
