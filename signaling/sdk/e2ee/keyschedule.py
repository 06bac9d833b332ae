"""Who holds which media key in one SFU call (design §6), as a pure state machine.

Every change of membership draws a new sending key (kid + 1) for the others then present, so a
joiner never holds a key used before it joined and a leaver none used after it left. Receive keys
are kept per (sender, kid); the previous key of a sender lives on for ``PREVIOUS_KEY_S`` after a
newer one arrives, for frames already on their way. Time is an argument; methods return effects.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from signaling.sdk.e2ee.sframe import Drop, FrameKey

PREVIOUS_KEY_S = 5.0
REQUEST_INTERVAL_S = 1.0
#: Reasons to ask a sender for its key again: we lack it, or what we hold does not fit.
_ASK_AGAIN = frozenset({Drop.UNKNOWN_KEY, Drop.AUTH_FAILED})


@dataclass(frozen=True, slots=True)
class SendKeys:
    """Seal ``base_key`` under ``kid`` for each recipient and send it (``media_keys``)."""

    kid: int
    base_key: bytes
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RequestKey:
    """Send ``media_key_request`` for this participant's current key."""

    participant: str


@dataclass(frozen=True, slots=True)
class KeyframeWanted:
    """A key arrived for a sender whose frames were dropped for lack of it: ask for a keyframe."""

    participant: str


Effect = SendKeys | RequestKey | KeyframeWanted


@dataclass(slots=True)
class SendKey:
    kid: int
    base_key: bytes
    frame_key: FrameKey
    #: CTR for each frame under this key, audio and video alike; ``next()`` is atomic, so the
    #: encoder threads share it without a lock.
    counter: Iterator[int] = field(default_factory=itertools.count)


@dataclass(slots=True)
class _ReceiveKey:
    frame_key: FrameKey
    expires: float | None = None


def _random_key() -> bytes:
    return os.urandom(16)


class KeySchedule:
    def __init__(self, me: str, draw: Callable[[], bytes] = _random_key) -> None:
        self.me = me
        self._draw = draw
        self.members: frozenset[str] = frozenset()
        #: The key frames are sent under now; replaced whole, so readers in other threads see
        #: either the old or the new one.
        self.send: SendKey | None = None
        self._next_kid = 0
        self._receive: dict[str, dict[int, _ReceiveKey]] = {}
        self._last_request: dict[str, float] = {}
        self._starved: set[str] = set()
        self.counters: Counter[str] = Counter()

    def membership(self, participants: Iterable[str], now: float) -> list[Effect]:
        """The call's participants (``participants`` message, you included) changed or arrived."""
        others = frozenset(participants) - {self.me}
        if self.send is not None and others == self.members:
            return []
        for gone in self.members - others:
            self._receive.pop(gone, None)
            self._last_request.pop(gone, None)
            self._starved.discard(gone)
        self.members = others
        kid, base_key = self._next_kid, self._draw()
        self._next_kid += 1
        self.send = SendKey(kid, base_key, FrameKey(base_key, kid))
        return [SendKeys(kid, base_key, tuple(sorted(others)))] if others else []

    def key_requested(self, requester: str) -> list[Effect]:
        """A participant asked for our key: it gets the current one only."""
        if requester not in self.members or self.send is None:
            self.counters["request_from_unknown"] += 1
            return []
        self.counters["key_requests_answered"] += 1
        return [SendKeys(self.send.kid, self.send.base_key, (requester,))]

    def key_received(self, sender: str, kid: int, base_key: bytes, now: float) -> list[Effect]:
        """An opened blob: ``sender``'s base key under ``kid``."""
        if sender not in self.members:
            self.counters["key_from_unknown_sender"] += 1
            return []
        keys = self._receive.setdefault(sender, {})
        if kid in keys:
            # A repeat (an answer to a request crossing a fresh key): keep the replay window.
            return []
        newest = max(keys, default=-1)
        keys[kid] = _ReceiveKey(FrameKey(base_key, kid))
        if kid > newest:
            for old_kid, old in list(keys.items()):
                if old_kid == kid:
                    continue
                if old_kid == newest and old.expires is None:
                    old.expires = now + PREVIOUS_KEY_S
                elif old_kid != newest:
                    del keys[old_kid]
        else:
            keys[kid].expires = now + PREVIOUS_KEY_S
        self.counters["keys_received"] += 1
        if sender in self._starved:
            self._starved.discard(sender)
            return [KeyframeWanted(sender)]
        return []

    def receive_key(self, sender: str, kid: int, now: float) -> FrameKey | None:
        keys = self._receive.get(sender)
        if not keys:
            return None
        held = keys.get(kid)
        if held is None:
            return None
        if held.expires is not None and now >= held.expires:
            del keys[kid]
            return None
        return held.frame_key

    def dropped(self, sender: str, reason: Drop, now: float) -> list[Effect]:
        """A frame from ``sender`` was dropped: count it, and ask again for the key if that may
        help, at most once per ``REQUEST_INTERVAL_S`` per sender."""
        self.counters[reason.value] += 1
        if reason is Drop.UNKNOWN_KEY:
            self._starved.add(sender)
        if reason not in _ASK_AGAIN:
            return []
        return self._ask(sender, now)

    def blob_failed(self, sender: str, now: float) -> list[Effect]:
        """A key message from ``sender`` did not open."""
        self.counters["bad_blob"] += 1
        return self._ask(sender, now)

    def _ask(self, sender: str, now: float) -> list[Effect]:
        if sender not in self.members:
            return []
        if now - self._last_request.get(sender, -REQUEST_INTERVAL_S) < REQUEST_INTERVAL_S:
            self.counters["key_requests_held"] += 1
            return []
        self._last_request[sender] = now
        self.counters["key_requests"] += 1
        return [RequestKey(sender)]
