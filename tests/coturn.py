"""A real coturn (Debian's ``turnserver``) on loopback, with ``use-auth-secret``."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SECRET = "test-static-auth-secret"


@dataclass(frozen=True)
class Coturn:
    port: int
    secret: str
    log: Path

    @property
    def uri(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stun_answers(port: int) -> bool:
    request = bytes.fromhex("0001000021124442") + b"callbook-tst"  # binding request
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            return sock.recv(512)[:2] == b"\x01\x01"
        except OSError:
            return False


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[Coturn]:
    port = _free_udp_port()
    relay_base = 40000 + (port % 200) * 100
    config = tmp_path / "turnserver.conf"
    log = tmp_path / "turn.log"
    config.write_text(
        "\n".join(
            [
                "listening-ip=127.0.0.1",
                "relay-ip=127.0.0.1",
                f"listening-port={port}",
                f"min-port={relay_base}",
                f"max-port={relay_base + 99}",
                "realm=callbook.test",
                "use-auth-secret",
                f"static-auth-secret={SECRET}",
                "allow-loopback-peers",
                "no-cli",
                "no-tls",
                "no-dtls",
                "fingerprint",
                f"userdb={tmp_path / 'turndb'}",
                f"pidfile={tmp_path / 'turn.pid'}",
                f"log-file={log}",
                "simple-log",
                "verbose",
            ]
        )
        + "\n"
    )
    process = await asyncio.create_subprocess_exec(
        "turnserver", "-c", str(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while not _stun_answers(port):
        if process.returncode is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"coturn did not start (see {log})")
        await asyncio.sleep(0.05)
    yield Coturn(port=port, secret=SECRET, log=log)
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        process.kill()
        await process.wait()
