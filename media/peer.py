"""aiortc adapter: each participant's own RTCPeerConnection does ICE, DTLS and SRTP; we move RTP.

Seams into aiortc 1.16.0 (pinned by tests/test_sfu_aiortc_internals.py):

* ``RTCDtlsTransport._handle_rtp_data(data, arrival_time_ms)`` and ``_handle_rtcp_data(data)``
  receive packets right after SRTP unprotect. On an uplink we replace both on the instance, so
  aiortc's receivers never depayload, jitter-buffer or decode anything.
* ``RTCDtlsTransport._send_rtp(data)`` protects with that leg's SRTP context and sends on its
  ICE pair: the downlink send path, and the way PLIs / receiver reports reach a publisher.
* ``RTCRtpSender._send_rtcp(packets)`` is wrapped on downlink senders so their periodic sender
  report carries our counters and a current RTP/NTP mapping (aiortc fills it only when its own
  encoder sends), and ``_RTCRtpSender__lsr`` is set to match so aiortc's RTT estimate works.
* Hostile datagrams are filtered and counted below aiortc by ``media.shield``.
* Fast path (``FastSend``): for a nominated plain-UDP ICE pair, forwarded packets are protected
  with ``RTCDtlsTransport._tx_srtp`` and written with the pair's datagram transport directly —
  what ``_send_rtp`` does, minus four coroutine layers per packet; on the node's shared socket
  (``media.udpmux``) they are queued and the forwarding pass flushes them with one ``sendmmsg``.
  Relayed (TURN) pairs and anything unexpected fall back to ``_send_rtp``.
* Direct receive (``receive_directly``): an uplink's ``Connection.data_received`` (where aioice
  queues every non-STUN datagram for aiortc's receive coroutine) is replaced on the instance;
  SRTP (not SRTCP) of a connected leg is unprotected with ``RTCDtlsTransport._rx_srtp`` and
  handed to the forwarder right there, in the datagram callback. DTLS and SRTCP still take
  aiortc's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pylibsrtp
from aioice.ice import CandidatePair, StunProtocol
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc import clock as aiortc_clock
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket
from aiortc.sdp import SessionDescription

from media import errors
from media.forwarding import CLOCK_RATE, Kind, Leg, Source
from media.sendmmsg import BatchSender, Destination
from media.shield import dtls_transports
from media.simulcast_sdp import accept_simulcast, answered_extensions, simulcast_sections
from media.udpmux import SharedProtocol, UdpMux

MIME = {Kind.AUDIO: "audio/opus", Kind.VIDEO: "video/vp8"}

RtpHandler = Callable[[bytes], Awaitable[None]]


def codec_preferences(kind: Kind, *, rtx: bool = False) -> list[RTCRtpCodecCapability]:
    """Opus and VP8 only: both legs must carry the same codec byte for byte.

    ``rtx`` also offers VP8 retransmissions on their own SSRC. On uplinks we never forward
    them: a browser without RTX sends its bandwidth-probing padding as empty packets on the
    media SSRC itself, and an aiortc subscriber hands an empty packet to its VP8 decoder as a
    frame, which flushes the decoder for good. With RTX the padding goes to the RTX SSRC. On
    downlinks the RTX stream carries the SFU's own padding probes (``media.probing``).
    """
    wanted = {MIME[kind], "video/rtx"} if rtx and kind is Kind.VIDEO else {MIME[kind]}
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() in wanted]


class PlaceholderTrack(MediaStreamTrack):
    """A downlink sender's track that never yields a frame, so aiortc never encodes."""

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind.value
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await self._never
        raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Published:
    kind: Kind
    ssrc: int
    payload_type: int
    extensions: dict[str, int]
    rids: tuple[str, ...] = ()  # simulcast: layers lowest first, SSRCs learnt by RID


def parse_sdp(text: str) -> SessionDescription:
    try:
        return SessionDescription.parse(text)
    except Exception as exc:  # aiortc's parser raises assorted errors on bad input
        raise errors.InvalidSdp(f"unparseable SDP: {type(exc).__name__}") from exc


def _primary_ssrc(media: Any) -> int | None:
    """The media SSRC of an m-section: the first a=ssrc that is not an RTX/FEC repair stream."""
    repairs = {int(item) for g in media.ssrc_group for item in g.items[1:]}
    for described in media.ssrc:
        if described.ssrc not in repairs:
            return int(described.ssrc)
    return None


def _extensions(media: Any) -> dict[str, int]:
    return {ext.uri: ext.id for ext in media.rtp.headerExtensions}


