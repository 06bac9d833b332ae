"""`callbook serve` keeps its embedded store running: ``kill -9`` of its Valkey under a running
server, with devices connected, and the server starts Valkey again on the same data; a store that
cannot be started again is given up on, and the server exits non-zero (real processes)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from signaling.protocol import messages as m
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.conftest import befriend
from tests.ports import free_port
from tests.test_embedded import _read, _start, _valkey_pid

pytestmark = pytest.mark.slow

#: From the kill to the server answering ready again (the first restart is immediate).
BACK_WITHIN_S = 15.0
#: Every restart failing: the pauses (0 + 0.5 + 1 + 2 + 4 s) and the start attempts.
GIVES_UP_WITHIN_S = 30.0


def _kill_store(data_dir: Path) -> int:
    pid = _valkey_pid(data_dir)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


async def _ready_again(url: str, data_dir: Path, killed: int) -> None:
    async with asyncio.timeout(BACK_WITHIN_S), aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{url}/readyz") as response:
                if response.status == 200 and _valkey_pid(data_dir) not in (None, killed):
                    return
            await asyncio.sleep(0.1)


async def _call(a: Line, b: Line) -> None:
    await a.send(m.Invite(handle="bob"))
    call_id = (await a.expect(m.Ringing)).call_id
    assert (await b.expect(m.Incoming)).call_id == call_id
    await b.send(m.Accept(call_id=call_id))
    await a.expect(m.Accepted)
    await b.expect(m.Accepted)
    await a.send(m.Hangup(call_id=call_id))
    assert (await b.expect(m.Ended)).call_id == call_id
    await a.expect(m.Ended)


async def _unread(line: Line) -> list[m.ServerMessage]:
    """Whatever the line received and nobody read yet (raises if the socket closed)."""
    found = []
    while True:
        try:
            found.append(await line.receive(within=0.05))
        except TimeoutError:
            return found


def _log_records(log: Path) -> list[dict[str, object]]:
    records = []
    for raw in _read(log).splitlines():
        try:
            records.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return records


async def test_the_server_restarts_its_store_after_kill_9(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    port = free_port()
    server = await _start(data_dir, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        async with Client(url) as alice, Client(url) as bob:
            await alice.signup("alice", "Alice")
            await bob.signup("bob")
            await befriend(alice, bob)
            async with Line(alice) as a, Line(bob) as b:
                await a.open()
                await b.open()
                await _call(a, b)

                killed = _kill_store(data_dir)
                await _ready_again(url, data_dir, killed)

                # Connected devices kept their sockets and were told nothing (a message of
                # theirs that needed the store meanwhile got `unavailable`, docs/deploy.md); they
                # call again on them, and what was written before the kill is there.
                for line in (a, b):
                    assert await _unread(line) == [] and line.close_code is None
                await _call(a, b)
                assert (await alice.me()).display_name == "Alice"
        # And a device signs in afresh.
        async with Client(url) as carol:
            await carol.signup("carol")
    finally:
        server.send_signal(signal.SIGTERM)
        await server.wait()
    assert server.returncode == 0, _read(log)
    assert _valkey_pid(data_dir) is None
    errors = [r["msg"] for r in _log_records(log) if r.get("level") == "ERROR"]
    assert errors == ["the embedded store exited (code -9); starting it again on the same data"]


async def test_a_store_that_will_not_start_again_stops_the_server(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    port = free_port()
    server = await _start(data_dir, port, log)
    try:
        async with Client(f"http://127.0.0.1:{port}") as alice:
            await alice.signup("alice")
        # A damaged append-only manifest (read only at start): Valkey refuses every start.
        [manifest] = (data_dir / "appendonlydir").glob("*.manifest")
        manifest.write_text("not a manifest\n")
        _kill_store(data_dir)
        async with asyncio.timeout(GIVES_UP_WITHIN_S):
            await server.wait()
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    assert server.returncode == 1, _read(log)
    messages = [str(r["msg"]) for r in _log_records(log)]
    assert sum("did not start" in msg for msg in messages) == 5, messages
    assert any("keeps dying or does not start" in msg for msg in messages), messages
