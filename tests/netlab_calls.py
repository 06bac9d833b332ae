"""Calls in the network lab: ``callbook serve`` and coturn in a public host, people's devices
(the SDK's softphone, real aiortc) in hosts behind NATs, each on its host's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from signaling.sdk.client import Client
from signaling.sdk.softphone import Softphone, Summary
from tests.conftest import TEST_ADMISSION_ENV
from tests.coturn import SECRET, write_config
from tests.netlab import Host

SERVER_PORT = 8080
TURN_PORT = 3478
#: How long `callbook serve` (embedded Valkey and SFU) may take to answer on a busy machine.
START_LIMIT_S = 60.0
REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass
class Deployment:
    host: Host
    url: str
    turn_log: Path | None = None

    def turn_text(self) -> str:
        return self.turn_log.read_text(errors="replace") if self.turn_log else ""


async def _healthy(url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _until_healthy(url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_LIMIT_S
    while not await _healthy(url):
        if process.returncode is not None or loop.time() > deadline:
            text = await asyncio.to_thread(log.read_text, errors="replace")
            raise RuntimeError(f"callbook serve did not start: {text[-2000:]}")
        await asyncio.sleep(0.1)


async def _stun_answers(address: str, port: int) -> bool:
    request = bytes.fromhex("0001000021124442") + b"callbook-lab"
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_sendto(sock, request, (address, port))
        try:
            return (await asyncio.wait_for(loop.sock_recv(sock, 512), 0.5))[:2] == b"\x01\x01"
        except TimeoutError:
            return False


async def start_coturn(host: Host, tmp_path: Path) -> Path:
    """coturn on ``host`` (UDP and TCP on 3478); returns its log."""
    log = write_config(tmp_path, "lab-turn", host.address, TURN_PORT, 49000, tcp=True)
    process = await host.spawn(
        "turnserver", "-c", str(tmp_path / "lab-turn.conf"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        if await host.run(_stun_answers(host.address, TURN_PORT)):
            return log
        if process.returncode is not None:
            break
    raise RuntimeError(f"coturn did not start: {log.read_text(errors='replace')[-2000:]}")


async def start_server(
    host: Host,
    tmp_path: Path,
    *,
    turn: str | None = None,
    reached_at: str | None = None,
    **env: str,
) -> Deployment:
    """``callbook serve`` on ``host`` as an operator runs it: embedded store and SFU, no
    configuration but the suite's admission limits; ``turn``: "udp" or "tcp" to run coturn
    beside it and hand out its URI; ``reached_at``: the address devices use (behind a NAT)."""
    turn_log = None
    settings = {**TEST_ADMISSION_ENV, "CALLBOOK_STUN_PORT": "3478", **env}
    if turn is not None:
        turn_log = await start_coturn(host, tmp_path)
        settings["CALLBOOK_TURN_URIS"] = f"turn:{host.address}:{TURN_PORT}?transport={turn}"
        settings["CALLBOOK_TURN_SECRET"] = SECRET
    log = tmp_path / "serve.log"
    process = await host.spawn(
        sys.executable, "-m", "signaling.cli", "serve", "--host", host.address,
        "--port", str(SERVER_PORT), "--data-dir", str(tmp_path / "data"),
        env={**os.environ, "PYTHONPATH": str(REPOSITORY), **settings},
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://{host.address}:{SERVER_PORT}"
    await host.run(_until_healthy(url, process, log))
    return Deployment(host, f"http://{reached_at or host.address}:{SERVER_PORT}", turn_log)


@dataclass
class Person:
    """One person's device in a lab host; everything of it runs on that host's loop."""

    host: Host
    handle: str
    client: Client
    phone: Softphone
    events: list[dict[str, Any]] = field(default_factory=list)

    def event(self, name: str) -> dict[str, Any]:
        [found] = [e for e in self.events if e["event"] == name]
        return found


async def sign_up(host: Host, url: str, handle: str, video: bool = False) -> Person:
    async def on_host() -> Person:
        client = Client(url)
        await client.signup(handle)
        events: list[dict[str, Any]] = []
        return Person(host, handle, client, Softphone(client, video=video, emit=events.append),
                      events)  # fmt: skip

    return await host.run(on_host())


async def befriend(*people: Person) -> None:
    """Each the other's contact: their calls stay peer to peer (strangers are relayed)."""
    for person in people:
        for other in people:
            if other is not person:
                await person.host.run(person.client.add_contact(other.handle))


@contextlib.asynccontextmanager
async def signed_up(
    deployment: Deployment, *hosts: tuple[Host, str], video: bool = False
) -> AsyncIterator[list[Person]]:
    people = [await sign_up(host, deployment.url, handle, video) for host, handle in hosts]
    try:
        yield people
    finally:
        for person in people:
            await person.host.run(_close(person))


async def _close(person: Person) -> None:
    await person.phone.close()
    await person.client.close()


async def call(caller: Person, callee: Person, duration_s: float | None) -> tuple[Summary, Summary]:
    """``caller`` calls ``callee``, who answers; the caller hangs up after ``duration_s`` of
    media (None: when the test calls ``caller.phone.hang_up()``)."""
    await callee.host.run(callee.phone.line.open())  # online before the invite rings it
    answering = asyncio.ensure_future(callee.host.run(callee.phone.answer(duration_s=None)))
    try:
        calling = await caller.host.run(caller.phone.call(callee.handle, duration_s))
        answered = await asyncio.wait_for(answering, 30)
    finally:
        answering.cancel()
    return calling, answered


async def until(condition: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    """Wait until ``condition()`` holds (state another host's loop changes), at most
    ``limit_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"no {what} within {limit_s:g} s")
        await asyncio.sleep(0.05)
