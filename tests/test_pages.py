"""The web pages and their static files: security headers, and problems for what is missing.

That the pages still work under their policy is for the browser tests (test_browser.py,
test_operator_dashboard.py), which load them in Chromium with these headers.
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from signaling.protocol.problems import PROBLEM_CONTENT_TYPE
from tests.conftest import Server


def _directives(policy: str) -> dict[str, str]:
    pairs = (d.strip().partition(" ") for d in policy.split(";") if d.strip())
    return {name: value for name, _, value in pairs}


@pytest.mark.parametrize("path", ["/", "/operator"])
async def test_pages_cannot_be_framed_and_load_only_their_own_files(
    server: Server, path: str
) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        headers = response.headers
    policy = _directives(headers["Content-Security-Policy"])
    # A <meta> policy cannot forbid framing; only the header can (clickjacking the dashboard).
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["base-uri"] == "'none'"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    ["/static/app.js", "/static/app.css", "/static/icon.svg", "/healthz", "/v1/openapi.json",
     "/metrics", "/v1/me", "/v1/nowhere", "/static/nope.js"],
)  # fmt: skip
async def test_every_answer_is_nosniff(server: Server, path: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        await response.read()
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_static_files_are_served_for_revalidation(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/static/app.js") as response:
            assert response.status == 200
            assert "javascript" in response.content_type
            assert response.headers["Cache-Control"] == "no-cache"
            etag = response.headers["ETag"]
        headers = {"If-None-Match": etag}
        async with http.get(f"{server.url}/static/app.js", headers=headers) as response:
            assert response.status == 304


@pytest.mark.parametrize(
    "path",
    ["/static/nope.js", "/static/__init__.py", "/static/index.html", "/static/",
     "/static/../app.py", "/static/%2e%2e/app.py", "/static/.hidden.js"],
    ids=["missing", "python_module", "page_by_another_path", "directory", "dot_dot",
         "encoded_dot_dot", "hidden"],
)  # fmt: skip
async def test_what_is_not_a_static_file_is_a_404_problem(server: Server, path: str) -> None:
    """A missing file was a 404 with ``application/octet-stream``; the package's Python
    modules were served too."""
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        raw = await response.read()
        assert response.status == 404, raw
        assert response.content_type == PROBLEM_CONTENT_TYPE
        assert json.loads(raw)["code"] in {"not_found", "no_route"}
