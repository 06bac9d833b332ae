"""Every aiortc private the SFU relies on, checked against the pinned version.

An aiortc or av upgrade must fail here, loudly, before it fails as silent media loss.
"""

from __future__ import annotations

import inspect

import aiortc
import av
from aiortc import (
    RTCCertificate,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcpeerconnection import RTCPeerConnection
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from media.bundle import Numbering, shape_offer
from media.forwarding import Kind
from media.peer import PlaceholderTrack, new_peer_connection, parse_sdp
from media.server import allow_loopback_ice
from media.shield import dtls_transports


def test_versions_are_pinned() -> None:
    assert aiortc.__version__ == "1.16.0"
    assert av.__version__ == "18.1.0"


def _params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_dtls_transport_seams() -> None:
    for name, params in (
        ("_handle_rtp_data", ["self", "data", "arrival_time_ms"]),
        ("_handle_rtcp_data", ["self", "data"]),
        ("_send_rtp", ["self", "data"]),
    ):
        method = getattr(RTCDtlsTransport, name)
        assert inspect.iscoroutinefunction(method), name
        assert _params(method) == params, name
    # Decrypted packets reach the handlers through ``self``: instance attributes override them.
    source = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "data = self._rx_srtp.unprotect(data)" in source
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in source
    assert "await self._handle_rtcp_data(data)" in source
    assert "self.transport._recv()" in source


def test_sender_report_seam() -> None:
    assert inspect.iscoroutinefunction(RTCRtpSender._send_rtcp)
    assert _params(RTCRtpSender._send_rtcp) == ["self", "packets"]
    source = inspect.getsource(RTCRtpSender._run_rtcp)
    assert "RtcpSrPacket(" in source and "await self._send_rtcp(packets)" in source
    assert "self.__lsr = " in source
    rtt = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "self.__lsr == report.lsr" in rtt
    assert set(inspect.signature(RtcpSenderInfo).parameters) == {
        "ntp_timestamp", "rtp_timestamp", "packet_count", "octet_count",
    }  # fmt: skip
    assert "sender_info" in inspect.signature(RtcpSrPacket).parameters
    # the sender's RTP loop only ever waits on track.recv(): a placeholder keeps it idle
    assert "await self.__track.recv()" in inspect.getsource(RTCRtpSender._next_encoded_frame)


def test_answer_side_transceivers_are_reused_by_kind() -> None:
    source = inspect.getsource(RTCPeerConnection.setRemoteDescription)
    assert "t.kind == media.kind and t.mid in [None, media.rtp.muxId]" in source
    assert "transceiver._preferred_codecs" in source
    assert _params(RTCRtpTransceiver.setCodecPreferences) == ["self", "codecs"]


async def test_instances_have_the_attributes_we_touch() -> None:
    ice = RTCIceTransport(RTCIceGatherer())
    dtls = RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])
    assert dtls.transport is ice
    sender = RTCRtpSender(PlaceholderTrack(Kind.VIDEO), dtls)
    assert isinstance(sender._ssrc, int)
    assert "_RTCRtpSender__lsr" in vars(sender)
    assert "_RTCRtpSender__lsr_time" in vars(sender)
    await ice.stop()


def test_fast_send_path_matches_what_send_rtp_does() -> None:
    from aioice.ice import Connection, StunProtocol
    from aiortc.rtcdtlstransport import State

    send_rtp = inspect.getsource(RTCDtlsTransport._send_rtp)
    assert "self._state != State.CONNECTED" in send_rtp
    assert "data = self._tx_srtp.protect(data)" in send_rtp
    assert "await self.transport._send(data)" in send_rtp
    assert State.CONNECTED
    sendto = inspect.getsource(Connection.sendto)
    assert "active_pair = self._nominated.get(component)" in sendto
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    assert "self.transport.sendto(data, addr)" in inspect.getsource(StunProtocol.send_data)
    ice = RTCIceTransport(RTCIceGatherer())
    assert ice._send == ice._connection.send and isinstance(ice._connection._nominated, dict)


