"""One UDP port per media node (media/udpmux.py): every connection's ICE on it, a real call."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from media.config import parse_args
from media.control import MediaControl
from media.sendmmsg import BYTES_OFFSET, BatchSender, Destination
from media.udpmux import UdpMux
from tests.ports import free_port
from tests.test_group_calls import _udp_ports_of
from tests.test_sfu_support import Peer, sfu_process, until

NAMES = ["ann", "bob", "cy", "dee"]


def _flowing(peers: list[Peer]) -> bool:
    for peer in peers:
        for other in NAMES:
            if other != peer.name:
                audio, video = peer.decoded(other)
                if audio < 25 or video < 5:
                    return False
    return True


@pytest.mark.slow
async def test_a_group_call_uses_exactly_one_udp_port_of_the_media_node() -> None:
    port = free_port()
    async with (
        sfu_process("--udp-port", str(port), "--workers", "0") as sfu,
        MediaControl(sfu.url, sfu.secret) as control,
    ):
        room = f"room-{os.urandom(4).hex()}"
        await control.create_room(room)
        peers = [Peer(name, control, room) for name in NAMES]
        try:
            for peer in peers:
                await peer.publish()
            for peer in peers:
                for other in NAMES:
                    if other != peer.name:
                        await peer.subscribe(other)
            await until(lambda: _flowing(peers), limit_s=30, what="media among four")
            # 4 uplinks + 12 downlinks, each its own ICE connection, all on one port
            assert _udp_ports_of(sfu.pid) == {port}
            stats = await control.stats()
            assert stats["udp_port"] == port
            assert stats["ice_connections"] >= 16
            assert stats["uplinks"] == 4 and stats["downlinks"] == 12
            for peer in peers:
                assert peer.uplink is not None
                pair = peer.uplink.getTransceivers()[0].receiver.transport.transport
                assert pair._connection._nominated[1].remote_addr[1] == port
        finally:
            for peer in peers:
                await peer.close()
            await control.delete_room(room)
        # every connection closed with the room: the mux forgets them all
        deadline = asyncio.get_running_loop().time() + 15
        while (stats := await control.stats())["ice_connections"] or stats["remote_addresses"]:
            assert asyncio.get_running_loop().time() < deadline, stats
            await asyncio.sleep(0.05)


async def test_the_mux_binds_one_port_on_every_address_and_releases_it() -> None:
    mux = await UdpMux().start(0, ["127.0.0.1", "127.0.0.2"])
    try:
        assert mux.port > 0
        bound = {s.transport.get_extra_info("sockname") for s in mux.sockets}
        assert bound == {("127.0.0.1", mux.port), ("127.0.0.2", mux.port)}
    finally:
        mux.close()


async def test_sendmmsg_sends_a_batch_in_one_call() -> None:
    mux = await UdpMux().start(0, ["127.0.0.1"])
    receivers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for r in receivers:
            r.bind(("127.0.0.1", 0))
            r.settimeout(5)
        sender = BatchSender(enabled=True)
        shared = mux.sockets[0]
        queue = sender.queue(shared.fd, shared.transport)
        for i, r in enumerate(receivers):
            queue.append((bytes([128, i]) * 100, Destination(r.getsockname())))
        sender.flush()
        assert not queue
        assert sender.calls == 1 and sender.datagrams == 3
        for i, r in enumerate(receivers):
            data, source = r.recvfrom(2048)
            assert data == bytes([128, i]) * 100 and source == ("127.0.0.1", mux.port)
    finally:
        for r in receivers:
            r.close()
        mux.close()


def test_a_bytes_objects_data_is_where_sendmmsg_points() -> None:
    """The iovecs point into the queued bytes at id() + BYTES_OFFSET (CPython's layout)."""
    import ctypes

    for probe in (b"x", bytes(range(256)) * 5, os.urandom(1200)):
        assert ctypes.string_at(id(probe) + BYTES_OFFSET, len(probe)) == probe


def test_udp_port_flag_and_environment() -> None:
    assert parse_args(["--secret", "s"]).udp_port == 0
    assert parse_args(["--secret", "s", "--udp-port", "50000"]).udp_port == 50000
    assert parse_args(["--secret", "s", "--udp-port", "off"]).udp_port is None
    os.environ["CALLBOOK_MEDIA_UDP_PORT"] = "40123"
    try:
        assert parse_args(["--secret", "s"]).udp_port == 40123
    finally:
        del os.environ["CALLBOOK_MEDIA_UDP_PORT"]
    with pytest.raises(SystemExit):
        parse_args(["--secret", "s", "--udp-port", "70000"])
