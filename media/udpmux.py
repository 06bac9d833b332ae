"""One UDP port for every ICE connection of a media node, as Janus, LiveKit and mediasoup do.

aioice binds a socket per host address per connection (``Connection.get_component_candidates``);
a node with many legs then listens on as many ephemeral ports, which firewalls and Kubernetes
Services cannot expose. ``UdpMux`` binds one socket per host address, all on one port, and
*adopts* each connection before it gathers: the connection's ``get_component_candidates`` is
replaced on the instance by one that gives it a ``SharedProtocol`` per mux socket (aioice's own
``StunProtocol`` with a transport that writes to the shared socket) instead of new sockets.

Incoming datagrams are demultiplexed

* STUN requests by the ICE username fragment (the USERNAME attribute ``ours:theirs``; every
  adopted connection gets a fragment unique on the node), and the sender's address is bound to
  that connection once the request's MESSAGE-INTEGRITY verifies with its password;
* STUN responses by the transaction id of the check we sent (96 random bits), which binds the
  responder's address the same way;
* everything else (DTLS, SRTP) by the sender's address (local socket + remote address: the
  5-tuple), learned only from authenticated STUN as above. Datagrams from an address no
  connection owns are dropped and counted in ``media.shield.Dropped`` like the shield's own.

STUN goes to the ``SharedProtocol``'s ``datagram_received`` looked up on the instance (where
``media.shield``'s filter sits); DTLS and SRTP of a bound address straight to the connection's
``data_received``, with the shield's checks (size, first byte, source) made here: a source is
bound only by authenticated STUN, as the shield's candidate-pair addresses are. Seams are
pinned by tests/test_sfu_aiortc_internals.py. A worker process owns one ``UdpMux`` (its own
port from ``start``, or sockets bound for it, through ``serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import socket
import string
from collections import OrderedDict
from typing import Any

import aioice.ice
from aioice import stun
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol

from media.sendmmsg import BatchSender
from media.shield import MAX_DATAGRAM, Dropped

log = logging.getLogger("callbook.media")

#: Bytes of socket buffer each way: a burst of video to many subscribers must not overflow it.
SOCKET_BUFFER = 4 << 20
#: Our STUN checks in flight whose responses may come from a new address (a bounded memory).
MAX_TRANSACTIONS = 8192
UFRAG_ALPHABET = string.ascii_letters + string.digits

Address = tuple[str, int]


class SharedTransport(asyncio.DatagramTransport):
    """What a ``SharedProtocol`` sees as its socket: sends go to the shared one."""

    def __init__(self, owner: MuxSocket, protocol: SharedProtocol) -> None:
        super().__init__()
        self._owner = owner
        self._protocol = protocol
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        if len(data) >= 20 and data[0] == 0 and data[1] == 1:  # a STUN request: our check
            self._owner.mux.expect_response(bytes(data[8:20]), self._protocol)
        self._owner.transport.sendto(data, addr)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._owner.forget(self._protocol)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._owner.transport.get_extra_info(name, default)


class SharedProtocol(StunProtocol):
    """aioice's protocol for one connection on one mux socket (no socket of its own)."""

    def __init__(self, receiver: Connection, owner: MuxSocket) -> None:
        super().__init__(receiver)
        self.owner = owner
        self.connection_made(SharedTransport(owner, self))


