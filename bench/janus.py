"""Janus (Debian's ``janus`` 1.1.2) as the SFU reference: its process and an HTTP VideoRoom driver.

Bench-only: Janus is not a dependency of Callbook and the test suite never starts it.
Install with ``apt-get install -y janus``.

``JanusProcess`` writes its own configuration folder (``janus -F DIR -C DIR/janus.jcfg``): plugin
and transport folders that hold symlinks to ``libjanus_videoroom.so`` and ``libjanus_http.so``
only, no event handlers, no loggers, the HTTP transport on 127.0.0.1, the admin API off. Janus
does not gather ICE candidates on ``lo``, so its ICE is pinned to the machine's own non-loopback
local address (``local_address()``): that address is routed through ``lo`` as well, so media
stays on the box.

``JanusVideoRoom`` speaks the plain HTTP API: create a session, long-poll
``GET /janus/<session>?maxev=10`` for events, attach ``janus.plugin.videoroom`` per participant,
``create`` a room, publisher ``joinandconfigure`` with the offer, subscriber ``join``
(ptype subscriber) -> Janus's offer -> our answer via ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import aiohttp

JANUS = "/usr/bin/janus"
LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
INSTALL_HINT = "Janus is not installed: apt-get install -y janus (Debian bookworm has 1.1.2)"


def janus_available() -> bool:
    return Path(JANUS).exists()


def local_address() -> str:
    """The machine's own non-loopback IPv4 address (its route goes through lo)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a source address
            address: str = sock.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    return address


