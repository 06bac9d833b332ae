"""Node-local limits for endpoints that have no account to charge: pure, time as an argument.

Sign-up, sign-in challenges and recovery are open to anyone. The store-backed buckets in
``directory.ratelimit`` are per account; these protect the node itself from a flood
(``Throttle``, node-wide) and each source from the others (``SourceBuckets``, per connection
source address). A source address lives only in this process's memory, and only as a keyed
digest (``SourceKeys``): it never reaches the store or the log.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


class Throttle:
    __slots__ = ("_burst", "_clock", "_rate", "_stamp", "_tokens")  # one per connection

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def try_take(self) -> float:
        """0 when a token was taken, else the seconds to wait for one."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate


def retry_after_s(wait: float) -> int:
    """A wait in seconds as a ``Retry-After`` value: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


class SourceKeys:
    """Turns a connection's address into a short keyed digest, under a key of this process.

    IPv6 sources are taken per /64: one host usually holds a whole /64, so counting addresses
    would give it billions of budgets. The key is random per process, so a digest is useless
    outside it and cannot be matched against a list of addresses.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def of(self, remote: str | None) -> bytes:
        text = remote or "-"
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            if isinstance(address, ipaddress.IPv6Address):
                mapped = address.ipv4_mapped
                text = str(mapped) if mapped else str(ipaddress.ip_network(f"{text}/64", False))
        return hashlib.blake2b(text.encode(), key=self._key, digest_size=12).digest()


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def client_address(peer: str | None, forwarded_for: str | None, trusted: Networks) -> str | None:
    """The client's address: the connection's peer, or, when the peer is a proxy we trust, the
    address that proxy appended last to ``X-Forwarded-For`` (anything before it could be forged
    by the client; a malformed last entry counts as the proxy itself)."""
    if not (trusted and peer and forwarded_for) or not _within(_parse(peer), trusted):
        return peer
    last = forwarded_for[-64:].rsplit(",", 1)[-1].strip()
    return last if _parse(last) is not None else peer


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, networks: Networks
) -> bool:
    return address is not None and any(address in network for network in networks)


@dataclass(frozen=True, slots=True)
class Budget:
    """A token bucket's shape: ``burst`` tokens, refilled at ``per_s``."""

    burst: int
    per_s: float


class SourceBuckets:
    """One token bucket per source, at most ``max_sources`` of them (least recently used go).

    Forgetting a source gives it a full bucket again: under an address-rotating flood the
    limiter errs towards letting people in, never towards locking a quiet source out.
    """

    def __init__(self, budget: Budget, max_sources: int) -> None:
        self.budget = budget
        self._max = max_sources
        # source -> [tokens, stamp]
        self._buckets: OrderedDict[bytes, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, source: bytes, now: float) -> list[float]:
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = [float(self.budget.burst), now]
            self._buckets[source] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
            elapsed = max(0.0, now - bucket[1])
            bucket[0] = min(float(self.budget.burst), bucket[0] + elapsed * self.budget.per_s)
            bucket[1] = now
        return bucket

    def take(self, source: bytes, now: float) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        bucket = self._refilled(source, now)
        if bucket[0] >= 1:
            bucket[0] -= 1
            return 0.0
        return (1 - bucket[0]) / self.budget.per_s

    def used(self, source: bytes, now: float) -> float:
        """How many tokens this source has spent and not yet earned back (0 for a stranger)."""
        bucket = self._buckets.get(source)
        if bucket is None:
            return 0.0
        elapsed = max(0.0, now - bucket[1])
        tokens = min(float(self.budget.burst), bucket[0] + elapsed * self.budget.per_s)
        return self.budget.burst - tokens


class RateMeter:
    """An exponentially decaying event rate (events/s), e.g. sign-ups on this node."""

    def __init__(self, half_life_s: float) -> None:
        self._decay = math.log(2) / half_life_s
        self._level = 0.0
        self._stamp = 0.0

    def _decayed(self, now: float) -> float:
        return self._level * math.exp(-self._decay * max(0.0, now - self._stamp))

    def add(self, now: float) -> None:
        self._level = self._decayed(now) + 1.0
        self._stamp = now

    def rate(self, now: float) -> float:
        # The level of a steady rate r settles at r / decay.
        return self._decayed(now) * self._decay
