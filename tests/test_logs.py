"""Logs hold no client addresses, handles or tokens."""

from __future__ import annotations

import json
import logging
import sys

import aiohttp
import pytest

from directory import recovery
from signaling.logs import JsonFormatter
from signaling.protocol import messages as m
from signaling.sdk.client import Client, ClientError, _b64
from signaling.sdk.line import Line, LineClosed
from tests.conftest import MakeServer, Server


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


def _public_key(client: Client) -> str:
    assert client.profile is not None
    return _b64(client.profile.key().public_key().public_bytes_raw())


async def test_a_whole_scenario_logs_json_without_personal_data(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = await make_server(ring_timeout_s=0.5)
    handles = ("alice_scenario", "bob_scenario", "carol_scenario", "dave_scenario")
    alice, bob, carol, dave = [await server.signup(h, h.title()) for h in handles]
    clients = (alice, bob, carol, dave)
    secrets: set[str] = {*handles, "ghost_scenario", "127.0.0.1"}
    for client in clients:
        profile = client.profile
        assert profile is not None and profile.recovery_code
        token = await client.token()
        secrets |= {
            token,
            token.rsplit(".", 1)[-1],  # the signature alone
            profile.account_id,
            profile.device_id,
            profile.recovery_code,
            profile.recovery_code.replace("-", ""),
            _public_key(client),
        }

    # Lookups, found and not.
    assert (await alice.whois("bob_scenario")).handle == "bob_scenario"
    with pytest.raises(ClientError):
        await alice.whois("ghost_scenario")
    # Contacts and a block.
    await alice.add_contact("bob_scenario", nickname="Bobby")
    assert len(await alice.contacts()) == 1
    await alice.block("carol_scenario")
    assert len(await alice.blocks()) == 1

    # A 1:1 call: invite, accept, hang up; then a call to nobody; then a malformed frame.
    async with Line(alice) as a, Line(bob) as b:
        for line in (a, b):
            welcome = await line.open()
            secrets.add(welcome.resume_token)
        await a.send(m.Invite(handle="bob_scenario"))
        call_id = (await a.expect(m.Ringing)).call_id
        assert (await b.expect(m.Incoming)).call_id == call_id
        await b.send(m.Accept(call_id=call_id))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        await a.send(m.Hangup(call_id=call_id))
        assert (await a.expect(m.Ended)).reason == "hangup"
        assert (await b.expect(m.Ended)).reason == "hangup"

        await a.send(m.Invite(handle="ghost_scenario"))
        await a.expect(m.Ringing)
        assert (await a.expect(m.Ended)).reason == "no_answer"

        # Malformed frames: one that fails validation (the connection stays), then one that is
        # not JSON at all (the connection closes).
        await b.send_raw('{"type": "invite", "handle": "ghost_scenario", "token": "x"}')
        assert (await b.expect(m.Error)).code == "invalid_message"
        await b.send_raw('{"type": "invite", "handle": "ghost_scenario"')
        with pytest.raises(LineClosed):
            while True:
                await b.receive(within=5)
        assert b.close_code == 1007

    # REST with a bad token, recovery with a wrong code, and an erase.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            server.url + "/v1/me", headers={"Authorization": "Bearer not.a.token"}
        ) as response,
    ):
        assert response.status == 401
    secrets.add("not.a.token")
    stranger = server.client()
    wrong_code = recovery.new_code()
    secrets |= {wrong_code, wrong_code.replace("-", "")}
    with pytest.raises(ClientError) as refused:
        await stranger.recover("dave_scenario", wrong_code)
    assert refused.value.status != 422, "a well-formed code, just the wrong one"
    await dave.erase()

    records = caplog.records
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in records]
    parsed = [json.loads(line) for line in lines]
    for entry in parsed:
        assert {"ts", "level", "logger", "msg"} <= entry.keys(), entry
        assert entry["ts"].endswith("+00:00"), entry["ts"]
    access = [e for e in parsed if "route" in e]
    assert {"method", "route", "status", "duration_ms"} <= access[0].keys()
    assert any(
        e["method"] == "GET" and e["route"] == "/v1/handles/{handle}" and e["status"] == 404
        for e in access
    )
    assert any(e["route"] == "/v1/ws" for e in access)
    assert any(e["route"] == "/v1/me" and e["status"] == 401 for e in access)
    assert any(e["route"] == "/v1/recovery" and e["status"] >= 400 for e in access)
    assert any(e["method"] == "DELETE" and e["route"] == "/v1/me" for e in access)

    text = "\n".join(
        [*lines, *(r.getMessage() for r in records)]
        + [repr(value) for r in records for value in r.__dict__.values()]
    ).lower()
    for secret in sorted(secrets):
        assert secret.lower() not in text, secret
    assert "bearer" not in text


def test_formatter_keeps_exception_type_and_frames_but_not_its_message() -> None:
    logger = logging.getLogger("callbook.test")
    try:
        raise ValueError("alice_secret 127.0.0.1")
    except ValueError:
        record = logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            1,
            "failed for call %s",
            ("c-123",),
            sys.exc_info(),
            extra={"call_id": "c-123", "unserialisable": object()},
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "callbook.test"
    assert entry["msg"] == "failed for call c-123"
    assert entry["call_id"] == "c-123"
    assert "unserialisable" not in entry
    assert entry["exc"]["type"] == "builtins.ValueError"
    assert entry["exc"]["frames"] and all(":" in frame for frame in entry["exc"]["frames"])
    assert "alice_secret" not in line and "127.0.0.1" not in line
