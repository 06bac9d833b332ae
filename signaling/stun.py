"""A STUN server out of the box (RFC 5389 binding requests only), so that devices behind NATs
learn their public address without any configuration and connect peer to peer.

It answers a binding request with the address it came from (XOR-MAPPED-ADDRESS) and nothing
else: no authentication, no TURN, no other method. Anything that is not a well-formed binding
request gets no answer at all, so the port reflects nothing to a spoofed source but a
40-byte reply to a 20-byte or longer request. A deployment with coturn hands out coturn's
STUN/TURN instead (``GET /v1/turn``).
"""

from __future__ import annotations

import asyncio
import binascii
import ipaddress
import logging
import struct
from collections.abc import AsyncIterator
from typing import cast

from aiohttp import web

from signaling.appkeys import CONFIG

log = logging.getLogger("callbook.stun")

MAGIC_COOKIE = 0x2112A442
_HEADER = struct.Struct("!HHI12s")
_BINDING_REQUEST = 0x0001
_BINDING_SUCCESS = 0x0101
_XOR_MAPPED_ADDRESS = 0x0020
_FINGERPRINT = 0x8028
_FINGERPRINT_XOR = 0x5354554E

#: The port the server's STUN answers on, or None when it does not run.
STUN_PORT = web.AppKey("stun_port", int)


def answer(datagram: bytes, source: tuple[str, int]) -> bytes | None:
    """The binding success response to a binding request from ``source``; None for anything
    else (responses, indications, other methods, garbage)."""
    if len(datagram) < _HEADER.size:
        return None
    kind, length, cookie, transaction = _HEADER.unpack_from(datagram)
    if kind != _BINDING_REQUEST or cookie != MAGIC_COOKIE:
        return None
    if length != len(datagram) - _HEADER.size or length % 4:
        return None
    address = ipaddress.ip_address(source[0].split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    key = struct.pack("!I", MAGIC_COOKIE) + (transaction if address.version == 6 else b"")
    packed = bytes(a ^ b for a, b in zip(address.packed, key, strict=False))
    value = struct.pack("!BBH", 0, 1 if address.version == 4 else 2, source[1] ^ MAGIC_COOKIE >> 16)
    attribute = struct.pack("!HH", _XOR_MAPPED_ADDRESS, 4 + len(packed)) + value + packed
    header = _HEADER.pack(_BINDING_SUCCESS, len(attribute) + 8, MAGIC_COOKIE, transaction)
    crc = binascii.crc32(header + attribute) ^ _FINGERPRINT_XOR
    return header + attribute + struct.pack("!HHI", _FINGERPRINT, 4, crc)


class StunProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = answer(data, (str(addr[0]), int(addr[1])))
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier reply (the asker is gone): nothing to do.
        pass


async def stun_ctx(app: web.Application) -> AsyncIterator[None]:
    """Serve STUN on ``config.stun_port`` of ``config.host`` while the application runs, unless
    the deployment has TURN (its devices get coturn's STUN/TURN)."""
    config = app[CONFIG]
    transport: asyncio.DatagramTransport | None = None
    if config.stun_port is not None and not config.turn_uris:
        host = config.host or "0.0.0.0"
        try:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                StunProtocol, local_addr=(host, config.stun_port)
            )
        except OSError as exc:
            # Another server on this machine has it (two nodes side by side): they still run,
            # and this one's devices get no STUN server from it.
            log.warning("STUN not served: UDP port %d: %s", config.stun_port, exc.strerror)
        else:
            app[STUN_PORT] = transport.get_extra_info("sockname")[1]
            log.info("STUN answering on UDP port %d", app[STUN_PORT])
    try:
        yield
    finally:
        if transport is not None:
            transport.close()


def uri(advertised_host: str | None, request_host: str, port: int) -> str:
    """The ``stun:`` URI devices are given: the advertised host, else the host they used to
    reach this server (its Host header, without its port)."""
    host = advertised_host or _hostname(request_host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"stun:{host}:{port}"


def _hostname(header: str) -> str:
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header
