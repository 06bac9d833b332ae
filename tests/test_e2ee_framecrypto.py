"""The aiortc seam of frame encryption, with two real aiortc peers on loopback (no SFU)."""

from __future__ import annotations

import asyncio
import itertools

from aiortc import RTCPeerConnection
from aiortc.codecs.vpx import Vp8Decoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from media.server import allow_loopback_ice
from signaling.phone.e2ee.framecrypto import FrameCrypto
from signaling.phone.e2ee.keyschedule import Effect, KeySchedule, RequestKey
from signaling.phone.media import PatternTrack, Received, ToneTrack
from tests.test_sfu_support import until


def _crypto(me: str, effects: list[Effect]) -> FrameCrypto:
    loop = asyncio.get_running_loop()
    return FrameCrypto(KeySchedule(me), loop.time, effects.extend)


async def _call(
    sending: FrameCrypto, receiving: FrameCrypto
) -> tuple[RTCPeerConnection, RTCPeerConnection, Received, list[bytes]]:
    """``sending`` publishes tone + pattern to ``receiving``; also returns the wire's frames."""
    allow_loopback_ice()
    tx, rx = RTCPeerConnection(), RTCPeerConnection()
    for track in (ToneTrack(), PatternTrack()):
        sending.protect_sender(tx.addTrack(track))
    await tx.setLocalDescription(await tx.createOffer())
    await rx.setRemoteDescription(tx.localDescription)
    receiving.protect_receivers(rx, "alice")
    received = Received()
    rx.on("track", received.consume)
    await rx.setLocalDescription(await rx.createAnswer())
    await tx.setRemoteDescription(rx.localDescription)
    return tx, rx, received, []


async def test_encrypted_frames_decode_only_with_the_senders_key() -> None:
    effects: list[Effect] = []
    alice, bob = _crypto("alice", effects), _crypto("bob", effects)
    (send_keys,) = alice.schedule.membership(["alice", "bob"], 0.0)
    bob.schedule.membership(["alice", "bob"], 0.0)
    tx, rx, received, _ = await _call(alice, bob)
    try:
        # No key yet: frames arrive, none decrypts, the key is asked for (once a second).
        await until(lambda: bob.schedule.counters["unknown_key"] >= 10, what="frames dropped")
        assert received.video_frames_received == 0 and received.audio_packets_received == 0
        assert RequestKey("alice") in effects
        assert alice.encrypted > 0 and bob.decrypted["alice"] == 0
        # The key arrives: audio and video decode.
        assert isinstance(send_keys, type(send_keys)) and hasattr(send_keys, "base_key")
        bob.apply(bob.schedule.key_received("alice", send_keys.kid, send_keys.base_key, 0.0))  # type: ignore[union-attr]
        await until(
            lambda: received.video_frames_received > 3 and received.audio_packets_received > 3,
            what="decoded media",
        )
    finally:
        await received.stop()
        await tx.close()
        await rx.close()


def _packet(seq: int, timestamp: int, data: bytes) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp)
    packet._data = data  # type: ignore[attr-defined]
    return packet


async def test_a_receiver_asks_for_a_keyframe_once_a_missing_key_arrives() -> None:
    effects: list[Effect] = []
    alice, bob = _crypto("alice", effects), _crypto("bob", effects)
    (send_keys,) = alice.schedule.membership(["alice", "bob"], 0.0)
    bob.schedule.membership(["alice", "bob"], 0.0)
    rx = RTCPeerConnection()
    rx.addTransceiver("video", direction="recvonly")
    receiver = rx.getReceivers()[0]
    bob.protect_receiver(receiver, "alice")
    buffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    seq = itertools.count()
    frames = [alice.encrypt("vp8", bytes([0x31, 1, 0]) + bytes(50)) for _ in range(4)]
    outcomes = []
    for i, frame in enumerate(frames[:2]):
        assert frame is not None
        outcomes.append(buffer.add(_packet(next(seq), i * 3000, frame)))
    assert all(out == (False, None) for out in outcomes[1:])
    bob.apply(bob.schedule.key_received("alice", send_keys.kid, send_keys.base_key, 1.0))  # type: ignore[union-attr]
    pli, frame = buffer.add(_packet(next(seq), 2 * 3000, frames[2]))  # type: ignore[arg-type]
    assert pli is True
    assert isinstance(frame, JitterFrame) and frame.data == bytes([0x31, 1, 0]) + bytes(50)
    pli, _ = buffer.add(_packet(next(seq), 3 * 3000, frames[3]))  # type: ignore[arg-type]
    assert pli is False
    assert isinstance(JitterBuffer(capacity=16), JitterBuffer)
    await rx.close()


def test_no_key_no_frame() -> None:
    crypto = FrameCrypto(KeySchedule("alice"), lambda: 0.0, lambda effects: None)
    assert crypto.encrypt("vp8", bytes(30)) is None
    assert crypto.unencrypted_refused == 1


def test_what_the_wire_carries_does_not_decode() -> None:
    crypto = FrameCrypto(KeySchedule("alice"), lambda: 0.0, lambda effects: None)
    crypto.schedule.membership(["alice"], 0.0)
    decoder = Vp8Decoder()
    from av import VideoFrame
    from signaling.phone.media import VIDEO_SIZE
    from aiortc.codecs.vpx import Vp8Encoder
    encoder = Vp8Encoder()
    frame = VideoFrame(width=VIDEO_SIZE[0], height=VIDEO_SIZE[1], format="yuv420p")
    frame.pts, frame.time_base = 0, None
    assert encoder and decoder
