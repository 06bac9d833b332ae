"""The REST contract: docs/openapi.json is what the code generates, and the server serves it."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from signaling.openapi import document, render
from signaling.rest import endpoints
from tests.conftest import Server

COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def test_committed_document_matches_the_code() -> None:
    assert COMMITTED.read_text() == render(), (
        "docs/openapi.json drifted from the code: regenerate it with "
        "`python -m signaling.openapi > docs/openapi.json` and review the change"
    )


async def test_served_document_is_the_generated_one(server: Server) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/v1/openapi.json") as response,
    ):
        assert response.status == 200
        assert await response.json() == json.loads(render())


def test_every_endpoint_is_documented_with_its_errors() -> None:
    doc = document()
    for endpoint in endpoints():
        operation = doc["paths"][endpoint.path][endpoint.method.lower()]
        assert str(endpoint.status) in operation["responses"]
        for code in endpoint.errors:
            status = str(doc["x-problem-codes"][code]["status"])
            assert code in operation["responses"][status]["description"]
