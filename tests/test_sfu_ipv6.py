"""IPv6 on the media node's one UDP port (media/udpmux.py): a node bound to an IPv6 address takes
ICE over ``::1`` as well, on the same port as IPv4; real node process, real aiortc peers that
gather only ``::1``. Skipped where the loopback interface has no ``::1``."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aioice.ice
import pytest

from media.config import is_ipv6
from media.control import MediaControl
from media.sendmmsg import BatchSender, Destination
from media.udpmux import UdpMux, host_addresses
from tests.ports import free_port
from tests.test_sfu_support import Peer, until


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 on this machine")


def test_an_ipv6_or_dual_stack_host_turns_ipv6_ice_on() -> None:
    assert is_ipv6("::1") and is_ipv6("::") and is_ipv6("fd00::2")
    assert not is_ipv6("127.0.0.1") and not is_ipv6("0.0.0.0") and not is_ipv6("localhost")


@needs_ipv6
def test_ipv6_host_addresses_add_the_ipv6_loopback_when_loopback_ice_is_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def gather(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["fd00::9", "127.0.0.1"] if use_ipv6 else ["127.0.0.1"]

    monkeypatch.setattr(aioice.ice, "get_host_addresses", gather)
    assert host_addresses(ipv6=False) == ["127.0.0.1"]
    assert host_addresses(ipv6=True) == ["127.0.0.1", "fd00::9", "::1"]  # IPv4 first


@needs_ipv6
async def test_the_mux_binds_one_port_on_ipv4_and_ipv6() -> None:
    mux = await UdpMux().start(0, ["127.0.0.1", "::1"])
    try:
        bound = {s.transport.get_extra_info("sockname")[:2] for s in mux.sockets}
        assert bound == {("127.0.0.1", mux.port), ("::1", mux.port)}
    finally:
        mux.close()


@needs_ipv6
async def test_sendmmsg_sends_a_batch_to_an_ipv6_address() -> None:
    loop = asyncio.get_running_loop()
    received: list[bytes] = []
    receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    receiver.bind(("::1", 0))
    receiver.setblocking(False)
    sender, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("::1", 0), family=socket.AF_INET6
    )
    try:
        batch = BatchSender(enabled=True)
        fd = sender.get_extra_info("socket").fileno()
        destination = Destination(receiver.getsockname()[:2])
        queue = batch.queue(fd, sender)
        for i in range(3):
            queue.append((b"datagram-%d" % i, destination))
        batch.flush()
        deadline = time.monotonic() + 10
        while len(received) < 3 and time.monotonic() < deadline:
            try:
                received.append(receiver.recv(2048))
            except BlockingIOError:
                await asyncio.sleep(0.01)
        assert received == [b"datagram-0", b"datagram-1", b"datagram-2"]
        assert (batch.calls, batch.datagrams) == (1, 3)
    finally:
        sender.close()
        receiver.close()


@asynccontextmanager
async def _node(host: str, *args: str) -> AsyncIterator[MediaControl]:
    port, secret = free_port(), secrets.token_urlsafe(16)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media.server", "--host", host, "--port", str(port), *args,
        env={**os.environ, "CALLBOOK_MEDIA_SECRET": secret}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    control = MediaControl(f"http://[{host}]:{port}", secret)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if await control.health():
                    break
            except OSError:
                pass
            assert proc.returncode is None and time.monotonic() < deadline, "no media node"
            await asyncio.sleep(0.05)
        yield control
    finally:
        await control.close()
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _only_ipv6_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["::1"] if use_ipv6 else []


_only_ipv6_loopback.callbook_loopback = True  # type: ignore[attr-defined]  # not wrapped again


@needs_ipv6
@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "1"])
async def test_a_node_on_ipv6_takes_ice_over_the_ipv6_loopback_on_its_one_port(
    monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    udp_port = free_port()
    # The peers gather only ::1: a connection can only be an IPv6 one.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", _only_ipv6_loopback)
    async with _node("::1", "--workers", workers, "--udp-port", str(udp_port)) as control:
        room = f"room-{os.urandom(4).hex()}"
        await control.create_room(room)
        peers = [Peer(name, control, room) for name in ("ann", "bob")]
        try:
            for peer in peers:
                await peer.publish()
            await peers[0].subscribe("bob")
            await peers[1].subscribe("ann")

            def flowing() -> bool:
                audio, video = peers[0].decoded("bob")
                audio2, video2 = peers[1].decoded("ann")
                return min(audio, audio2) >= 25 and min(video, video2) >= 5

            await until(flowing, limit_s=60, what="media both ways over ::1")
            for peer in peers:
                legs = [peer.uplink, *(d.pc for d in peer.downlinks.values())]
                for pc in legs:
                    assert pc is not None
                    ice = pc.getTransceivers()[0].receiver.transport.transport
                    connection = ice._connection
                    offered = {(c.host, c.port) for c in connection.remote_candidates}
                    assert ("::1", udp_port) in offered
                    assert ("127.0.0.1", udp_port) in offered  # IPv4 on the same port
                    # Over IPv6 (the peer has only ::1), to the node's one port; the host's other
                    # IPv6 addresses are local too, so the pair may name one of them.
                    host, port = connection._nominated[1].remote_addr
                    assert ":" in host and port == udp_port
            stats = await control.stats()
            assert stats["forwarded_packets"] > 0
            if workers == "0":
                assert stats["udp_port"] == udp_port and stats["udp_sockets"] >= 2
        finally:
            for peer in peers:
                await peer.close()
