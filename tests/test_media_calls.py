"""Real WebRTC peers (aiortc softphones) calling by handle through the server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from signaling.protocol.bodies import AccountUpdate, IceServers
from signaling.sdk.softphone import Softphone, Summary
from tests.conftest import MakeServer, Server
from tests.coturn import Coturn

pytestmark = pytest.mark.slow


async def _call(
    alice: Softphone, bob: Softphone, handle: str, duration_s: float
) -> tuple[Summary, Summary]:
    """Alice calls ``handle``; Bob answers and stays until she hangs up. Both are closed."""
    await bob.line.open()
    try:
        answering = asyncio.create_task(bob.answer(duration_s=None))
        caller = await alice.call(handle, duration_s=duration_s)
        callee = await asyncio.wait_for(answering, 10)
    finally:
        await alice.close()
        await bob.close()
    return caller, callee


async def test_aiortc_calls_aiortc_by_handle_with_audio_and_video(server: Server) -> None:
    alice = Softphone(await server.signup("alice"), video=True)
    bob = Softphone(await server.signup("bob"), video=True)
    caller, callee = await _call(alice, bob, "bob", 4.0)
    for side in (caller, callee):
        assert side.outcome == "connected", side.as_event()
        assert side.media.audio_packets_received > 0
        assert side.media.video_frames_received > 0
        assert side.sent_packets > 0
    assert callee.reason == "hangup"


async def test_hide_my_ip_call_connects_through_coturn_relays_only(
    make_server: MakeServer, coturn: Coturn
) -> None:
    server = await make_server(turn_uris=(coturn.uri,), turn_secret=coturn.secret)
    alice = Softphone(await server.signup("alice"))
    bob_client = await server.signup("bob")
    await bob_client.update(AccountUpdate(hide_ip=True))
    bob = Softphone(bob_client)
    caller, callee = await _call(alice, bob, "bob", 3.0)
    for side in (caller, callee):
        assert side.outcome == "connected", side.as_event()
        assert side.media.audio_packets_received > 0
    for phone in (alice, bob):
        candidates = [
            line
            for text in phone.received_signaling
            for line in text.splitlines()
            if "typ " in line
        ]
        assert candidates, "no candidates were exchanged"
        assert all("typ relay" in c for c in candidates), candidates
    await asyncio.sleep(1.5)  # coturn writes its session summary after close
    log = coturn.log_text()
    assert "ALLOCATE" in log and "CHANNEL_BIND" in log


async def test_turn_credentials_follow_coturns_rest_scheme(
    make_server: MakeServer, coturn: Coturn
) -> None:
    server = await make_server(turn_uris=(coturn.uri,), turn_secret=coturn.secret, turn_ttl_s=600)
    client = await server.signup("alice")
    turn: IceServers = await client.request("GET", "/v1/turn", IceServers)
    [ice] = turn.ice_servers
    assert ice.urls == [coturn.uri] and turn.ttl == 600
    assert ice.username is not None and ice.credential is not None
    expiry, _, ident = ice.username.partition(":")
    assert int(expiry) - time.time() == pytest.approx(600, abs=5)
    assert client.profile is not None and client.profile.account_id not in ident
    expected = base64.b64encode(
        hmac.new(coturn.secret.encode(), ice.username.encode(), hashlib.sha1).digest()
    ).decode()
    assert ice.credential == expected


async def _cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling.cli", *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def _events(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.decode().splitlines() if line.strip()]


async def test_cli_bots_call_and_answer_with_json_summaries(server: Server, tmp_path: Path) -> None:
    caller, callee = tmp_path / "caller.json", tmp_path / "callee.json"
    for handle, profile in (("carol", caller), ("dave", callee)):
        signup = await _cli("signup", handle, "--server", server.url, "--profile", str(profile))
        assert await signup.wait() == 0
    answer = await _cli("answer", "--profile", str(callee), "--once", "--video", "--json")
    assert answer.stdout is not None
    ready = json.loads(await asyncio.wait_for(answer.stdout.readline(), 30))
    assert ready["event"] == "ready"
    call = await _cli(
        "call", "dave", "--profile", str(caller), "--video", "--duration", "3", "--json"
    )
    call_out, call_err = await asyncio.wait_for(call.communicate(), 60)
    answer_out, answer_err = await asyncio.wait_for(answer.communicate(), 30)
    assert call.returncode == 0, call_err.decode()
    assert answer.returncode == 0, answer_err.decode()
    for events in (_events(call_out), _events(answer_out)):
        assert all("event" in e for e in events)
        summary = events[-1]
        assert summary["event"] == "summary" and summary["outcome"] == "connected"
        assert summary["media"]["audio_packets_received"] > 0
        assert summary["media"]["video_frames_received"] > 0
    assert [e["event"] for e in _events(call_out)][:2] == ["ringing", "accepted"]


async def test_cli_call_to_a_blocking_callee_reports_no_answer(
    make_server: MakeServer, tmp_path: Path
) -> None:
    server = await make_server(ring_timeout_s=1.0)
    caller = tmp_path / "caller.json"
    assert (
        await (
            await _cli("signup", "erin", "--server", server.url, "--profile", str(caller))
        ).wait()
        == 0
    )
    frank = await server.signup("frank")
    await frank.block("erin")
    call = await _cli("call", "frank", "--profile", str(caller), "--json")
    out, _ = await asyncio.wait_for(call.communicate(), 30)
    assert call.returncode == 1
    summary = _events(out)[-1]
    assert (summary["outcome"], summary["reason"]) == ("no_answer", "no_answer")
