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
forwarded packets keep the publisher's ``abs-send-time``, so the receiver's delay-based
estimator sees the delay of the whole path.

Two corrections on top of REMB:

* **Losses** (RTCP receiver reports' ``fraction_lost``): a REMB estimator only sees delay; a
  shallow policer drops packets without queueing them. Over 10 % loss the estimate is cut to
  ``(1 - loss / 2)`` of what was being received, as Chromium's own loss-based controller does;
  below 2 % the loss cap grows 8 % per report until it no longer binds.
* **Several downlinks per subscriber** (the per-publisher legs of the older transport): each leg
  has its own estimator and REMB; the subscriber's estimate is their sum. With one connection
  per participant there is one leg and the sum is that leg's REMB.
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


@dataclass(slots=True)
class LegEstimate:
    remb_bps: float | None = None
    remb_at: float = float("-inf")
    loss_cap_bps: float | None = None
    loss: float = 0.0


@dataclass(slots=True)
class SubscriberEstimate:
    """One subscriber's downlink estimate, from all its legs."""

    legs: dict[str, LegEstimate] = field(default_factory=dict)

    def remb(self, leg: str, bitrate_bps: float, now: float) -> None:
        state = self.legs.setdefault(leg, LegEstimate())
        state.remb_bps = max(FLOOR_BPS, float(bitrate_bps))
        state.remb_at = now

    def loss(self, leg: str, fraction: float, receiving_bps: float) -> None:
        """A receiver report for ``leg``: ``fraction`` lost (0..1) while it was being sent
        ``receiving_bps``."""
        state = self.legs.setdefault(leg, LegEstimate())
        state.loss = fraction
        if fraction > HIGH_LOSS:
            base = receiving_bps if state.loss_cap_bps is None else state.loss_cap_bps
            base = min(base, receiving_bps) if receiving_bps > 0 else base
            state.loss_cap_bps = max(FLOOR_BPS, base * (1 - fraction / 2))
        elif fraction < LOW_LOSS and state.loss_cap_bps is not None:
            state.loss_cap_bps *= LOSS_GROWTH
            if state.remb_bps is not None and state.loss_cap_bps >= state.remb_bps:
                state.loss_cap_bps = None

    def forget(self, leg: str) -> None:
        self.legs.pop(leg, None)

    def worst_loss(self) -> float:
        return max((s.loss for s in self.legs.values()), default=0.0)

    def value(self, now: float) -> float | None:
        """Bits per second this subscriber can take now, or None: nothing known yet."""
        total = 0.0
        known = False
        for state in self.legs.values():
            caps = [c for c in (state.loss_cap_bps,) if c is not None]
            if state.remb_bps is not None and now - state.remb_at <= REMB_STALE_S:
                caps.append(state.remb_bps)
            if caps:
                total += min(caps)
                known = True
        return total if known else None
