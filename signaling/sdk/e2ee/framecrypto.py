"""The seam between aiortc and SFrame: every aiortc private the SDK's encryption touches is here
(and pinned in tests/test_sfu_aiortc_internals.py).

aiortc 1.16 has no encoded-transform API. Sending, a sender's encoder is created lazily on its
first frame (``RTCRtpSender._next_encoded_frame``) unless one is already set: we set ours, a
``Vp8Encoder`` / ``OpusEncoder`` that encrypts each whole encoded frame before packetising it.
Receiving, ``RTCRtpReceiver._handle_rtp_packet`` hands every depayloaded packet to its jitter
buffer, which returns complete frames and whether to send a PLI: we wrap that buffer, so frames
are decrypted on the event loop before they are queued for the decoder thread, and a PLI goes out
when a missing key arrives. A frame that cannot be decrypted never reaches the decoder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from av.frame import Frame
from av.packet import Packet

from signaling.sdk.e2ee.keyschedule import Effect, KeyframeWanted, KeySchedule
from signaling.sdk.e2ee.sframe import Drop, FrameDropped, decrypt_frame, encrypt_frame, frame_kid

CODEC = {"audio": "opus", "video": "vp8"}


class FrameCrypto:
    """One device's frame encryption in one SFU call, around its ``KeySchedule``.

    ``clock`` gives the schedule's time; ``effects`` receives what decryption asks for (key
    requests), on the event loop. Keyframe requests for a sender whose key arrived late are
    handled here: call ``apply`` with the schedule's effects and it keeps those.
    """

    def __init__(
        self,
        schedule: KeySchedule,
        clock: Callable[[], float],
        effects: Callable[[list[Effect]], None],
    ) -> None:
        self.schedule = schedule
        self._clock = clock
        self._effects = effects
        self._buffers: dict[str, list[_DecryptingBuffer]] = {}
        #: Frames encrypted, and decrypted per sender participant.
        self.encrypted = 0
        self.decrypted: Counter[str] = Counter()
        self.unencrypted_refused = 0

    # --- sending ---------------------------------------------------------------------------

    def protect_sender(self, sender: RTCRtpSender) -> None:
        """Before negotiation: the sender's frames go out encrypted (or not at all)."""
        kind = sender.kind
        encoder = _EncryptingVp8Encoder(self) if kind == "video" else _EncryptingOpusEncoder(self)
        sender._RTCRtpSender__encoder = encoder  # type: ignore[attr-defined]

    def encrypt(self, codec: str, frame: bytes) -> bytes | None:
        """Runs in aiortc's encoder threads: reads the current key once, takes the next CTR."""
        send = self.schedule.send
        if send is None:
            # No key yet: send nothing rather than plaintext.
            self.unencrypted_refused += 1
            return None
        self.encrypted += 1
        return encrypt_frame(codec, send.frame_key, next(send.counter), frame)

    # --- receiving -------------------------------------------------------------------------

    def protect_receivers(self, pc: RTCPeerConnection, participant: str) -> None:
        """After ``setRemoteDescription`` of a downlink's offer, before any packet can arrive:
        its frames are decrypted as from ``participant``."""
        for transceiver in pc.getTransceivers():
            self.protect_receiver(transceiver.receiver, transceiver.kind, participant)

    def protect_receiver(self, receiver: RTCRtpReceiver, kind: str, participant: str) -> None:
        attribute = "_RTCRtpReceiver__jitter_buffer"
        inner = getattr(receiver, attribute)
        if isinstance(inner, _DecryptingBuffer):
            return
        buffer = _DecryptingBuffer(self, inner, CODEC[kind], participant)
        setattr(receiver, attribute, buffer)
        if kind == "video":
            self._buffers.setdefault(participant, []).append(buffer)

    def forget(self, participant: str) -> None:
        self._buffers.pop(participant, None)

    def apply(self, effects: list[Effect]) -> list[Effect]:
        """Act on keyframe requests; return the effects left for the caller (key messages)."""
        rest: list[Effect] = []
        for effect in effects:
            if isinstance(effect, KeyframeWanted):
                for buffer in self._buffers.get(effect.participant, []):
                    buffer.pli_due = True
            else:
                rest.append(effect)
        return rest

    def decrypt(self, codec: str, participant: str, data: bytes) -> bytes | None:
        now = self._clock()
        try:
            kid, ctr, cut, end = frame_kid(codec, data)
            key = self.schedule.receive_key(participant, kid, now)
            if key is None:
                raise FrameDropped(Drop.UNKNOWN_KEY)
            plain = decrypt_frame(key, data, ctr, cut, end)
        except FrameDropped as dropped:
            left = self.apply(self.schedule.dropped(participant, dropped.reason, now))
            if left:
                self._effects(left)
            return None
        self.decrypted[participant] += 1
        return plain


class _EncryptingVp8Encoder(Vp8Encoder):
    def __init__(self, crypto: FrameCrypto) -> None:
        super().__init__()
        self._crypto = crypto

    def _packetize(self, buffer: bytes, picture_id: int) -> list[bytes]:  # type: ignore[override]
        # ``encode`` and ``pack`` both hand the whole encoded frame here.
        sealed = self._crypto.encrypt("vp8", buffer) if buffer else None
        return Vp8Encoder._packetize(sealed, picture_id) if sealed is not None else []


class _EncryptingOpusEncoder(OpusEncoder):
    def __init__(self, crypto: FrameCrypto) -> None:
        super().__init__()
        self._crypto = crypto

    def _seal(self, payloads: list[bytes]) -> list[bytes]:
        sealed = (self._crypto.encrypt("opus", p) for p in payloads)
        return [s for s in sealed if s is not None]

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        payloads, timestamp = super().encode(frame, force_keyframe)
        return self._seal(payloads), timestamp

    def pack(self, packet: Packet[Any]) -> tuple[list[bytes], int]:
        payloads, timestamp = super().pack(packet)
        return self._seal(payloads), timestamp


class _DecryptingBuffer:
    """Stands in for a receiver's ``JitterBuffer``: same ``add``, decrypted frames out."""

    __slots__ = ("_codec", "_crypto", "_inner", "_participant", "pli_due")

    def __init__(
        self, crypto: FrameCrypto, inner: JitterBuffer, codec: str, participant: str
    ) -> None:
        self._crypto = crypto
        self._inner = inner
        self._codec = codec
        self._participant = participant
        self.pli_due = False

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = self._inner.add(packet)
        if self.pli_due:
            self.pli_due = False
            pli_flag = True
        if frame is None:
            return pli_flag, None
        plain = self._crypto.decrypt(self._codec, self._participant, frame.data)
        if plain is None:
            return pli_flag, None
        frame.data = plain
        return pli_flag, frame
