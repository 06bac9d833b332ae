"""The web client honours ``reconnect``: a Chromium page in a call on a node that drains moves to
the other node, resumes, and the call goes on (media and signaling)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import expect

from signaling.appkeys import CALLS
from signaling.cluster.drain import drain
from signaling.sdk.softphone import Softphone
from tests.conftest import MakeServer, befriend, unique
from tests.test_browser import (
    CHROMIUM,
    DESKTOP,
    STATS_JS,
    Browsers,
    account_of,
    browsers,  # noqa: F401  (a fixture)
    sign_up,
    until_frames,
)
from tests.test_cluster import _on

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


async def test_a_page_in_a_call_follows_its_draining_node_to_the_other_one(
    make_server: MakeServer,
    browsers: Browsers,  # noqa: F811
) -> None:
    node_a = await make_server(routing="redis", node_id=unique("node-a"))
    # Behind a load balancer both nodes share one origin; here the page comes from A.
    node_b = await make_server(
        routing="redis", node_id=unique("node-b"), allowed_origins=(node_a.url,)
    )
    # The page's Content-Security-Policy allows its own origin only (connect-src 'self'): a
    # stand-in for the load balancer's single address.
    context = await browsers.browser.new_context(
        viewport={"width": DESKTOP["width"], "height": DESKTOP["height"]}, bypass_csp=True
    )
    page = await context.new_page()
    page.on("pageerror", lambda error: browsers.errors.append(str(error)))
    code = await sign_up(page, node_a, "alice", "Alice")
    robot = await node_a.signup("robot")
    await befriend(await account_of(node_a, "alice", code), robot)  # peer to peer
    bot = Softphone(_on(node_b, robot), video=True)
    await bot.line.open()
    answering = asyncio.create_task(bot.answer(duration_s=None))
    try:
        await page.fill("#dial-handle", "robot")
        await page.click("#dial-video")
        call = page.locator("#screen-call")
        await expect(call).to_have_attribute("data-state", "connected")
        await until_frames(page)
        # The load balancer would now send the page's next connection to B.
        b_ws = node_b.url.replace("http", "ws", 1) + "/v1/ws"
        await page.evaluate(f"window.callbook.line.url = '{b_ws}'")
        draining = asyncio.create_task(drain(node_a.app))
        await page.wait_for_function(
            "() => window.callbook.line.state === 'online' && window.callbook.line.welcome.resumed"
        )
        assert await asyncio.wait_for(draining, 20)
        assert node_a.app[CALLS].active_calls() == 0
        assert node_b.app[CALLS].active_calls() == 1
        before = (await page.evaluate(STATS_JS))["video"]
        await page.wait_for_function(f"async () => ({STATS_JS})().then((s) => s.video > {before})")
        await expect(call).to_have_attribute("data-state", "connected")
        await page.get_by_role("button", name="End call").click()
        summary = await asyncio.wait_for(answering, 20)
    finally:
        answering.cancel()
        await bot.close()
        await context.close()
    assert (summary.outcome, summary.reason) == ("connected", "hangup")
