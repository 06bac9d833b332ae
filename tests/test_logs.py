"""Logs hold no client addresses, handles or tokens."""

from __future__ import annotations

import logging

import pytest

from signaling.client import ClientError
from tests.conftest import Server


async def test_access_log_names_routes_not_people(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    alice = await server.signup("alice_logged")
    await server.signup("bob_logged")
    token = await alice.token()
    await alice.whois("bob_logged")
    with pytest.raises(ClientError):
        await alice.whois("ghost_logged")

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /v1/handles/{handle} 200" in text
    assert "GET /v1/handles/{handle} 404" in text
    for secret in ("alice_logged", "bob_logged", "ghost_logged", token, "127.0.0.1", "Bearer"):
        assert secret not in text, secret