def janus_config(folder: Path, http_port: int, ice_address: str, rtp_ports: str) -> str:
    """The janus.jcfg we run with (also quoted in docs/benchmarks.md)."""
    return f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"          # holds only libjanus_videoroom.so
    transports_folder = "{folder}/transports"    # holds only libjanus_http.so
    events_folder = "{folder}/events"            # empty
    loggers_folder = "{folder}/loggers"          # empty
    debug_level = 3                              # warnings and errors
    session_timeout = 120
    hide_dependencies = true
}}
media: {{
    ipv6 = false
    rtp_port_range = "{rtp_ports}"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{ice_address}"           # Janus gathers nothing on lo
}}
plugins: {{
}}
transports: {{
}}
events: {{
    broadcast = false
}}
loggers: {{
}}
"""


HTTP_CONFIG = """general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    port = {port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
"""

VIDEOROOM_CONFIG = """general: {
}
"""


class JanusProcess:
    def __init__(self, log: IO[bytes], http_port: int, rtp_ports: str = "40000-40999") -> None:
        self.log = log
        self.http_port = http_port
        self.rtp_ports = rtp_ports
        self.ice_address = local_address()
        self.folder = Path(tempfile.mkdtemp(prefix="callbook-janus-"))
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/janus"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def write_config(self) -> None:
        for sub in ("plugins", "transports", "events", "loggers"):
            (self.folder / sub).mkdir()
        os.symlink(
            LIB / "plugins/libjanus_videoroom.so", self.folder / "plugins/libjanus_videoroom.so"
        )
        os.symlink(LIB / "transports/libjanus_http.so", self.folder / "transports/libjanus_http.so")
        (self.folder / "janus.jcfg").write_text(
            janus_config(self.folder, self.http_port, self.ice_address, self.rtp_ports)
        )
        (self.folder / "janus.transport.http.jcfg").write_text(
            HTTP_CONFIG.format(port=self.http_port)
        )
        (self.folder / "janus.plugin.videoroom.jcfg").write_text(VIDEOROOM_CONFIG)

    async def start(self) -> None:
        if not janus_available():
            raise RuntimeError(INSTALL_HINT)
        self.write_config()
        self.proc = await asyncio.create_subprocess_exec(
            JANUS, "-F", str(self.folder), "-C", str(self.folder / "janus.jcfg"),
            "--disable-colors",
            stdin=asyncio.subprocess.DEVNULL, stdout=self.log, stderr=self.log,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.post(
                        self.url, json={"janus": "info", "transaction": "ready"}
                    ) as resp:
                        if resp.status == 200:
                            return
                if self.proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Janus did not start (see {self.log.name})")
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class JanusError(RuntimeError):
    pass


@contextlib.asynccontextmanager
async def running_janus(
    log: IO[bytes], http_port: int
) -> AsyncIterator[tuple[int, JanusVideoRoom]]:
    """A Janus process and one VideoRoom session on it: (its pid, the session)."""
    janus = JanusProcess(log, http_port)
    await janus.start()
    room = JanusVideoRoom(janus.url)
    try:
        await room.open()
        yield janus.pid, room
    finally:
        await room.close()
        await janus.stop()


class JanusVideoRoom:
    """One Janus session; one videoroom handle per participant."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession()
        self.session: int | None = None
        self._events: dict[tuple[int, str], asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": body.get("transaction") or secrets.token_hex(8)}
        async with self.http.post(self.url + path, json=body) as resp:
            reply: dict[str, Any] = await resp.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(str(reply.get("error")))
        return reply

    async def open(self) -> None:
        reply = await self._post("", {"janus": "create"})
        self.session = int(reply["data"]["id"])
        self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            try:
                async with self.http.get(f"{self.url}/{self.session}?maxev=10") as resp:
                    events = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                key = (int(event.get("sender", 0)), str(event.get("transaction", "")))
                future = self._events.pop(key, None)
                if future is not None and not future.done():
                    future.set_result(event)

    async def attach(self) -> int:
        reply = await self._post(
            f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        )
        return int(reply["data"]["id"])

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A plugin request; waits for the asynchronous event when Janus only acks."""
        transaction = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events[(handle, transaction)] = future
        request: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self._post(f"/{self.session}/{handle}", request)
        if reply.get("janus") == "success":
            self._events.pop((handle, transaction), None)
            return reply
        event = await asyncio.wait_for(future, 20)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{data.get('error_code')}: {data['error']}")
        return event

    async def create_room(self, handle: int, room: int, publishers: int = 1) -> None:
        await self.message(handle, {
            "request": "create", "room": room, "publishers": publishers,
            "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0, "fir_freq": 0,
            "notify_joining": False, "record": False,
        })  # fmt: skip

    async def publish(self, handle: int, room: int, offer_sdp: str) -> tuple[int, str]:
        """Publisher joins and publishes; returns (feed id, answer SDP)."""
        event = await self.message(
            handle,
            {"request": "joinandconfigure", "room": room, "ptype": "publisher",
             "audio": True, "video": True},
            {"type": "offer", "sdp": offer_sdp},
        )  # fmt: skip
        feed = int(event["plugindata"]["data"]["id"])
        return feed, str(event["jsep"]["sdp"])

    async def subscribe(self, handle: int, room: int, feed: int, wait: float = 20.0) -> str:
        """Subscriber joins; returns Janus's offer SDP. Janus refuses (428) until the feed's
        PeerConnection is up: retried for up to ``wait`` seconds."""
        body = {"request": "join", "room": room, "ptype": "subscriber", "streams": [{"feed": feed}]}
        deadline = time.monotonic() + wait
        while True:
            try:
                event = await self.message(handle, body)
                return str(event["jsep"]["sdp"])
            except JanusError as exc:
                if not str(exc).startswith("428") or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def choose_substream(self, handle: int, mid: str, substream: int) -> None:
        """A subscriber's simulcast layer of the stream ``mid`` (0 = lowest); Janus switches at
        the layer's next keyframe."""
        await self.message(
            handle, {"request": "configure", "streams": [{"mid": mid, "substream": substream}]}
        )

    async def start(self, handle: int, answer_sdp: str) -> None:
        await self.message(handle, {"request": "start"}, {"type": "answer", "sdp": answer_sdp})

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self._post(f"/{self.session}", {"janus": "destroy"})
        await self.http.close()