def published_streams(offer: SessionDescription, answer: SessionDescription) -> list[Published]:
    """What an uplink will send: SSRCs from the offer, payload types and ids from our answer."""
    out = []
    for offered, answered in zip(offer.media, answer.media, strict=False):
        if answered.kind not in ("audio", "video") or answered.direction not in (
            "recvonly",
            "sendrecv",
        ):
            continue
        ssrc = _primary_ssrc(offered)
        payload_type = answered.rtp.codecs[0].payloadType if answered.rtp.codecs else None
        if ssrc is None or payload_type is None:
            continue
        out.append(Published(Kind(answered.kind), ssrc, payload_type, _extensions(answered)))
    return out


def downlink_legs(local: SessionDescription, answer: SessionDescription | None) -> list[Leg]:
    """Our sending SSRC per kind (from our offer) with the codec and ids the answer accepted."""
    legs = []
    for i, ours in enumerate(local.media):
        if ours.kind not in ("audio", "video") or not ours.ssrc or not ours.rtp.codecs:
            continue
        theirs = answer.media[i] if answer is not None and i < len(answer.media) else ours
        payload_type = theirs.rtp.codecs[0].payloadType if theirs.rtp.codecs else None
        if payload_type is None:
            continue
        ssrc = _primary_ssrc(ours) or ours.ssrc[0].ssrc
        rtx_pt = answered_rtx(theirs, payload_type)
        rtx_ssrc = _rtx_ssrc(ours, ssrc) if rtx_pt is not None else None
        legs.append(
            Leg(
                Kind(ours.kind), ssrc, payload_type, _extensions(theirs),
                rtx_ssrc, rtx_pt if rtx_ssrc is not None else None,
            )
        )  # fmt: skip
    return legs


def answered_rtx(theirs: Any, payload_type: int) -> int | None:
    """The payload type of the RTX codec an answer accepted for ``payload_type``, or None."""
    for codec in theirs.rtp.codecs:
        if codec.mimeType.lower() == "video/rtx" and codec.parameters.get("apt") == payload_type:
            return int(codec.payloadType)
    return None


def _rtx_ssrc(ours: Any, ssrc: int) -> int | None:
    """The RTX SSRC our offer paired with ``ssrc`` (``a=ssrc-group:FID``)."""
    for group in ours.ssrc_group:
        if group.semantic == "FID" and len(group.items) == 2 and int(group.items[0]) == ssrc:
            return int(group.items[1])
    return None


def intercept_uplink(dtls: RTCDtlsTransport, on_rtp: RtpHandler, on_rtcp: RtpHandler) -> None:
    """Take decrypted RTP/RTCP away from aiortc's receivers (no depacketising, no decoding)."""

    async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:
        await on_rtp(data)

    async def handle_rtcp(data: bytes) -> None:
        await on_rtcp(data)

    dtls._handle_rtp_data = handle_rtp  # type: ignore[method-assign]
    dtls._handle_rtcp_data = handle_rtcp  # type: ignore[method-assign]


def receive_directly(dtls: RTCDtlsTransport, on_rtp: Callable[[bytes], None]) -> None:
    """Forward an uplink's SRTP from the datagram callback: no queue, no coroutine per packet.

    Install before ``media.shield`` guards the transport: the shield delivers to whatever
    ``data_received`` the connection has then."""
    connection = dtls.transport._connection
    queue = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        session = dtls._rx_srtp
        # SRTP, not SRTCP (RFC 5761: an RTCP packet type in the second byte), on a keyed leg
        if (
            session is None
            or not 127 < data[0] < 192
            or 191 < data[1] < 209
            or dtls._state is not State.CONNECTED
        ):
            queue(data, component)
            return
        try:
            clear = session.unprotect(data)
        except pylibsrtp.Error:
            return  # counted by the shield's session wrapper, dropped as aiortc would
        on_rtp(clear)

    connection.data_received = data_received  # type: ignore[method-assign]


def intercept_downlink_rtcp(dtls: RTCDtlsTransport, on_rtcp: RtpHandler) -> None:
    """See a subscriber's RTCP first (PLI/FIR/NACK/RR), then let aiortc's senders have it too:
    they only compute RTT from it, because they have no history or encoder to act on."""
    original = dtls._handle_rtcp_data

    async def handle_rtcp(data: bytes) -> None:
        await on_rtcp(data)
        await original(data)

    dtls._handle_rtcp_data = handle_rtcp  # type: ignore[method-assign]


@dataclass(slots=True)
class SendState:
    """What a downlink sender's report must say about the packets we forwarded on it."""

    clock_rate: int
    packets: int = 0
    octets: int = 0
    last_timestamp: int = 0
    last_at: float = 0.0  # loop time of the last packet


