"""The store goes away for 10 s under two real nodes with a live peer-to-peer call between them.

While it is down: requests get 503 ``unavailable`` problems, WebSocket messages that need it get
an ``unavailable`` error on a socket that stays open, and the call's media keeps flowing. When it
is back: the nodes recover by themselves within 5 s, nobody was taken for dead, the old call goes
on and a new call across the nodes can be placed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSCloseCode
from aiortc import RTCPeerConnection, RTCSessionDescription

from directory.storage import keys
from directory.storage.connection import COMMAND_TIMEOUT_S
from media.embedded import EmbeddedMedia
from media.server import allow_loopback_ice
from signaling.protocol import messages as m
from signaling.sdk.client import Client
from signaling.sdk.line import Line, LineClosed, LineRefused
from signaling.sdk.media import Received, ToneTrack, peer_connection
from tests.conftest import TEST_SECRET_TEXT, befriend
from tests.ports import free_port
from tests.test_cluster_processes import Node
from tests.test_webhooks import SECRET, Receiver, until
from tests.test_webhooks import receiver as receiver  # the fixture, an HTTP receiver
from tests.valkey_process import ValkeyProcess

pytestmark = pytest.mark.slow

OUTAGE_S = 10.0
#: A bound on recovery after the store returns, not a timing: CI runs with a CPU hog and workers.
RECOVERY_S = 20.0
#: Webhook delivery is a background job with its own lease (WEBHOOK_LEASE_TTL_S) and backoff.
WEBHOOKS_BACK_S = 30.0
#: After the outage, long enough for every node to judge the others (dead after 5 s of
#: silence, noticed at the next heartbeat): a wrong judgement would have shown by then.
JUDGED_BY_S = keys.NODE_DEAD_AFTER_S + keys.NODE_HEARTBEAT_S + 1.0


class LoggedNode(Node):
    """A ``callbook serve`` node whose log lines the test reads afterwards."""

    def __init__(
        self,
        node_id: str,
        redis_url: str,
        sfu: EmbeddedMedia,
        log_path: Path,
        webhook_url: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "CALLBOOK_SECRET": TEST_SECRET_TEXT,
            "CALLBOOK_ROUTING": "redis",
            "CALLBOOK_NODE_ID": node_id,
            "CALLBOOK_PORT": str(self.port),
            "CALLBOOK_MEDIA_URL": sfu.url,
            "CALLBOOK_MEDIA_SECRET": sfu.secret,
            "CALLBOOK_LOOKUP_BURST": "1000",
        }
        if webhook_url is not None:
            env["CALLBOOK_WEBHOOK_URLS"] = webhook_url
            env["CALLBOOK_WEBHOOK_SECRET"] = SECRET.decode()
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "signaling.cli", "serve"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip

    def log_lines(self) -> list[dict[str, object]]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
        return lines


@pytest.fixture
def owned_valkey(tmp_path: Path) -> Iterator[ValkeyProcess]:
    server = ValkeyProcess(tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nodes(
    owned_valkey: ValkeyProcess, sfu: EmbeddedMedia, tmp_path: Path, receiver: Receiver
) -> Iterator[tuple[LoggedNode, LoggedNode]]:
    url = owned_valkey.url
    a = LoggedNode("out-a", url, sfu, tmp_path / "a.log", receiver.url)
    b = LoggedNode("out-b", url, sfu, tmp_path / "b.log", receiver.url)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.close()


class Peer:
    """One side of a real aiortc call, signalled through its node."""

    def __init__(self, line: Line) -> None:
        self.line = line
        self.pc: RTCPeerConnection = peer_connection([], relay_only=False)
        self.received = Received()
        self.pc.on("track", self.received.consume)
        self.pc.addTrack(ToneTrack())

    async def offer(self, call_id: str) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        await self.line.send(m.Description(call_id=call_id, kind="offer", sdp=sdp))

    async def answer(self, call_id: str) -> None:
        offer = await self.line.expect(m.PeerDescription)
        await self.pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        sdp = self.pc.localDescription.sdp
        await self.line.send(m.Description(call_id=call_id, kind="answer", sdp=sdp))

    async def answered(self) -> None:
        answer = await self.line.expect(m.PeerDescription)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))

    async def close(self) -> None:
        await self.received.stop()
        await self.pc.close()


async def _place(caller: Line, callee: Line, handle: str) -> str:
    await caller.send(m.Invite(handle=handle))
    call_id = (await caller.expect(m.Ringing)).call_id
    assert (await callee.expect(m.Incoming)).call_id == call_id
    await callee.send(m.Accept(call_id=call_id))
    await caller.expect(m.Accepted)
    await callee.expect(m.Accepted)
    return call_id


def _has(receiver: Receiver, call_id: str, kind: str) -> bool:
    return any(event["type"] == kind for event in receiver.accepted(call_id))


async def _place_when_back(caller: Line, callee: Line, handle: str) -> str:
    """Place a call as a client would after an outage: until the callee's device rings (its
    node writes its presence again within a heartbeat of the store's return)."""
    while True:
        await caller.send(m.Invite(handle=handle))
        reply = await caller.receive(within=5)
        if isinstance(reply, m.Error):
            assert reply.code == "unavailable", reply
            await asyncio.sleep(0.2)
            continue
        assert isinstance(reply, m.Ringing), reply
        try:
            incoming = await callee.expect(m.Incoming, within=1)
        except TimeoutError:
            await caller.send(m.Hangup(call_id=reply.call_id))
            assert (await caller.expect(m.Ended)).call_id == reply.call_id
            continue
        assert incoming.call_id == reply.call_id
        await callee.send(m.Accept(call_id=reply.call_id))
        await caller.expect(m.Accepted)
        await callee.expect(m.Accepted)
        return reply.call_id