class MuxSocket(asyncio.DatagramProtocol):
    """One bound socket of the mux: routes each datagram to the connection that owns it."""

    def __init__(self, mux: UdpMux, address: str) -> None:
        self.mux = mux
        self.address = address
        self.transport: asyncio.DatagramTransport
        self.fd = -1
        self.by_addr: dict[Address, SharedProtocol] = {}
        self._addrs_of: dict[SharedProtocol, set[Address]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno()

    def bind(self, addr: Address, protocol: SharedProtocol) -> None:
        previous = self.by_addr.get(addr)
        if previous is protocol:
            return
        if previous is not None:
            self._addrs_of.get(previous, set()).discard(addr)
        self.by_addr[addr] = protocol
        self._addrs_of.setdefault(protocol, set()).add(addr)

    def forget(self, protocol: SharedProtocol) -> None:
        for addr in self._addrs_of.pop(protocol, ()):
            if self.by_addr.get(addr) is protocol:
                del self.by_addr[addr]
        self.mux.forget(protocol)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self._route(data, addr)
        except Exception:
            # The transport would close on an exception from here, and with it every
            # connection of the node: one leg's failure stays that leg's.
            self.mux.failed += 1
            if self.mux.failed == 1:
                log.exception("handling a datagram failed (further failures only counted)")

    def _route(self, data: bytes, addr: Any) -> None:
        if len(addr) != 2:
            addr = (addr[0], addr[1])
        first = data[0] if data else -1
        if 127 < first < 192 or 19 < first < 64:  # SRTP/SRTCP or DTLS (RFC 7983)
            protocol = self.by_addr.get(addr)
            if len(data) > MAX_DATAGRAM:
                self.mux.dropped.oversized += 1
            elif protocol is None:
                self.mux.dropped.foreign_source += 1
            else:
                # Where aioice's protocol (and media.shield's filter) would hand it: the
                # address was bound by authenticated STUN, which is what the shield checks.
                protocol.receiver.data_received(data, protocol.local_candidate.component)
        elif 0 <= first < 4:
            self._stun(data, addr)
        else:
            self.mux.dropped.not_media += 1

    def _stun(self, data: bytes, addr: Address) -> None:
        try:
            message = stun.parse_message(data)
        except Exception:  # assorted errors on garbage attributes
            self.mux.dropped.malformed_stun += 1
            return
        if message.message_class == stun.Class.REQUEST:
            protocol = self._authenticated(message)
        elif message.message_class in (stun.Class.RESPONSE, stun.Class.ERROR):
            protocol = self.mux.responder(message.transaction_id) or self.by_addr.get(addr)
        else:  # an indication (a keepalive): aioice ignores it, from a known address only
            protocol = self.by_addr.get(addr)
        if protocol is None or protocol.owner is not self:
            self.mux.dropped.foreign_source += 1
            return
        if message.message_class in (stun.Class.REQUEST, stun.Class.RESPONSE):
            self.bind(addr, protocol)
        protocol.datagram_received(data, addr)

    def _authenticated(self, message: stun.Message) -> SharedProtocol | None:
        """The connection a check is for, if it carries that connection's credentials."""
        username = message.attributes.get("USERNAME")
        if not isinstance(username, str):
            return None
        protocol = self.mux.by_ufrag(username.split(":", 1)[0], self)
        if protocol is None:
            return None
        key = protocol.receiver.local_password.encode("utf8")
        return protocol if message.check_message_integrity(key) else None

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors of one remote must not end anyone's connection


class UdpMux:
    """The node's ICE sockets: one per host address, all on ``port``."""

    def __init__(self, dropped: Dropped | None = None) -> None:
        self.dropped = dropped if dropped is not None else Dropped()
        self.port = 0
        self.sockets: list[MuxSocket] = []
        self.sender = BatchSender()
        self.failed = 0  # datagrams whose handling raised (a bug: logged once)
        self._connections: dict[str, Connection] = {}
        self._protocols: dict[Connection, dict[MuxSocket, SharedProtocol]] = {}
        self._transactions: OrderedDict[bytes, SharedProtocol] = OrderedDict()

    async def start(
        self, port: int = 0, addresses: list[str] | None = None, ipv6: bool = False
    ) -> UdpMux:
        """Bind ``port`` (0: any free one, then the same one on every other address); with
        ``ipv6`` on the host's IPv6 addresses too (and ``::1`` when loopback ICE is on)."""
        hosts = addresses or host_addresses(ipv6)
        bound = []
        try:
            for address in hosts:
                try:
                    bound.append(_bind(address, port or self.port))
                except OSError:
                    if not bound and port == 0:
                        raise
                    continue  # another address: that port is taken there
                self.port = bound[-1].getsockname()[1]
        except BaseException:
            for sock in bound:
                sock.close()
            raise
        if not bound:
            raise OSError(f"cannot bind UDP port {port} on any host address")
        return await self.serve(bound)

    async def serve(self, sockets: list[socket.socket]) -> UdpMux:
        """Use sockets bound elsewhere (a node's supervisor binding for a worker process), all
        on one port; each one's address is what its candidates name."""
        loop = asyncio.get_running_loop()
        for sock in sockets:
            address, self.port = sock.getsockname()[:2]
            sock.setblocking(False)
            mux_socket = MuxSocket(self, address)
            await loop.create_datagram_endpoint(functools.partial(_same, mux_socket), sock=sock)
            self.sockets.append(mux_socket)
        return self

    def close(self) -> None:
        for mux_socket in self.sockets:
            mux_socket.transport.close()
        self.sockets.clear()

    # --- connections ------------------------------------------------------------------------

    def adopt(self, connection: Connection) -> None:
        """Make ``connection`` gather on the mux's sockets (before it gathers; idempotent)."""
        adopted = connection.get_component_candidates
        if getattr(adopted, "udpmux", None) is self or connection._local_candidates_start:
            return
        # Registered when it gathers: a transport aiortc drops unused (BUNDLE) leaves no trace.
        connection._local_username = self._unique_ufrag()

        async def get_component_candidates(
            component: int,
            addresses: list[str],
            timeout: int = 5,  # noqa: ASYNC109 (aioice's signature)
        ) -> list[Candidate]:
            return self._candidates(connection, component)

        get_component_candidates.udpmux = self  # type: ignore[attr-defined]
        connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]

    def _candidates(self, connection: Connection, component: int) -> list[Candidate]:
        self._connections[connection.local_username] = connection
        out = []
        for mux_socket in self.sockets:
            protocol = SharedProtocol(connection, mux_socket)
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", mux_socket.address),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=mux_socket.address,
                port=self.port,
                type="host",
            )
            self._protocols.setdefault(connection, {})[mux_socket] = protocol
            connection._protocols.append(protocol)
            out.append(protocol.local_candidate)
        return out

    def _unique_ufrag(self) -> str:
        while True:
            ufrag = "".join(secrets.choice(UFRAG_ALPHABET) for _ in range(8))
            if ufrag not in self._connections:
                return ufrag

    def by_ufrag(self, ufrag: str, mux_socket: MuxSocket) -> SharedProtocol | None:
        connection = self._connections.get(ufrag)
        if connection is None:
            return None
        return self._protocols.get(connection, {}).get(mux_socket)

    def expect_response(self, transaction_id: bytes, protocol: SharedProtocol) -> None:
        self._transactions[transaction_id] = protocol
        if len(self._transactions) > MAX_TRANSACTIONS:
            self._transactions.popitem(last=False)

    def responder(self, transaction_id: bytes) -> SharedProtocol | None:
        protocol = self._transactions.get(transaction_id)
        if protocol is not None and transaction_id in protocol.transactions:
            return protocol
        return None

    def forget(self, protocol: SharedProtocol) -> None:
        connection = protocol.receiver
        protocols = self._protocols.get(connection)
        if protocols is None:
            return
        protocols.pop(protocol.owner, None)
        if not protocols:
            del self._protocols[connection]
            if self._connections.get(connection.local_username) is connection:
                del self._connections[connection.local_username]

    # --- stats ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "udp_port": self.port,
            "udp_sockets": len(self.sockets),
            "ice_connections": len(self._protocols),
            "remote_addresses": sum(len(s.by_addr) for s in self.sockets),
            "udp_failed": self.failed,
        }


def host_addresses(ipv6: bool = False) -> list[str]:
    """aioice's host addresses (looked up now: ``media.server.allow_loopback_ice`` may have
    wrapped it, adding 127.0.0.1), IPv4 first; with ``ipv6`` also IPv6 ones, and ``::1`` as
    well when 127.0.0.1 is there: a node bound to an IPv6 or dual-stack address on a
    loopback-only machine takes ICE over ``::1`` too. An address that cannot be bound (no
    IPv6 on the host) is skipped by ``start``."""
    found = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=ipv6)
    hosts = [a for a in found if ":" not in a] + [a for a in found if ":" in a]
    if ipv6 and "127.0.0.1" in hosts and "::1" not in hosts and socket.has_ipv6:
        hosts.append("::1")
    return hosts


def _same(mux_socket: MuxSocket) -> MuxSocket:
    return mux_socket


def _bind(address: str, port: int) -> socket.socket:
    ipv6 = ":" in address
    sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if ipv6:  # the IPv4 addresses have sockets of their own on the same port
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock
