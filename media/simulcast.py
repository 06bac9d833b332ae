"""Simulcast layer selection: which layer of each publisher's video each subscriber gets.

Pure: no I/O, time passed in. The adapter feeds what it knows (layers seen, their measured
bitrates and heights, the subscriber's bandwidth estimate, the maximum height it asked for) and
applies the decision: ``allocate`` picks the target layer of every video a subscriber receives,
``Prober`` lets it try one layer more now and then (a receiver's REMB only grows to about 1.5 x
what it receives, so a subscriber held on a low layer would never earn a higher one otherwise),
and ``LayerSwitch`` moves a subscription to its target only at a keyframe of the target layer.

Audio goes first: ``allocate`` takes what it is told audio needs off the estimate before any
video (the SFU tells it nothing: its REMB estimates count video only, ``media.selection``).
Video is paused (``None``) for a subscriber whose remaining budget cannot carry even the lowest
layer, or that asked for height 0 (a hidden tab).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Until a layer's bitrate is measured, assume the web client's caps for 1/4, 1/2 and full
#: resolution (``signaling/web/sdk/simulcast.js``).
NOMINAL_BPS = (75_000, 500_000, 1_500_000)
#: Moving up needs this much headroom over the layer's bitrate; staying needs less than the
#: rate itself, so an estimate that wobbles around one layer's rate does not switch back and
#: forth (each switch costs a keyframe).
UPGRADE_MARGIN = 1.15
STAY_MARGIN = 0.9
#: A layer with no packet for this long is not being sent (the publisher dropped it).
LAYER_IDLE_S = 1.5
RATE_WINDOW_S = 1.0


@dataclass(slots=True)
class LayerMeter:
    """One incoming layer: its bitrate over the last second, height, last packet time."""

    index: int
    height: int | None = None
    last_at: float = float("-inf")
    first_at: float | None = None
    _samples: deque[tuple[float, int]] = field(default_factory=deque)
    _bytes: int = 0

    def packet(self, size: int, now: float) -> None:
        if self.first_at is None or now - self.last_at >= LAYER_IDLE_S:
            self.first_at = now  # (re)started: the window is not full yet
        self.last_at = now
        self._samples.append((now, size))
        self._bytes += size
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._samples and now - self._samples[0][0] > RATE_WINDOW_S:
            self._bytes -= self._samples.popleft()[1]

    def bitrate(self, now: float) -> float:
        """Bits per second over the last window (0 before a full window's worth is known)."""
        self._expire(now)
        return self._bytes * 8 / RATE_WINDOW_S

    def active(self, now: float) -> bool:
        return now - self.last_at < LAYER_IDLE_S

    def full(self, now: float) -> bool:
        """Whether a whole window has been measured (a partial one under-counts)."""
        return self.first_at is not None and now - self.first_at >= RATE_WINDOW_S


@dataclass(frozen=True, slots=True)
class Layer:
    """What a selection needs of one layer: index (0 = lowest), bitrate, height if known."""

    index: int
    bps: float
    height: int | None = None


def layers_now(meters: Sequence[LayerMeter], now: float) -> list[Layer]:
    """The active layers, lowest first, with measured bitrates (no lower than the nominal one
    until a whole window is measured)."""
    out = []
    for meter in sorted(meters, key=lambda m: m.index):
        if not meter.active(now):
            continue
        nominal = NOMINAL_BPS[min(meter.index, len(NOMINAL_BPS) - 1)]
        measured = meter.bitrate(now)
        bps = measured if meter.full(now) and measured > 0 else max(measured, nominal)
        out.append(Layer(meter.index, bps, meter.height))
    return out


def highest_wanted(layers: Sequence[Layer], max_height: int | None) -> int | None:
    """Position in ``layers`` of the highest layer not taller than ``max_height`` (the lowest
    layer when every one is taller: a small tile still shows something); None for height 0."""
    if not layers:
        return None
    if max_height is None:
        return len(layers) - 1
    if max_height <= 0:
        return None
    best = 0
    for position, layer in enumerate(layers):
        # A layer whose height is not known yet counts as too tall, except the lowest.
        if layer.height is not None and layer.height <= max_height:
            best = position
    return best


@dataclass(frozen=True, slots=True)
class Demand:
    """One video a subscriber receives: its layers now, the wanted height, the current layer."""

    key: str
    layers: tuple[Layer, ...]
    max_height: int | None = None
    current: int | None = None  # layer index being forwarded now


def allocate(
    estimate_bps: float | None,
    audio_bps: float,
    demands: Sequence[Demand],
    extra_steps: int = 0,
    probe_key: str | None = None,
) -> dict[str, int | None]:
    """Target layer index per demand (None: paused) within ``estimate_bps`` (None: no limit).

    Audio first; then every video its lowest layer, in the order given (put the active speaker
    first: it is the last to be paused); then one layer up at a time, round robin, while it
    fits. ``extra_steps`` takes that many more steps regardless of the budget (a probe): a
    paused video's lowest layer, or one layer up; only for ``probe_key`` when given (a probe
    stays on the video it started with).
    """
    budget = float("inf") if estimate_bps is None else estimate_bps - audio_bps
    chosen: dict[str, int | None] = {}
    position: dict[str, int] = {}
    ceiling: dict[str, int] = {}
    for demand in demands:
        top = highest_wanted(demand.layers, demand.max_height)
        chosen[demand.key] = None
        if top is None:
            continue
        cost = demand.layers[0].bps
        margin = STAY_MARGIN if demand.current is not None else 1.0
        if cost * margin > budget:
            if extra_steps <= 0 or probe_key not in (None, demand.key):
                continue
            extra_steps -= 1
        budget -= cost
        position[demand.key] = 0
        ceiling[demand.key] = top
        chosen[demand.key] = demand.layers[0].index
    by_key = {d.key: d for d in demands}
    upgraded = True
    while upgraded:
        upgraded = False
        for key, at in list(position.items()):
            if at >= ceiling[key]:
                continue
            layers = by_key[key].layers
            step = layers[at + 1].bps - layers[at].bps
            current = by_key[key].current
            staying = current is not None and layers[at + 1].index <= current
            margin = STAY_MARGIN if staying else UPGRADE_MARGIN
            if step * margin <= budget:
                budget -= step
            elif extra_steps > 0 and probe_key in (None, key):
                extra_steps -= 1
                budget -= step
            else:
                continue
            position[key] = at + 1
            chosen[key] = layers[at + 1].index
            upgraded = True
    return chosen


PROBE_BACKOFF_S = 3.0
LOW_LOSS_PROBE = 0.1


@dataclass(slots=True)
class Prober:
    """When to try one layer more than the estimate allows, and when to give up on it.

    A probe starts when the allocation is held back by the estimate (``constrained``), the
    loss is low, and the back-off has passed; it lasts ``window_s``. It succeeds if by then the
    estimate covers what the probe sent (``needed_bps``): the receiver's estimate grew with
    the extra traffic. A receiver's estimate climbs only some 8 % a second, so a probe whose
    estimate is still growing (by ``growth`` over the window) goes on for another window, up
    to ``max_windows``. Otherwise the next probe waits twice as long (up to
    ``max_backoff_s``).
    """

    base_backoff_s: float = PROBE_BACKOFF_S
    max_backoff_s: float = 12.0
    window_s: float = 3.0
    backoff_s: float = PROBE_BACKOFF_S
    next_at: float = 0.0
    until: float | None = None
    needed_bps: float = 0.0
    growth: float = 1.1
    max_windows: int = 5
    windows: int = 0
    window_start_bps: float = 0.0
    key: str | None = None  # the video being tried higher
    succeeded: int = 0
    failed: int = 0

    def probing(self, now: float) -> bool:
        return self.until is not None and now < self.until

    def start(
        self,
        constrained: bool,
        loss: float,
        needed_bps: float,
        now: float,
        estimate_bps: float = 0.0,
    ) -> bool:
        if self.until is not None or not constrained or loss > 0.02 or now < self.next_at:
            return False
        self.until = now + self.window_s
        self.needed_bps = needed_bps
        self.windows = 1
        self.window_start_bps = estimate_bps
        return True

    def settle(self, estimate_bps: float | None, loss: float, now: float) -> bool | None:
        """At the end of a probe window: True (kept), False (failed), None (not over yet)."""
        if self.until is None or now < self.until:
            return None
        ok = (
            estimate_bps is not None
            and estimate_bps >= self.needed_bps * STAY_MARGIN
            and loss <= LOW_LOSS_PROBE
        )
        growing = (
            estimate_bps is not None
            and self.window_start_bps > 0
            and estimate_bps >= self.window_start_bps * self.growth
            and loss <= 0.02
        )
        if not ok and growing and self.windows < self.max_windows:
            self.windows += 1
            self.until = now + self.window_s
            self.window_start_bps = estimate_bps or 0.0
            return None
        self.until = None
        if ok:
            self.succeeded += 1
            self.backoff_s = self.base_backoff_s
        else:
            self.failed += 1
            self.backoff_s = min(self.max_backoff_s, self.backoff_s * 2)
        self.next_at = now + self.backoff_s
        return ok


class Verdict:
    FORWARD = "forward"
    SWITCH = "switch"  # forward, and re-base the output stream on this packet first
    DROP = "drop"


@dataclass(slots=True)
class LayerSwitch:
    """One subscription's current and target layer; switches only at the target's keyframe."""

    current: int | None = None
    target: int | None = None
    switches: int = 0

    def retarget(self, layer: int | None) -> bool:
        """Set the target; True when a keyframe of it is needed (a switch is now pending)."""
        self.target = layer
        if layer is None:
            self.current = None  # paused: stop at once, nothing to wait for
            return False
        return layer != self.current

    @property
    def pending(self) -> bool:
        return self.target is not None and self.target != self.current

    def packet(self, layer: int, keyframe_start: bool) -> str:
        """What to do with a packet of ``layer`` (``keyframe_start``: it begins a keyframe)."""
        if layer == self.target and self.target != self.current and keyframe_start:
            if self.current is not None:
                self.switches += 1
            self.current = layer
            return Verdict.SWITCH
        if layer == self.current:
            return Verdict.FORWARD
        return Verdict.DROP
