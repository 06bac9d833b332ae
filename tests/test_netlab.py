"""The network lab itself: its NATs map as real ones do, its firewall and loss drop, and it
leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket

import pytest

from tests.netlab import Host, Lab, lab_hosts_left, lab_reason, unavailable

pytestmark = [pytest.mark.netlab, pytest.mark.slow]

#: Long enough for a datagram between namespaces on a busy machine; a dropped one never comes.
DROPPED_AFTER_S = 2.0


async def _bind(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    sock.setblocking(False)
    return sock


async def _receive(sock: socket.socket, timeout_s: float) -> tuple[str, int]:
    with sock:
        _, source = await asyncio.wait_for(
            asyncio.get_running_loop().sock_recvfrom(sock, 64), timeout_s
        )
    return source[0], source[1]


async def _send(address: str, ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for port in ports:
            await loop.sock_sendto(sock, b"hello", (address, port))


async def _seen_from(
    server: Host, client: Host, destinations: int, timeout_s: float = 10.0
) -> list[tuple[str, int]]:
    """One UDP socket in ``client`` sends to ``destinations`` ports of ``server``; returns the
    source address each of them saw."""
    ports = list(range(40001, 40001 + destinations))
    socks = [await server.run(_bind(server.address, port)) for port in ports]
    await client.run(_send(server.address, ports))
    return list(await asyncio.gather(*(server.run(_receive(s, timeout_s)) for s in socks)))


async def test_a_cone_nat_keeps_one_mapping_and_a_symmetric_one_does_not(netlab: Lab) -> None:
    inet = netlab.internet()
    server = netlab.host("server")
    netlab.link(inet, server)
    cone, cone_router = netlab.behind_nat(inet, "a", "cone")
    symmetric, symmetric_router = netlab.behind_nat(inet, "b", "symmetric")

    seen = await _seen_from(server, cone, 3)
    assert {address for address, _ in seen} == {cone_router.address}  # translated
    assert len({port for _, port in seen}) == 1, seen  # endpoint-independent mapping

    seen = await _seen_from(server, symmetric, 3)
    assert {address for address, _ in seen} == {symmetric_router.address}
    assert len({port for _, port in seen}) == 3, seen  # a new port per destination


async def _accept_one(address: str) -> asyncio.Future[bool]:
    accepted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def on_client(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        if not accepted.done():
            accepted.set_result(True)

    server = await asyncio.start_server(on_client, address, 40100)
    accepted.add_done_callback(lambda _: server.close())
    return accepted


async def _connect(address: str) -> None:
    _, writer = await asyncio.wait_for(asyncio.open_connection(address, 40100), 10)
    writer.close()


async def test_the_firewall_drops_udp_and_loss_drops_its_share(netlab: Lab) -> None:
    inet = netlab.internet()
    server = netlab.host("server")
    netlab.link(inet, server)
    device, router = netlab.behind_nat(inet, "a")
    rule = router.loss(router.uplink, 1.0)
    with pytest.raises(TimeoutError):
        await _seen_from(server, device, 1, DROPPED_AFTER_S)
    assert router.dropped() == 1
    router.restore(rule)
    assert (await _seen_from(server, device, 1))[0][0] == router.address

    router.block_udp()
    with pytest.raises(TimeoutError):
        await _seen_from(server, device, 1, DROPPED_AFTER_S)
    accepted = await server.run(_accept_one(server.address))
    await device.run(_connect(server.address))  # TCP still goes through
    assert await server.run(asyncio.wait_for(accepted, 10))


async def test_a_failing_test_leaves_no_namespace_behind() -> None:
    reason = lab_reason()
    if reason is not None:
        pytest.skip(reason)
    lab = Lab()
    with pytest.raises(RuntimeError, match="the test failed"):
        try:
            lab.link(lab.host("x", router=True), lab.host("y"))
            assert len(list(lab_hosts_left(lab))) == 2
            raise RuntimeError("the test failed")
        finally:
            await lab.close()
    assert list(lab_hosts_left(lab)) == []


def test_without_root_the_lab_says_why_it_cannot_be_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert unavailable() == "the network lab needs root (network namespaces, iptables)"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "iptables" else "/bin/x")
    assert unavailable() == "the network lab needs `iptables` (Debian: iproute2, iptables)"


async def _burst(address: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for _ in range(count):
            await loop.sock_sendto(sock, bytes(1000), (address, 40200))


async def _count_for(sock: socket.socket, seconds: float) -> int:
    loop = asyncio.get_running_loop()
    received = 0
    with sock, contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                await loop.sock_recv(sock, 2048)
                received += 1
    return received


async def test_a_bandwidth_cap_holds_a_burst_back(netlab: Lab) -> None:
    inet = netlab.internet()
    server = netlab.host("server")
    netlab.link(inet, server)
    device, router = netlab.behind_nat(inet, "a")
    router.cap(router.uplink, 100)  # 100 kbit/s: 12.5 kB/s, a 16 kB bucket
    sock = await server.run(_bind(server.address, 40200))
    await device.run(_burst(server.address, 200))  # 200 kB at once
    # Whatever is not through after the queue's 200 ms of latency is dropped, not late.
    received = await server.run(_count_for(sock, DROPPED_AFTER_S))
    assert 0 < received < 100, received
    assert "tbf" in router.sh("tc", "qdisc", "show", "dev", router.uplink)