def test_shield_seams() -> None:
    """media.shield filters datagrams in front of aioice and wraps the SRTP receive session."""
    import pylibsrtp
    from aioice import stun
    from aioice.ice import CandidatePair, Connection, StunProtocol

    received = inspect.getsource(StunProtocol.datagram_received)
    assert "message = stun.parse_message(data)" in received
    assert "self.receiver.data_received(data, self.local_candidate.component)" in received
    assert _params(StunProtocol.datagram_received) == ["self", "data", "addr"]
    # DTLS/SRTP never parse as STUN (first byte >= 4): the shield hands them on itself.
    assert "self.receiver = receiver" in inspect.getsource(StunProtocol.__init__)
    assert _params(Connection.data_received) == ["self", "data", "component"]
    assert _params(stun.parse_message) == ["data"]
    connection = Connection(ice_controlling=True)
    assert isinstance(connection._check_list, list) and isinstance(connection._nominated, dict)
    assert isinstance(connection._protocols, list)
    assert "self._nominated[pair.component] = pair" in inspect.getsource(Connection.check_complete)
    # pairs are added (check_incoming, add_remote_candidate) or removed only on nomination
    assert "self._check_list.remove(p)" in inspect.getsource(Connection.check_complete)
    assert isinstance(CandidatePair.remote_addr, property)
    # the receive loop: which first bytes are DTLS / SRTP, and the only error it catches
    recv = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "first_byte > 19 and first_byte < 64" in recv
    assert "first_byte > 127 and first_byte < 192 and self._rx_srtp" in recv
    assert "data = self._rx_srtp.unprotect_rtcp(data)" in recv
    assert "except pylibsrtp.Error as exc:" in recv
    assert "self._ssl.recv(1500)" in recv
    setup = inspect.getsource(RTCDtlsTransport._setup_srtp)
    assert "self._rx_srtp = Session(rx_policy)" in setup
    assert 'self.emit("statechange")' in inspect.getsource(RTCDtlsTransport._set_state)
    # pylibsrtp's buffer: longer packets raise ValueError, which the loop does not catch
    assert 'ffi.new("char[]", 1500)' in inspect.getsource(pylibsrtp.Session.__init__)
    # the peer connection reports "checking" synchronously from the ICE transport's start()
    start = inspect.getsource(RTCIceTransport.start)
    assert start.index('self.__setState("checking")') < start.index("self._connection.connect()")


def test_frame_encryption_seams() -> None:
    """signaling/sdk/e2ee/framecrypto.py: the encoder a sender uses, the jitter buffer a
    receiver decodes from."""
    from aiortc import RTCRtpReceiver
    from aiortc.codecs.opus import OpusEncoder
    from aiortc.codecs.vpx import Vp8Encoder
    from aiortc.jitterbuffer import JitterBuffer, JitterFrame

    # Sending: an encoder already set is used as is, and only ever through encode() / pack().
    frame = inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert "if self.__encoder is None:\n            self.__encoder = get_encoder(codec)" in frame
    assert "None, self.__encoder.encode, data, force_keyframe" in frame
    assert "payloads, timestamp = self.__encoder.pack(data)" in frame
    assert "self.__encoder: Optional[Encoder] = None" in inspect.getsource(RTCRtpSender.__init__)
    # ... and reset only once the sender's RTP loop is over, which runs once per sender.
    assert inspect.getsource(RTCRtpSender._run_rtp).count("self.__encoder = None") == 1
    assert "if not self.__started:" in inspect.getsource(RTCRtpSender.send)
    # VP8 hands the whole encoded frame to _packetize (encode and pack); Opus returns packets.
    assert "payloads = self._packetize(data_to_send, self.picture_id)" in inspect.getsource(
        Vp8Encoder.encode
    )
    assert "payloads = self._packetize(bytes(packet), self.picture_id)" in inspect.getsource(
        Vp8Encoder.pack
    )
    assert _params(Vp8Encoder._packetize) == ["buffer", "picture_id"]
    assert "return [bytes(p) for p in packets]" in inspect.getsource(OpusEncoder.encode)
    assert "return [bytes(packet)], timestamp" in inspect.getsource(OpusEncoder.pack)
    # Receiving: every depayloaded packet goes through the jitter buffer's add(), whose frames
    # are the only thing queued for the decoder thread, and whose flag sends a PLI.
    handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)" in handle
    assert "if pli_flag:\n            await self._send_rtcp_pli(packet.ssrc)" in handle
    assert "self.__decoder_queue.put((codec, encoded_frame))" in handle
    init = inspect.getsource(RTCRtpReceiver.__init__)
    assert init.count("self.__jitter_buffer = JitterBuffer(") == 2
    assert _params(JitterBuffer.add) == ["self", "packet"]
    assert _params(JitterFrame) == ["data", "timestamp"]


