"""Media quality that devices report during calls, kept in memory for the operator view.

Per call and per leg: the latest report and a short ring buffer (for sparklines). Legs are
named by a pseudonym: an HMAC of the call id and the device, under a secret of this process, so
it is stable within a call and links to nothing outside it. Reports above one per
``MIN_INTERVAL_S`` per device are dropped; the caller counts them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field

from signaling.protocol.operator import Sample

MIN_INTERVAL_S = 2.0
HISTORY = 30
_MAX_DEVICES = 10_000


@dataclass(slots=True)
class Leg:
    history: deque[Sample] = field(default_factory=lambda: deque(maxlen=HISTORY))
    relayed: bool | None = None


class QualityBook:
    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._calls: dict[str, dict[str, Leg]] = {}
        self._last: dict[tuple[str, str], float] = {}

        self._started: dict[str, float] = {}

    def pseudonym(self, call_id: str, account_id: str) -> str:
        message = f"{call_id}:{account_id}".encode()
        return "p-" + hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:12]

    def open_call(self, call_id: str, now: float) -> None:
        self._started[call_id] = now

    def started_at(self, call_id: str) -> float | None:
        return self._started.get(call_id)

    def record(
        self,
        call_id: str,
        account_id: str,
        device_id: str,
        sample: Sample,
        relayed: bool | None,
        now: float,
    ) -> bool:
        """Keep the sample; False when it came too soon after the device's previous one."""
        device = (account_id, device_id)
        last = self._last.get(device)
        if last is not None and now - last < MIN_INTERVAL_S:
            return False
        if len(self._last) > _MAX_DEVICES:
            self._last = {d: t for d, t in self._last.items() if now - t < MIN_INTERVAL_S}
        self._last[device] = now
        leg = self._calls.setdefault(call_id, {}).setdefault(
            self.pseudonym(call_id, account_id), Leg()
        )
        leg.history.append(sample)
        if relayed is not None:
            leg.relayed = relayed
        return True

    def legs(self, call_id: str) -> dict[str, Leg]:
        return self._calls.get(call_id, {})

    def forget_call(self, call_id: str) -> None:
        self._calls.pop(call_id, None)
        self._started.pop(call_id, None)
