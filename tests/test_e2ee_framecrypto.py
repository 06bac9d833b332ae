"""The aiortc seam of frame encryption: two real aiortc peers on loopback (no SFU), and what a
decoder makes of the frames on the wire."""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from media.server import allow_loopback_ice
from signaling.sdk.e2ee.framecrypto import FrameCrypto
from signaling.sdk.e2ee.keyschedule import Effect, KeySchedule, RequestKey, SendKeys
from signaling.sdk.media import PatternTrack, Received, ToneTrack
from tests.e2ee_media import opus_periodicity, vp8_pictures
from tests.test_sfu_support import until


def _pair(effects: list[Effect]) -> tuple[FrameCrypto, FrameCrypto, SendKeys]:
    """Alice sends to Bob; Bob knows Alice is in the call but has no key of hers yet."""
    loop = asyncio.get_running_loop()
    alice = FrameCrypto(KeySchedule("alice"), loop.time, effects.extend)
    bob = FrameCrypto(KeySchedule("bob"), loop.time, effects.extend)
    (keys,) = alice.schedule.membership(["alice", "bob"], 0.0)
    bob.schedule.membership(["alice", "bob"], 0.0)
    assert isinstance(keys, SendKeys)
    return alice, bob, keys


async def test_encrypted_media_decodes_once_the_senders_key_arrives() -> None:
    effects: list[Effect] = []
    alice, bob, keys = _pair(effects)
    allow_loopback_ice()
    tx, rx = RTCPeerConnection(), RTCPeerConnection()
    received = Received()
    try:
        for track in (ToneTrack(), PatternTrack()):
            alice.protect_sender(tx.addTrack(track))
        await tx.setLocalDescription(await tx.createOffer())
        rx.on("track", received.consume)
        await rx.setRemoteDescription(tx.localDescription)
        bob.protect_receivers(rx, "alice")
        await rx.setLocalDescription(await rx.createAnswer())
        await tx.setRemoteDescription(rx.localDescription)
        await until(lambda: bob.schedule.counters["unknown_key"] >= 10, what="frames dropped")
        assert (received.audio_packets_received, received.video_frames_received) == (0, 0)
        assert RequestKey("alice") in effects and alice.encrypted > 0
        bob.apply(bob.schedule.key_received("alice", keys.kid, keys.base_key, 0.0))
        await until(
            lambda: received.video_frames_received > 3 and received.audio_packets_received > 3,
            what="decoded audio and video",
        )
        assert bob.decrypted["alice"] > 0
    finally:
        await received.stop()
        await tx.close()
        await rx.close()


def _packet(seq: int, data: bytes) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000)
    packet._data = data  # type: ignore[attr-defined]
    return packet


async def test_a_receiver_asks_for_a_keyframe_once_a_missing_key_arrives() -> None:
    effects: list[Effect] = []
    alice, bob, keys = _pair(effects)
    rx = RTCPeerConnection()
    rx.addTransceiver("video", direction="recvonly")
    receiver = rx.getReceivers()[0]
    bob.protect_receiver(receiver, "video", "alice")
    buffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    plain = bytes([0x31, 1, 0]) + bytes(50)
    frames = [alice.encrypt("vp8", plain) or b"" for _ in range(4)]
    # A frame completes when the next one starts: the first two complete without a key.
    assert [buffer.add(_packet(seq, frames[seq])) for seq in range(2)] == [(False, None)] * 2
    assert bob.schedule.counters["unknown_key"] == 1
    bob.apply(bob.schedule.key_received("alice", keys.kid, keys.base_key, 1.0))
    pli, frame = buffer.add(_packet(2, frames[2]))
    assert pli is True and isinstance(frame, JitterFrame) and frame.data == plain
    assert buffer.add(_packet(3, frames[3]))[0] is False
    await rx.close()


def test_without_a_key_nothing_is_sent() -> None:
    crypto = FrameCrypto(KeySchedule("alice"), lambda: 0.0, lambda effects: None)
    assert crypto.encrypt("vp8", bytes(30)) is None
    assert crypto.unencrypted_refused == 1


async def test_the_wire_carries_nothing_a_decoder_can_use() -> None:
    alice, bob, keys = _pair([])
    bob.schedule.key_received("alice", keys.kid, keys.base_key, 0.0)
    video, audio = PatternTrack(), ToneTrack()
    vp8, opus = Vp8Encoder(), OpusEncoder()
    sealed_video: list[bytes] = []
    sealed_audio: list[bytes] = []
    for index in range(15):
        payloads, _ = vp8.encode(await video.recv(), force_keyframe=index == 5)
        sealed_video.append(b"".join(vp8_depayload(p) for p in payloads))
    for _ in range(50):
        sealed_audio += OpusEncoder.encode(opus, await audio.recv())[0]
    sealed_audio = [alice.encrypt("opus", p) or b"" for p in sealed_audio]
    sealed_video = [alice.encrypt("vp8", f) or b"" for f in sealed_video]
    assert vp8_pictures(sealed_video) == 0
    assert abs(opus_periodicity(sealed_audio)) < 0.2
    opened_video = [bob.decrypt("vp8", "alice", f) or b"" for f in sealed_video]
    opened_audio = [bob.decrypt("opus", "alice", p) or b"" for p in sealed_audio]
    assert vp8_pictures(opened_video) == 15
    assert opus_periodicity(opened_audio) > 0.9
