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

from tests.ports import free_port

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


def _stun_answers(port: int) -> bool:
    request = bytes.fromhex("0001000021124442") + b"callbook-tst"  # binding request
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            return sock.recv(512)[:2] == b"\x01\x01"
        except OSError:
            return False


def write_config(
    tmp_path: Path, name: str, address: str, port: int, relay_base: int, tcp: bool = False
) -> Path:
    """coturn's configuration: listening and relaying on ``address``; a loopback one may relay
    to loopback peers. Returns the log's path (the config is beside it, ``<name>.conf``)."""
    log = tmp_path / f"{name}.log"
    loopback = address.startswith("127.")
    (tmp_path / f"{name}.conf").write_text(
        "\n".join(
            [
                f"listening-ip={address}",
                f"relay-ip={address}",
                f"listening-port={port}",
                f"min-port={relay_base}",
                f"max-port={relay_base + 99}",
                "realm=callbook.test",
                "use-auth-secret",
                f"static-auth-secret={SECRET}",
                *(["allow-loopback-peers"] if loopback else []),
                "no-cli",
                "no-tls",
                "no-dtls",
                *([] if tcp else ["no-tcp"]),
                "fingerprint",
                f"userdb={tmp_path / (name + '.db')}",
                f"pidfile={tmp_path / (name + '.pid')}",
                f"log-file={log}",
                "simple-log",
                "verbose",
            ]
        )
        + "\n"
    )
    return log


async def _start(tmp_path: Path, attempt: int) -> tuple[asyncio.subprocess.Process, Coturn] | None:
    port = free_port(1)  # coturn binds UDP and TCP on its port and the next
    relay_base = 40000 + (port % 200) * 100
    name = f"turn-{attempt}"
    log = write_config(tmp_path, name, "127.0.0.1", port, relay_base)
    config = tmp_path / f"{name}.conf"
    process = await asyncio.create_subprocess_exec(
        "turnserver", "-c", str(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while not _stun_answers(port):
        if process.returncode is not None or time.monotonic() > deadline:
            if process.returncode is None:
                process.kill()
            await process.wait()
            return None
        await asyncio.sleep(0.05)
    return process, Coturn(port=port, secret=SECRET, log=log)


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[Coturn]:
    # A port can be taken between choosing it and coturn binding it: try a fresh one.
    for attempt in range(3):
        started = await _start(tmp_path, attempt)
        if started is not None:
            break
    else:
        raise RuntimeError(f"coturn did not start (see {tmp_path}/turn-*.log)")
    process, server = started
    yield server
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        process.kill()
        await process.wait()