def patch_sender_reports(sender: RTCRtpSender, state: SendState) -> None:
    """Rewrite aiortc's periodic SR with our counters and an extrapolated RTP timestamp."""
    original = sender._send_rtcp
    loop = asyncio.get_running_loop()

    async def send_rtcp(packets: list[Any]) -> None:
        for i, packet in enumerate(packets):
            if isinstance(packet, RtcpSrPacket) and packet.ssrc == sender._ssrc:
                if state.packets == 0:
                    packets = packets[:i] + packets[i + 1 :]
                    break
                ntp = aiortc_clock.current_ntp_time()
                elapsed = max(0.0, loop.time() - state.last_at)
                rtp_ts = (state.last_timestamp + int(elapsed * state.clock_rate)) & 0xFFFFFFFF
                packet.sender_info = RtcpSenderInfo(
                    ntp_timestamp=ntp,
                    rtp_timestamp=rtp_ts,
                    packet_count=state.packets & 0xFFFFFFFF,
                    octet_count=state.octets & 0xFFFFFFFF,
                )
                sender._RTCRtpSender__lsr = (ntp >> 16) & 0xFFFFFFFF  # type: ignore[attr-defined]
        if packets:
            await original(packets)

    sender._send_rtcp = send_rtcp  # type: ignore[method-assign]


def new_peer_connection(bundle: bool = False) -> RTCPeerConnection:
    """No STUN/TURN: the SFU's host candidates are what clients reach. ``bundle``: one
    connection for all a participant sends and receives (media/bundling.py); max-bundle makes
    every section added later share the first one's transport, whatever its kind."""
    policy = RTCBundlePolicy.MAX_BUNDLE if bundle else RTCBundlePolicy.BALANCED
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=policy))


async def close_peer(pc: RTCPeerConnection) -> None:
    """Close ``pc``, even one a refused offer left half-negotiated: aiortc's ``close()`` stops
    the transceivers' transports in order and raises AttributeError at the first that never
    got one, leaving the rest open (and the caller's typed error replaced by a 500)."""
    try:
        await pc.close()
    except AttributeError:
        for transceiver in pc.getTransceivers():
            dtls = transceiver.receiver.transport
            if dtls is not None:
                await dtls.stop()
                await dtls.transport.stop()


def adopt_ice(pc: RTCPeerConnection, mux: UdpMux | None) -> None:
    """Put ``pc``'s ICE on the node's shared UDP port: after its transports are bundled and
    before ``createOffer``/``createAnswer`` read their username fragments."""
    if mux is not None:
        for dtls in dtls_transports(pc):
            mux.adopt(dtls.transport._connection)


async def answer_uplink(
    pc: RTCPeerConnection, offer_sdp: str, mux: UdpMux | None = None, only: Kind | None = None
) -> tuple[str, list[Published]]:
    """Accept a publisher's offer with recvonly Opus/VP8 transceivers; returns our answer.
    ``only``: the one section the offer must have (a shared screen is one video track)."""
    offer = parse_sdp(offer_sdp)
    if not any(m.kind in ("audio", "video") for m in offer.media):
        raise errors.InvalidSdp("the offer has no audio or video section")
    if only is not None and [m.kind for m in offer.media] != [only.value]:
        raise errors.InvalidSdp(f"this offer must have exactly one {only.value} section")
    for media in offer.media:
        if media.kind in ("audio", "video"):
            transceiver = pc.addTransceiver(media.kind, direction="recvonly")
            transceiver.setCodecPreferences(codec_preferences(Kind(media.kind), rtx=True))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        adopt_ice(pc, mux)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
    except errors.MediaError:
        raise
    except Exception as exc:  # aiortc raises ValueError/OperationError/InvalidStateError
        raise errors.InvalidSdp(f"cannot answer this offer: {exc}") from exc
    local = accept_simulcast(offer_sdp, pc.localDescription.sdp)  # issue 16: rids
    ours = parse_sdp(local)
    return local, published_streams(offer, ours) + simulcast_published(offer_sdp, ours)


def simulcast_published(offer_sdp: str, answer: SessionDescription) -> list[Published]:
    """The simulcast video tracks of an offer that ``accept_simulcast`` accepted."""
    out = []
    for section in simulcast_sections(offer_sdp):
        if section.index >= len(answer.media):
            continue
        answered = answer.media[section.index]
        if answered.direction not in ("recvonly", "sendrecv") or not answered.rtp.codecs:
            continue
        extensions = {**_extensions(answered), **answered_extensions(section)}
        payload_type = answered.rtp.codecs[0].payloadType
        if payload_type is not None:
            out.append(Published(Kind.VIDEO, 0, payload_type, extensions, section.rids))
    return out


