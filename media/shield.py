"""Hostile datagrams stop below aiortc: what may reach its DTLS/SRTP receive loop, and counters.

aioice hands every datagram that does not parse as STUN, from any address, to aiortc's DTLS
receive loop. That loop catches only SRTP authentication errors: an SRTP-range datagram longer
than pylibsrtp's 1,500-byte buffer raises ``ValueError``, the loop ends and the leg's DTLS
transport closes for good (an empty one raises ``IndexError`` the same way). So every socket of
a leg gets a filter in front of aioice (``StunProtocol.datagram_received``, replaced on the
instance) that lets through only

* STUN that parses (aioice authenticates connectivity checks itself),
* DTLS (first byte 20-63) or SRTP/SRTCP (128-191) of at most 1,500 bytes, from the remote
  address of one of that socket's ICE candidate pairs (a signalled candidate, or one learned
  through an authenticated connectivity check; a browser may send on another validated pair
  than the one aioice nominated),

and the SRTP session is wrapped so failed authentication (forged or corrupted packets from that
address) is counted too. Seams are pinned by tests/test_sfu_aiortc_internals.py. The softphone
(SDK, CLI bots) has its own copy, ``signaling/sdk/shield.py``: the SDK installs without ``media``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pylibsrtp
from aioice import stun
from aioice.ice import CandidatePair, Connection, StunProtocol
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport, State

#: pylibsrtp unprotects into a 1,500-byte buffer; DTLS records are read 1,500 bytes at a time.
MAX_DATAGRAM = 1500


@dataclass
class Dropped:
    """Datagrams dropped before or inside aiortc's receive loop, by reason."""

    not_media: int = 0  # empty, or neither STUN, DTLS nor SRTP
    oversized: int = 0  # DTLS/SRTP-range and longer than MAX_DATAGRAM
    foreign_source: int = 0  # not from the leg's ICE pair
    malformed_stun: int = 0
    srtp_auth: int = 0  # failed SRTP/SRTCP authentication or replay check

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def guard_protocol(protocol: StunProtocol, dropped: Dropped) -> None:
    """Filter one socket's datagrams before aioice sees them (idempotent).

    DTLS and SRTP go straight to the connection's ``data_received``, which is where aioice's
    own ``datagram_received`` puts them after failing to parse them as STUN (an exception per
    packet we save), so the filter costs less than it adds.
    """
    original = protocol.datagram_received
    if getattr(original, "shielded", False):
        return
    connection: Connection = protocol.receiver
    component = protocol.local_candidate.component
    nominated = connection._nominated
    deliver = connection.data_received
    # Remote addresses of this socket's candidate pairs, rebuilt when the check list or the
    # nominated pair changes (aioice only adds pairs, and removes some when it nominates).
    allowed: set[tuple[str, int]] = set()
    built_for: tuple[int, CandidatePair | None] = (-1, None)

    def from_pair(addr: tuple[Any, ...]) -> bool:
        nonlocal allowed, built_for
        pairs = connection._check_list
        key = (len(pairs), nominated.get(component))
        if key != built_for:
            allowed = {p.remote_addr for p in pairs if p.protocol is protocol}
            built_for = key
        return (addr if len(addr) == 2 else addr[:2]) in allowed

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        first = data[0] if data else -1
        if 127 < first < 192 or 19 < first < 64:  # SRTP/SRTCP or DTLS (RFC 7983)
            if len(data) > MAX_DATAGRAM:
                dropped.oversized += 1
            elif from_pair(addr):
                deliver(data, component)
            else:
                dropped.foreign_source += 1
        elif 0 <= first < 4:  # STUN: aioice authenticates checks itself
            try:
                stun.parse_message(data)
            except Exception:  # assorted errors on garbage attributes
                dropped.malformed_stun += 1
                return
            original(data, addr)
        else:
            dropped.not_media += 1

    datagram_received.shielded = True  # type: ignore[attr-defined]
    protocol.datagram_received = datagram_received  # type: ignore[method-assign,assignment]


class CountingSession:
    """An SRTP session whose failed unprotects are counted (aiortc drops them silently)."""

    __slots__ = ("_dropped", "_session")

    def __init__(self, session: pylibsrtp.Session, dropped: Dropped) -> None:
        self._session = session
        self._dropped = dropped

    def unprotect(self, packet: bytes) -> bytes:
        try:
            return self._session.unprotect(packet)
        except pylibsrtp.Error:
            self._dropped.srtp_auth += 1
            raise

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        try:
            return self._session.unprotect_rtcp(packet)
        except pylibsrtp.Error:
            self._dropped.srtp_auth += 1
            raise


def guard_transport(dtls: RTCDtlsTransport, dropped: Dropped) -> None:
    """Shield a DTLS transport's sockets now, and count SRTP failures once it has keys."""
    connection = dtls.transport._connection
    for protocol in connection._protocols:
        guard_protocol(protocol, dropped)

    def on_state() -> None:
        session = dtls._rx_srtp
        if dtls._state is State.CONNECTED and isinstance(session, pylibsrtp.Session):
            dtls._rx_srtp = CountingSession(session, dropped)  # type: ignore[assignment]

    dtls.on("statechange", on_state)


def dtls_transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    """The distinct DTLS transports of a connection (one when bundled)."""
    seen: dict[int, RTCDtlsTransport] = {}
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        seen[id(transport)] = transport
    return list(seen.values())


def guard_peer_connection(pc: RTCPeerConnection, dropped: Dropped) -> None:
    """Shield every transport of ``pc`` as ICE starts checking: by then its candidates are
    gathered and its transports bundled, and no DTLS or SRTP has flowed yet."""

    def on_ice_state() -> None:
        if pc.iceConnectionState == "checking":
            for dtls in dtls_transports(pc):
                guard_transport(dtls, dropped)

    pc.on("iceconnectionstatechange", on_ice_state)