def test_udp_mux_seams() -> None:
    """media.udpmux: a connection gathers on the node's shared socket through an instance
    ``get_component_candidates``, with a username fragment we set before it is read."""
    from aioice import stun
    from aioice.candidate import Candidate, candidate_foundation, candidate_priority
    from aioice.ice import Connection, StunProtocol
    from aiortc import RTCIceParameters

    gather = inspect.getsource(Connection.gather_candidates)
    assert "self._local_candidates_start = True" in gather
    assert "self.get_component_candidates(component=component, addresses=addresses)" in gather
    assert "get_host_addresses(" in gather
    assert _params(Connection.get_component_candidates) == [
        "self", "component", "addresses", "timeout",
    ]  # fmt: skip
    # what aioice does with a host socket, which the mux does for it
    components = inspect.getsource(Connection.get_component_candidates)
    assert "lambda: StunProtocol(self), local_addr=(address, 0)" in components
    assert "protocol.local_candidate = Candidate(" in components
    assert "self._protocols += host_protocols" in components
    assert {"foundation", "component", "transport", "priority", "host", "port", "type"} <= set(
        inspect.signature(Candidate).parameters
    )
    assert _params(candidate_foundation) == [
        "candidate_type",
        "candidate_transport",
        "base_address",
    ]
    assert _params(candidate_priority) == ["candidate_component", "candidate_type", "local_pref"]
    # the username fragment: read from the attribute when SDP is made and checks are validated
    connection = Connection(ice_controlling=False)
    assert connection.local_username == connection._local_username
    assert "usernameFragment=self._connection.local_username" in inspect.getsource(
        RTCIceGatherer.getLocalParameters
    )
    assert RTCIceParameters  # the SDP's ice-ufrag comes from getLocalParameters
    valid = inspect.getsource(Connection._valid_username)
    assert "self.local_username" in valid
    # a protocol's socket is only ever its ``transport``: sendto, close, and the closed future
    assert "self.transport.sendto(bytes(message), addr)" in inspect.getsource(
        StunProtocol.send_stun
    )
    assert "self.transport.close()" in inspect.getsource(StunProtocol.close)
    assert "self.receiver.protocol_lost(self)" in inspect.getsource(StunProtocol.connection_lost)
    assert "await protocol.close()" in inspect.getsource(Connection.close)
    # checks we send carry the transaction id the mux routes responses by
    assert "self.transactions[request.transaction_id] = transaction" in inspect.getsource(
        StunProtocol.request
    )
    assert _params(stun.Message.check_message_integrity) == ["self", "key"]
    assert 'message.check_message_integrity(self.local_password.encode("utf8"))' in (
        inspect.getsource(Connection.request_received)
    )


def test_direct_receive_seams() -> None:
    """media.peer.receive_directly replaces ``Connection.data_received`` on the instance (the
    queue aiortc's receive coroutine reads) and unprotects SRTP as ``_recv_next`` would."""
    from aioice.ice import Connection, StunProtocol
    from aiortc.rtp import is_rtcp

    assert "self._queue.put_nowait((data, component))" in inspect.getsource(
        Connection.data_received
    )
    assert "self.receiver.data_received(data, self.local_candidate.component)" in (
        inspect.getsource(StunProtocol.datagram_received)
    )
    # aiortc's own test for RTCP, which the direct path mirrors (second byte 192-208)
    assert "msg[1] >= 192 and msg[1] <= 208" in inspect.getsource(is_rtcp)
    recv = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "if is_rtcp(data):" in recv
    assert "data = self._rx_srtp.unprotect(data)" in recv
    assert "self._rx_srtp: Session = None" in inspect.getsource(RTCDtlsTransport.__init__)


def test_bundle_renegotiation_seams() -> None:
    """One connection per participant (media/bundling.py, media/bundle.py)."""
    create = inspect.getsource(RTCPeerConnection.createOffer)
    # existing sections described by mid in m-line order, new ones appended unless stopped
    assert "transceiver = self.__getTransceiverByMid(mid)" in create
    assert "lambda x: x.mid is None and not x.stopped" in create
    assert "direction=transceiver.direction" in create
    # aiortc renumbers every section in each offer: why shape_offer puts the numbering back
    assert "transceiver._codecs = filter_preferred_codecs(" in create
    assert "transceiver._headerExtensions = HEADER_EXTENSIONS[transceiver.kind][:]" in create
    # a transceiver added later joins the first one's transport under max-bundle
    created = inspect.getsource(RTCPeerConnection._RTCPeerConnection__createTransceiver)  # type: ignore[attr-defined]
    assert "RTCBundlePolicy.MAX_BUNDLE" in created
    assert "dtlsTransport = self.__transceivers[0].receiver.transport" in created
    # setLocalDescription keeps our shaped offer's DTLS role: only fingerprints are refreshed
    add = inspect.getsource(aiortc.rtcpeerconnection.add_transport_description)
    assert "if media.dtls is None:" in add
    assert "media.dtls.fingerprints = dtlsTransport.getLocalParameters().fingerprints" in add
    # the answer's role is applied to the (same) transport: the client keeps its role
    remote = inspect.getsource(RTCPeerConnection.setRemoteDescription)
    assert 'role="server" if media.dtls.role == "client" else "client"' in remote
    # re-adding candidates of a later answer is a no-op once candidates ended
    add_candidate = inspect.getsource(RTCIceTransport.addRemoteCandidate)
    assert "if not self.__iceGatherer._remote_candidates_end:" in add_candidate
    assert "stopped" in dir(RTCRtpTransceiver) and hasattr(RTCRtpTransceiver, "stop")
    assert "direction" in dir(RTCRtpTransceiver)


