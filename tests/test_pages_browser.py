"""Clickjacking, in a real Chromium: a page of another origin that frames the web client or the
operator dashboard ("end call", "suspend", "reveal") gets an error page in the frame."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

from tests.conftest import Server
from tests.test_browser import CHROMIUM, FLAGS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium"),
]

MARK = "framable page of the other site"


@pytest.fixture
async def other_site(server: Server) -> AsyncIterator[str]:
    """Another origin (another port): its own page, and a page framing a path of ours."""

    async def framing(request: web.Request) -> web.Response:
        target = request.query["src"]
        return web.Response(text=f'<iframe src="{target}"></iframe>', content_type="text/html")

    async def own(_request: web.Request) -> web.Response:
        return web.Response(text=f"<p id=mark>{MARK}</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/frame", framing)
    app.router.add_get("/own", own)
    site = TestServer(app, host="127.0.0.1")
    await site.start_server()
    yield str(site.make_url("")).rstrip("/")
    await site.close()


async def _framed_text(page_url: str) -> str:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page()
            await page.goto(page_url, wait_until="load")
            frame = page.frames[1]
            await frame.wait_for_load_state("load")
            return await frame.evaluate("document.body ? document.body.innerText : ''")
        finally:
            await browser.close()


@pytest.mark.parametrize("path", ["/", "/operator"])
async def test_another_site_cannot_frame_the_pages(
    server: Server, other_site: str, path: str
) -> None:
    # Control: the harness frames a page that allows it, and sees its text.
    assert MARK in await _framed_text(f"{other_site}/frame?src={other_site}/own")
    text = await _framed_text(f"{other_site}/frame?src={server.url}{path}")
    assert "Callbook" not in text and "operator" not in text.lower(), text[:200]