async def offer_downlink(
    pc: RTCPeerConnection,
    kinds: tuple[Kind, ...] = (Kind.AUDIO, Kind.VIDEO),
    mux: UdpMux | None = None,
) -> tuple[str, dict[Kind, RTCRtpSender]]:
    """Our sendonly offer of ``kinds`` with placeholder tracks (candidates gathered inline)."""
    senders = {}
    for kind in kinds:
        transceiver = pc.addTransceiver(PlaceholderTrack(kind), direction="sendonly")
        transceiver.setCodecPreferences(codec_preferences(kind, rtx=True))
        senders[kind] = transceiver.sender
    adopt_ice(pc, mux)
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp, senders


class FastSend:
    """Synchronous SRTP protect + ``sendto`` on a connected leg's nominated host pair (queued
    in ``batch`` for one ``sendmmsg`` when the pair is on the node's shared socket)."""

    __slots__ = ("_batch", "_dtls", "_pair", "_send")

    def __init__(self, dtls: RTCDtlsTransport, batch: BatchSender | None = None) -> None:
        self._dtls = dtls
        self._batch = batch
        self._pair: CandidatePair | None = None
        self._send: Callable[[bytes], None] | None = None

    def resolve(self) -> Callable[[bytes], None] | None:
        """The send function for the current pair, or None: use the (async) slow path."""
        dtls = self._dtls
        if dtls._state is not State.CONNECTED or dtls._tx_srtp is None:
            return None
        pair = dtls.transport._connection._nominated.get(1)
        if pair is self._pair:
            return self._send
        self._pair, self._send = pair, None
        protocol = pair.protocol if pair is not None else None
        if pair is None or protocol is None or protocol.transport is None:
            return None
        addr, protect = pair.remote_addr, dtls._tx_srtp.protect
        batch = self._batch
        if type(protocol) is SharedProtocol and batch is not None:
            queue = batch.queue(protocol.owner.fd, protocol.owner.transport).append
            destination = Destination(addr)

            def send(packet: bytes) -> None:
                queue((protect(packet), destination))

        elif type(protocol) is StunProtocol:
            transport = protocol.transport

            def send(packet: bytes) -> None:
                transport.sendto(protect(packet), addr)

        else:
            return None
        self._send = send
        return send


@dataclass
class Uplink:
    room: str
    participant: str
    pc: RTCPeerConnection
    published: list[Published]
    source: Source = Source.CAMERA
    rtcp_ssrc: int = field(default_factory=lambda: secrets.randbits(32) or 1)

    @property
    def dtls(self) -> list[RTCDtlsTransport]:
        return dtls_transports(self.pc)

    async def send_rtcp(self, data: bytes) -> None:
        for dtls in self.dtls:
            with contextlib.suppress(ConnectionError):
                await dtls._send_rtp(data)
            return


@dataclass
class Downlink:
    id: str
    room: str
    subscriber: str
    publisher: str
    pc: RTCPeerConnection
    senders: dict[Kind, RTCRtpSender]
    offer: str
    created_at: float = 0.0  # loop time; an offer never answered is reaped after a while
    by_ssrc: dict[int, SendState] = field(default_factory=dict)
    transport: RTCDtlsTransport | None = None
    fast: FastSend | None = None
    #: On its subscriber's bundled connection (media/bundling.py): closing it closes no pc.
    shared: bool = False

    def prepare(self, batch: BatchSender | None = None) -> None:
        for kind, sender in self.senders.items():
            state = SendState(CLOCK_RATE[kind])
            self.by_ssrc[sender._ssrc] = state
            patch_sender_reports(sender, state)
        transports = dtls_transports(self.pc)
        self.transport = transports[0] if transports else None
        self.fast = FastSend(self.transport, batch) if self.transport is not None else None

    def send_now(self, packet: bytes, now: float) -> bool:
        """Forward one rewritten RTP packet, protected in this leg's SRTP context, without
        awaiting; False when only the async path (``send``) can send it now."""
        state = self.by_ssrc.get(int.from_bytes(packet[8:12], "big"))
        if state is not None:
            state.packets += 1
            state.octets += len(packet) - 12
            state.last_timestamp = int.from_bytes(packet[4:8], "big")
            state.last_at = now
        fast = self.fast.resolve() if self.fast is not None else None
        if fast is None:
            return False
        fast(packet)
        return True

    async def send(self, packet: bytes) -> None:
        """The slow path: aiortc's own ``_send_rtp`` (relayed pairs, not yet connected)."""
        if self.transport is not None:
            with contextlib.suppress(ConnectionError):
                await self.transport._send_rtp(packet)

    async def send_raw(self, packet: bytes) -> None:
        if self.transport is not None:
            with contextlib.suppress(ConnectionError):
                await self.transport._send_rtp(packet)
