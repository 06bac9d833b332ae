"""Per-subscriber downlink bandwidth estimates, from the receivers' own REMB plus their losses.

Pure: no I/O, time passed in.

**Why REMB and not transport-wide congestion control.** With transport-cc the *sender* (here the
SFU) must estimate: record the send time of every packet it forwards to every subscriber, match
the receiver's per-packet arrival feedback, and run a delay-gradient filter plus a loss
controller per subscriber — per-packet Python work on the hottest path of the forwarder, which
issue 15 spent its effort shrinking. With REMB the *receiver* runs that estimator and sends one
number a few times a second; the SFU only reads it. Both kinds of subscriber support it: aiortc
sends REMB and nothing else (it has no transport-cc), and Chromium sends REMB when the offer
carries ``goog-remb`` and not ``transport-cc`` — exactly what aiortc's downlink offers. The
forwarded layers carry the SFU's own ``abs-send-time``, so the receiver's delay-based estimator
sees the delay of its own downlink. A REMB grows only to about 1.5 x what arrives: padding
probes on the subscriber's RTX stream (``media.probing``) let it grow to the next layer.

Two corrections on top of REMB:

* **Losses** (RTCP receiver reports' ``fraction_lost``): a REMB estimator only sees delay; a
  shallow policer drops packets without queueing them. Over 10 % loss the estimate is cut to
  ``(1 - loss / 2)`` of what was being received, as Chromium's own loss-based controller does;
  below 2 % the loss cap grows 8 % per report until it no longer binds.
* **Several downlinks per subscriber** (the per-publisher legs of the older transport): each leg
  has its own estimator and REMB; the subscriber's estimate is their sum. With one connection
  per participant there is one REMB, about all its streams.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: A REMB older than this is forgotten (the leg went quiet or stopped sending it).
REMB_STALE_S = 5.0
HIGH_LOSS = 0.10
LOW_LOSS = 0.02
LOSS_GROWTH = 1.08
#: Never estimate below this: enough for audio and the lowest layer's keyframes to get through
#: and for the receiver's estimate to recover.
FLOOR_BPS = 30_000


#: A REMB that falls this much from the previous one of its transport is the receiver's
#: estimator reacting to overuse (Chromium's drops to 0.85 x the incoming rate); it counts as
#: congestion for ``CONGESTION_HOLD_S``.
DROP = 0.95
CONGESTION_HOLD_S = 4.0
#: An estimate below this share of what is being sent, and not rising, is taken as it is.
BELOW = 0.9
RISING_WITHIN_S = 2.0
#: ... and so is one below this share however it moves: far too little to be a lag.
FAR_BELOW = 0.5


#: A stream's loss report older than this is forgotten (a paused video sends no more).
LOSS_STALE_S = 3.0


def usable(
    estimate_bps: float | None, sending_bps: float, congested: bool, rising: bool
) -> float | None:
    """What the allocation may use, given the receiver's estimate and what it is being sent.

    A REMB measures what a receiver gets, not what its link could carry: it grows only some
    8 % a second up to about 1.5 x the incoming rate, lags behind a step up in what it is sent,
    and sits near the floor for a paused video. It *falls* only when the receiver sees its
    queue grow. So without a recent fall (or heavy loss) the subscriber keeps at least what it
    is being sent (probes find out about more) while its estimate covers that or is still
    rising towards it; after a fall, or stuck below what it is sent, the estimate is taken as
    it is.
    """
    if estimate_bps is None or sending_bps <= 0 or estimate_bps >= sending_bps:
        return estimate_bps
    if congested or estimate_bps < FAR_BELOW * sending_bps:
        return estimate_bps
    if estimate_bps < BELOW * sending_bps and not rising:
        return estimate_bps
    return sending_bps


@dataclass(slots=True)
class Remb:
    ssrcs: frozenset[int]  # the streams it is about
    bitrate_bps: float
    at: float


@dataclass(slots=True)
class SubscriberEstimate:
    """One subscriber's downlink estimate: the sum of its transports' REMBs, capped on loss.

    A REMB names the SSRCs it is about (all the streams of one receiving transport). Reports
    about disjoint sets add up (one transport per publisher); a report about streams another
    one covered replaces it (one transport whose set of streams changed). Receivers send RTCP
    from SSRCs of their own choosing (Chromium's receive-only connections all use 1), so the
    sender's SSRC cannot tell transports apart.
    """

    rembs: list[Remb] = field(default_factory=list)
    fell_at: float = float("-inf")  # when a transport's REMB last fell
    rose_at: float = float("-inf")  # ... and last rose
    loss_cap_bps: float | None = None
    losses: dict[int, tuple[float, float]] = field(default_factory=dict)  # stream: (loss, at)

    def remb(self, ssrcs: list[int] | frozenset[int], bitrate_bps: float, now: float) -> None:
        covered = frozenset(ssrcs)
        value = max(FLOOR_BPS, float(bitrate_bps))
        for old in self.rembs:
            if old.ssrcs == covered and value < old.bitrate_bps * DROP:
                self.fell_at = now
            elif old.ssrcs == covered and value > old.bitrate_bps:
                self.rose_at = now
        self.rembs = [r for r in self.rembs if not r.ssrcs & covered and r.ssrcs != covered]
        self.rembs.append(Remb(covered, value, now))

    def rising(self, now: float) -> bool:
        return now - self.rose_at < RISING_WITHIN_S

    def fell_lately(self, now: float) -> bool:
        """A REMB fell lately: the receiver saw its queue grow (a probe must stop)."""
        return now - self.fell_at < CONGESTION_HOLD_S

    def congested(self, now: float) -> bool:
        """A REMB fell lately, or losses cap the estimate."""
        return now - self.fell_at < CONGESTION_HOLD_S or self.loss_cap_bps is not None

    def loss(self, stream: int, fraction: float, receiving_bps: float, now: float = 0.0) -> None:
        """A receiver report block about ``stream``: ``fraction`` lost (0..1) while the
        subscriber was being sent ``receiving_bps`` in all."""
        self.losses[stream] = (fraction, now)
        self.losses = {s: v for s, v in self.losses.items() if now - v[1] <= LOSS_STALE_S}
        if fraction > HIGH_LOSS:
            base = receiving_bps if self.loss_cap_bps is None else self.loss_cap_bps
            base = min(base, receiving_bps) if receiving_bps > 0 else base
            self.loss_cap_bps = max(FLOOR_BPS, base * (1 - fraction / 2))
        elif self.worst_loss() < LOW_LOSS and self.loss_cap_bps is not None:
            self.loss_cap_bps *= LOSS_GROWTH
            remb = self._remb(now)
            if remb is not None and self.loss_cap_bps >= remb:
                self.loss_cap_bps = None

    def forget(self, stream: int) -> None:
        self.losses.pop(stream, None)
        self.rembs = [r for r in self.rembs if stream not in r.ssrcs]

    def worst_loss(self, now: float | None = None) -> float:
        """The highest loss reported lately (as of ``now``; of the last report when None). A
        stream that stopped (a paused video) sends no reports, and its last loss must not
        hold back probing for ever (nothing else would resume it)."""
        return max(
            (loss for loss, at in self.losses.values() if now is None or now - at <= LOSS_STALE_S),
            default=0.0,
        )

    def _remb(self, now: float) -> float | None:
        fresh = [r.bitrate_bps for r in self.rembs if now - r.at <= REMB_STALE_S]
        return sum(fresh) if fresh else None

    def value(self, now: float) -> float | None:
        """Bits per second this subscriber can take now, or None: nothing known yet."""
        remb = self._remb(now)
        caps = [c for c in (remb, self.loss_cap_bps) if c is not None]
        return min(caps) if caps else None
