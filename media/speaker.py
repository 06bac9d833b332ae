"""Active speaker from RFC 6464 audio levels: pure, time passed in."""

from __future__ import annotations

import math


class ActiveSpeaker:
    """Loudest recent talker, smoothed, re-decided at most once per ``interval_s``.

    Loudness is 127 minus the RFC 6464 level (so 0 is silence); each participant's value decays
    with a time constant so a cough does not steal the floor, and the current speaker keeps it
    unless someone is clearly louder.
    """

    def __init__(
        self, interval_s: float = 1.0, tau_s: float = 0.5, threshold: float = 30.0
    ) -> None:
        self.interval_s = interval_s
        self.tau_s = tau_s
        self.threshold = threshold
        self.margin = 6.0
        self.current: str | None = None
        self._levels: dict[str, tuple[float, float]] = {}  # name -> (smoothed, at)
        self._decided_at = -math.inf

    def observe(self, name: str, level_dbov: int, now: float) -> None:
        loudness = 127 - level_dbov
        smoothed = self._value(name, now)
        alpha = 0.2
        self._levels[name] = (smoothed + alpha * (loudness - smoothed), now)

    def _value(self, name: str, now: float) -> float:
        smoothed, at = self._levels.get(name, (0.0, now))
        return smoothed * math.exp(-max(0.0, now - at) / self.tau_s)

    def forget(self, name: str) -> None:
        self._levels.pop(name, None)
        if self.current == name:
            self.current = None

    def decide(self, now: float) -> str | None:
        if now - self._decided_at < self.interval_s:
            return self.current
        self._decided_at = now
        values = {name: self._value(name, now) for name in self._levels}
        best = max(values, key=values.__getitem__, default=None)
        if best is None or values[best] < self.threshold:
            current_value = values.get(self.current, 0.0) if self.current else 0.0
            if current_value < self.threshold:
                self.current = None
            return self.current
        # Keep the floor unless someone is clearly louder (hysteresis against flapping).
        current = values.get(self.current) if self.current is not None else None
        if current is None or values[best] > current + self.margin or current < self.threshold:
            self.current = best
        return self.current
