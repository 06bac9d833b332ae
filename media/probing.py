"""Padding probes: extra traffic that lets a subscriber's bandwidth estimate grow to the next
simulcast layer (as Janus, mediasoup and LiveKit do).

Pure: no I/O, time passed in. A receiver's REMB (GCC's AIMD) grows some 8 % a second and never
beyond about 1.5 x what it actually receives. A subscriber held on the low layer therefore earns
the next one slowly, and only by being tried on it (``simulcast.Prober``: a keyframe each time,
and a back-off when the trial ends too early). Instead, while the estimate is below what the
next layer up needs, the SFU fills the gap with RTP padding on the subscriber's RTX stream of
that video (its own sequence numbers: the media stream's continuity is untouched; receivers
drop empty RTX packets after feeding their estimator), stamped with the SFU's abs-send-time, so
that what the estimator counts stays some way above the estimate (``RAMP``). The estimate then
grows towards the target at the estimator's own pace, and the allocation moves up by itself
once it fits. A REMB that falls or losses over 2 % stop the probe, and the next one waits a
back-off (2 s doubling to 16 s).

Off unless the node is started with ``--padding-probes on``: in the network lab a capped
subscriber climbed back to the full layer slower with padding than with layer trials alone
(docs/benchmarks.md, "Simulcast"), as padding's losses and REMB falls kept restarting its
back-off.

``PaddingProbe.plan`` decides, a few times a second, how fast to pad; ``PaddingProbe.take``
says how many packets are due at each pacing step (a few every ~10 ms, never a burst).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Pad up to this much over what the next layer up costs: the allocation moves up with a
#: 15 % margin (``simulcast.UPGRADE_MARGIN``), and the estimate must pass it.
HEADROOM = 1.2
#: ... but no further than this much above the estimate. Chromium's estimator grows 8 % a
#: second only while what arrives exceeds the link capacity it once measured (by about three
#: deviations, some 10-15 %); below that it adds a few kbit/s a second. A link capped near the
#: estimate is overrun by this much only until a REMB falls or losses show, and the probe stops.
RAMP = 1.3
#: Never pad faster than this (a probe must not become the subscriber's main traffic).
MAX_PADDING_BPS = 2_000_000
#: Loss over this during a probe: the link cannot take more. Stop and back off.
PROBE_LOSS = 0.02
BACKOFF_S = 2.0
MAX_BACKOFF_S = 16.0
#: A probe that has run this long without its estimate reaching the target ends (and the next
#: waits the back-off): the link may be capped below the target without losing much.
MAX_PROBE_S = 30.0
#: Bytes of padding per packet: the most one RTP padding count byte can say.
PADDING_SIZE = 255
#: Padding is paced in steps: at most this much time's worth at once (after a late wake-up the
#: backlog is dropped, not sent as a burst that would look like congestion to the receiver).
MAX_STEP_S = 0.03


@dataclass(slots=True)
class PaddingProbe:
    """One subscriber's padding: where (``sub_id``: the subscription whose RTX stream carries
    it), how fast (``rate_bps``), and its back-off after a failure."""

    rate_bps: float = 0.0
    sub_id: str | None = None
    started_at: float | None = None
    backoff_s: float = BACKOFF_S
    next_at: float = 0.0
    last_step: float | None = None
    credit_bytes: float = 0.0
    sequence: int = 0  # the RTX stream's sequence number, when it is first used
    started: int = 0
    failed: int = 0

    def plan(
        self,
        now: float,
        estimate_bps: float | None,
        sending_bps: float,
        target_bps: float | None,
        loss: float,
        congested: bool,
        sub_id: str | None,
    ) -> float:
        """How fast to pad from now on (0: not at all).

        ``target_bps``: the video the subscriber would be sent with one layer more (None: it
        already gets all it wants, capped by its view or at the top layer). ``sending_bps``: the
        video it is sent now. Both leave audio out, as the receiver's estimator does (without
        transport-cc, Chromium estimates from video packets only). ``congested``: its REMB fell
        lately. ``sub_id``: the subscription with an RTX stream to pad on (None: the subscriber
        negotiated none).
        """
        probing = self.rate_bps > 0
        if probing and (congested or loss > PROBE_LOSS):
            return self._fail(now)  # the link pushed back: it cannot take this rate
        if probing and self.started_at is not None and now - self.started_at > MAX_PROBE_S:
            return self._fail(now)
        if (
            target_bps is None
            or sub_id is None
            or estimate_bps is None
            or estimate_bps >= target_bps * HEADROOM
        ):
            if probing and target_bps is not None and estimate_bps is not None:
                self.backoff_s = BACKOFF_S  # reached: the allocation goes up by itself
            return self._stop()
        if not probing and (congested or loss > PROBE_LOSS or now < self.next_at):
            return 0.0
        if not probing:
            self.started_at = now
            self.started += 1
            self.last_step = None
        self.sub_id = sub_id
        counted = min(target_bps * HEADROOM, estimate_bps * RAMP)
        self.rate_bps = min(MAX_PADDING_BPS, max(0.0, counted - sending_bps))
        if self.rate_bps <= 0:
            return self._stop()
        return self.rate_bps

    def _stop(self) -> float:
        self.rate_bps = 0.0
        self.started_at = None
        self.credit_bytes = 0.0
        return 0.0

    def _fail(self, now: float) -> float:
        self.failed += 1
        self.next_at = now + self.backoff_s
        self.backoff_s = min(MAX_BACKOFF_S, self.backoff_s * 2)
        return self._stop()

    def take(self, now: float) -> int:
        """How many padding packets to send now, paced at ``rate_bps``."""
        if self.rate_bps <= 0:
            return 0
        last, self.last_step = self.last_step, now
        if last is None:
            return 0
        elapsed = min(MAX_STEP_S, max(0.0, now - last))
        self.credit_bytes += self.rate_bps * elapsed / 8
        count = int(self.credit_bytes // PADDING_SIZE)
        self.credit_bytes -= count * PADDING_SIZE
        return count

    def next_sequence(self) -> int:
        sequence = self.sequence
        self.sequence = (sequence + 1) & 0xFFFF
        return sequence
