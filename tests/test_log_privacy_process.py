"""The same hostile paths against a real ``callbook serve`` process (uvloop, the real runner and
log setup), whose stderr is then searched for addresses, tokens, ids and handles."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from signaling.logs import redact
from signaling.sdk.client import Client
from signaling.sdk.line import Line
from tests.conftest import TEST_ADMISSION_ENV
from tests.ports import free_port
from tests.test_log_privacy import _close_code, _frame, _raw_http, _reset, _upgrade

pytestmark = pytest.mark.slow


class LoggingNode:
    """``callbook serve`` on the suite's store with its own SFU, their stderr in a file."""

    def __init__(self, redis_url: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CALLBOOK_MEDIA")},
            "REDIS_URL": redis_url,
            **TEST_ADMISSION_ENV,
            "CALLBOOK_PORT": str(self.port),
            "CALLBOOK_HEADER_TIMEOUT_S": "1",
            "CALLBOOK_DRAIN_GRACE_S": "0",
        }
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "signaling.cli", "serve"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip

    async def ready(self) -> None:
        deadline = time.monotonic() + 60  # generous: see tests/test_cluster_processes.py Node.ready
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, self.log_path.read_text()
                try:
                    async with http.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("the server did not become ready")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log_path.read_text()


@pytest.fixture
def node(redis_url: str, tmp_path: Path) -> Iterator[LoggingNode]:
    running = LoggingNode(redis_url, tmp_path / "serve.log")
    try:
        yield running
    finally:
        running.stop()


async def test_a_real_server_logs_no_address_token_id_or_handle(
    node: LoggingNode, store: object
) -> None:
    await node.ready()
    alice = Client(node.url)
    await alice.signup("alice_process", "Alice Process")
    line = Line(alice)
    welcome = await line.open()
    token = await alice.token()
    assert alice.profile is not None
    secrets = {
        "alice_process",
        "Alice Process",
        token,
        token.split(".")[1],
        token.rsplit(".", 1)[-1],
        welcome.resume_token,
        alice.profile.account_id,
        alice.profile.device_id,
    }
    ws_url = line.url
    async with aiohttp.ClientSession() as http:
        # No callbook.v1: refused before the upgrade.
        for offered in ([f"bearer.{token}"], [f"resume.{welcome.resume_token}"]):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(ws_url, protocols=offered)
            assert refused.value.status == 400
        # A forged token, in a header and on the socket.
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        secrets.add(forged)
        async with http.get(
            node.url + "/v1/me", headers={"Authorization": f"Bearer {forged}"}
        ) as response:
            assert response.status == 401
        ws = await http.ws_connect(ws_url, protocols=["callbook.v1", f"bearer.{forged}"])
        assert (await ws.receive_json())["code"] == "token_invalid"
        await ws.close()
    # Bad HTTP, and a silent connection the server closes at its header timeout.
    for request in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"):
        assert (await _raw_http(node.url, request)).split(b" ", 2)[1].startswith(b"4")
    async with asyncio.timeout(15):
        assert await _raw_http(node.url, b"") == b""
    # Pings then a reset; an unmasked frame (1002); an oversized one (1009).
    reader, writer, head = await _upgrade(node.url, f"callbook.v1, bearer.{token}")
    assert head.startswith(b"HTTP/1.1 101")
    for _ in range(20):
        writer.write(_frame(0x9, b"ping"))
    await writer.drain()
    _reset(writer)
    for frame, code in (
        (_frame(0x1, b'{"type":"ping"}', masked=False), 1002),
        (_frame(0x1, b"x" * 70_000), 1009),
    ):
        reader, writer, head = await _upgrade(node.url, f"callbook.v1, bearer.{token}")
        assert head.startswith(b"HTTP/1.1 101")
        writer.write(frame)
        async with asyncio.timeout(10):
            assert await _close_code(reader) == code
        writer.close()
    await line.close()
    await alice.close()

    text = node.stop()
    # Every line is one JSON object, the embedded SFU's too.
    entries = [json.loads(raw) for raw in text.splitlines()]
    assert any(e["logger"] == "callbook.media" for e in entries)
    assert any(e.get("route") == "/v1/ws" and e.get("status") == 400 for e in entries)
    lowered = text.lower()
    for secret in sorted(secrets):
        assert secret.lower() not in lowered, secret
    assert "127.0.0.1" not in text and "bearer" not in lowered
    assert redact(text) == text
    ours = [e for e in entries if e["level"] == "ERROR" and str(e["logger"]).startswith("callbook")]
    assert not ours, ours