async def test_a_bundled_connection_renegotiates_on_one_transport() -> None:
    """aiortc 1.16 as the SFU uses it: an answered connection makes an offer that adds
    sendonly sections on the same DTLS transport; a retired one goes inactive."""
    allow_loopback_ice()
    client = RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    sfu = new_peer_connection(bundle=True)
    try:
        client.addTransceiver("audio", direction="sendonly")
        await client.setLocalDescription(await client.createOffer())
        sfu.addTransceiver("audio", direction="recvonly")
        await sfu.setRemoteDescription(client.localDescription)
        await sfu.setLocalDescription(await sfu.createAnswer())
        await client.setRemoteDescription(sfu.localDescription)
        numbering = Numbering.of(
            parse_sdp(client.localDescription.sdp), parse_sdp(sfu.localDescription.sdp)
        )
        added = [
            sfu.addTransceiver(PlaceholderTrack(kind), direction="sendonly")
            for kind in (Kind.AUDIO, Kind.VIDEO)
        ]
        assert len(dtls_transports(sfu)) == 1
        offer = shape_offer((await sfu.createOffer()).sdp, numbering, set())
        await sfu.setLocalDescription(RTCSessionDescription(sdp=offer, type="offer"))
        assert [t.mid for t in added] == ["1", "2"]
        described = parse_sdp(sfu.localDescription.sdp)
        assert [m.direction for m in described.media] == ["recvonly", "sendonly", "sendonly"]
        assert "a=setup:actpass" in offer
        # one payload type per codec across the bundle, the client's own kept
        opus = {
            c.payloadType for m in described.media for c in m.rtp.codecs if "opus" in c.mimeType
        }
        assert len(opus) == 1
        await client.setRemoteDescription(sfu.localDescription)
        await client.setLocalDescription(await client.createAnswer())
        await sfu.setRemoteDescription(client.localDescription)
        assert sfu.signalingState == "stable" and len(dtls_transports(sfu)) == 1
        added[0].direction = "inactive"
        offer = shape_offer((await sfu.createOffer()).sdp, numbering, {"1"})
        assert [m.direction for m in parse_sdp(offer).media] == ["recvonly", "inactive", "sendonly"]
    finally:
        await client.close()
        await sfu.close()


async def test_padding_probe_seams() -> None:
    """media/probing.py pads on a subscriber's RTX stream: our downlink offers pair each video
    SSRC with an RTX SSRC (``a=ssrc-group:FID``, the sender's ``_rtx_ssrc``), and an aiortc
    subscriber feeds an empty RTX packet to its REMB estimator and then drops it (it never
    reaches the jitter buffer or the decoder)."""
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    from media.peer import codec_preferences

    pc = new_peer_connection()
    try:
        transceiver = pc.addTransceiver(PlaceholderTrack(Kind.VIDEO), direction="sendonly")
        transceiver.setCodecPreferences(codec_preferences(Kind.VIDEO, rtx=True))
        offer = await pc.createOffer()
        [video] = parse_sdp(offer.sdp).media
        [group] = video.ssrc_group
        sender = transceiver.sender
        assert (group.semantic, group.items) == ("FID", [sender._ssrc, sender._rtx_ssrc])
        assert any(c.mimeType.lower() == "video/rtx" for c in video.rtp.codecs)
    finally:
        await pc.close()
    handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    feed = handle.index("self.__remote_bitrate_estimator.add(")
    assert "payload_size=len(packet.payload) + packet.padding_size" in handle
    drop = handle.index("len(packet.payload) < 2")
    assert feed < drop < handle.index("self.__jitter_buffer.add(packet)")