async def _media_flows(*peers: Peer, within: float = 15.0) -> None:
    """Each peer receives more audio packets than it had, within the time."""
    before = [p.received.audio_packets_received for p in peers]
    async with asyncio.timeout(within):
        while True:
            counts = [p.received.audio_packets_received for p in peers]
            if all(now > then for now, then in zip(counts, before, strict=True)):
                return
            await asyncio.sleep(0.1)


async def _problem(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, dict, str]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{url}/v1/me", headers=headers) as response:
        body = await response.json(content_type=None)
        return response.status, body, response.headers.get("Retry-After", "")


async def _status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as response:
        return response.status


async def _unread(line: Line) -> list[m.ServerMessage]:
    """Whatever the line received and nobody read yet (raises if the socket closed)."""
    found = []
    while True:
        try:
            found.append(await line.receive(within=0.05))
        except TimeoutError:
            return found


async def _call_goes_on(line: Line) -> None:
    unread = await _unread(line)
    assert not any(isinstance(x, m.Ended | m.PeerReconnecting) for x in unread), unread
    assert line.close_code is None


async def test_a_store_outage_keeps_calls_and_recovers(
    owned_valkey: ValkeyProcess,
    nodes: tuple[LoggedNode, LoggedNode],
    clients: list[Client],
    receiver: Receiver,
) -> None:
    node_a, node_b = nodes
    await asyncio.gather(node_a.ready(), node_b.ready())
    allow_loopback_ice()

    def client(url: str, like: Client | None = None) -> Client:
        made = Client(url, like.profile if like is not None else None)
        clients.append(made)
        return made

    alice = client(node_a.url)
    await alice.signup("alice")
    bob_on_a = client(node_a.url)
    await bob_on_a.signup("bob")
    await befriend(alice, bob_on_a)  # peer to peer: no relay between contacts
    carol = client(node_b.url)
    await carol.signup("carol")
    dave = client(node_a.url)
    await dave.signup("dave")
    token = await alice.token()

    async with (
        Line(alice) as a,
        Line(client(node_b.url, bob_on_a)) as b,
        Line(carol) as c,
        Line(dave) as d,
        aiohttp.ClientSession() as http,
    ):
        for line in (a, b, c, d):
            await line.open()
        call_id = await _place(a, b, "bob")
        caller, callee = Peer(a), Peer(b)
        try:
            await caller.offer(call_id)
            await callee.answer(call_id)
            await caller.answered()
            await _media_flows(caller, callee)

            owned_valkey.kill()
            down_until = time.monotonic() + OUTAGE_S
            # REST: a typed 503 with Retry-After, on both nodes, never a 500 or a hang.
            for node in (node_a, node_b):
                async with asyncio.timeout(5):
                    status, body, retry_after = await _problem(http, node.url, token)
                assert status == 503, body
                assert body["code"] == "unavailable"
                assert body["status"] == 503
                assert retry_after.isdigit()
                async with asyncio.timeout(5):
                    assert await _status(http, f"{node.url}/readyz") == 503
                    assert await _status(http, f"{node.url}/healthz") == 200
            # WebSocket: a message that needs the store gets a typed error; the socket stays.
            await c.send(m.Invite(handle="dave"))
            error = await c.expect(m.Error, within=5)
            assert error.code == "unavailable"
            # Signing in needs the store: refused with a typed error, then close 1013.
            async with Line(alice) as again:
                with pytest.raises(LineRefused, match="unavailable"):
                    await again.open()
                with pytest.raises(LineClosed):
                    await again.receive(within=5)
                assert again.close_code == WSCloseCode.TRY_AGAIN_LATER
            # The call's media flows on while the store stays down.
            while time.monotonic() < down_until:
                await _media_flows(caller, callee, within=5)
                await asyncio.sleep(0.5)
            for line in (a, b, c, d):
                await _call_goes_on(line)

            owned_valkey.start()
            back = time.monotonic()
            # Within the bound: REST works, and a new call across the nodes can be placed.
            async with asyncio.timeout(RECOVERY_S):
                while True:
                    if (await _problem(http, node_b.url, token))[0] == 200:
                        break
                    await asyncio.sleep(0.1)
                # Both nodes listening again (readyz covers the cross-node channel): a node
                # still resubscribing would miss what the other publishes to it meanwhile.
                for node in (node_a, node_b):
                    while True:
                        if await _status(http, f"{node.url}/readyz") == 200:
                            break
                        await asyncio.sleep(0.1)
            async with asyncio.timeout(back + RECOVERY_S - time.monotonic()):
                new_call = await _place_when_back(c, d, "dave")
            # Nothing ended the old call or told either side its peer was lost.
            await asyncio.sleep(JUDGED_BY_S)
            for line in (a, b):
                await _call_goes_on(line)
            await _media_flows(caller, callee)
            await a.send(m.Hangup(call_id=call_id))
            ended = await b.expect(m.Ended)
            assert (ended.call_id, ended.reason) == (call_id, "hangup")
            # Lifecycle webhooks resume by themselves: events of both calls arrive.
            await until(lambda: _has(receiver, call_id, "ended"), within=WEBHOOKS_BACK_S)
            await until(lambda: _has(receiver, new_call, "answered"), within=WEBHOOKS_BACK_S)
        finally:
            await caller.close()
            await callee.close()

    # Each node warned about the outage once, not once per request, heartbeat or write.
    for node in (node_a, node_b):
        warnings = [line["msg"] for line in node.log_lines() if line.get("level") == "WARNING"]
        assert len(warnings) == 1, warnings
        assert "store is unreachable" in str(warnings[0])


async def test_a_frozen_store_gets_a_503_within_the_command_timeout(
    owned_valkey: ValkeyProcess, sfu: EmbeddedMedia, tmp_path: Path, clients: list[Client]
) -> None:
    """A store that keeps its connections open and never answers (SIGSTOP: frozen, or cut
    off by a partition) must not hang requests: they fail after the command timeout."""
    node = LoggedNode("frozen", owned_valkey.url, sfu, tmp_path / "frozen.log")
    try:
        await node.ready()
        alice = Client(node.url)
        clients.append(alice)
        await alice.signup("alice")
        token = await alice.token()
        async with aiohttp.ClientSession() as http:
            owned_valkey.pause()
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_S + 5):
                    status, body, _ = await _problem(http, node.url, token)
                assert (status, body["code"]) == (503, "unavailable")
                async with asyncio.timeout(2):
                    assert await _status(http, f"{node.url}/healthz") == 200
                    assert await _status(http, f"{node.url}/readyz") == 503
            finally:
                owned_valkey.resume()
            async with asyncio.timeout(RECOVERY_S):
                while True:
                    if (await _problem(http, node.url, token))[0] == 200:
                        break
                    await asyncio.sleep(0.1)
    finally:
        node.stop()
