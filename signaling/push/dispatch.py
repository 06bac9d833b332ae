"""One wake-up per registration, each through the sender its registration chose.

A registration with ``delivery: "direct"`` goes to APNs or FCM when the server has credentials
for that provider; every other one (and a direct one the server cannot send) goes to the relay:
the operator's webhook, or the log when there is none. Registrations are woken concurrently,
each in its own bounded retry loop, in a task of their own: call signalling never waits on a
push provider.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from directory.records import PushRegistration

if TYPE_CHECKING:
    from signaling.metrics import Metrics

log = logging.getLogger("callbook.push")


class Verdict(enum.Enum):
    """What an answer of a provider means for the registration."""

    DELIVERED = "delivered"
    #: The token is gone for good (unregistered, malformed): the registration is removed.
    GONE = "unregistered"
    #: Our own credentials were refused: the operator must act; counted in /metrics.
    AUTH = "auth_failed"
    #: Try again later (429, 5xx, no answer).
    RETRY = "retry"
    #: Refused for another reason, or retried until the last attempt: given up on.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Result:
    verdict: Verdict
    #: The HTTP status, 0 without an answer.
    status: int = 0
    #: The provider's reason code (``BadDeviceToken``, ``UNREGISTERED``), for the log.
    reason: str = ""
    #: Seconds the provider asked us to wait (``Retry-After``).
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Wake:
    """One wake-up for one registration: a call id and times, nothing about the caller."""

    call_id: str
    registration: PushRegistration
    sent_at: int
    #: After this (unix seconds) the call no longer rings: a late push is worthless.
    expires_at: int


class Sender(Protocol):
    #: The ``provider`` label in /metrics.
    name: str

    async def send(self, wake: Wake) -> Result: ...

    async def close(self) -> None: ...


class PushAdapter(Protocol):
    async def wake(
        self, call_id: str, account_id: str, registrations: list[PushRegistration]
    ) -> None: ...

    async def close(self) -> None: ...


#: Removes a registration the provider called gone: (account id, device id, token).
Forget = Callable[[str, str, str], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 3
    base_s: float = 0.5
    cap_s: float = 4.0

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds before attempt ``attempt + 1`` (0-based), or ``None`` after the last."""
        if attempt + 1 >= self.attempts:
            return None
        wanted = retry_after if retry_after is not None else self.base_s * 2**attempt
        return min(max(wanted, 0.0), self.cap_s)


_REASON = re.compile(r"[A-Za-z_]{1,64}")


def printable_reason(reason: str) -> str:
    """A provider's reason code as it may go into a log line: codes are a closed set of
    words, anything else is not repeated."""
    return reason if _REASON.fullmatch(reason) else "-"


class LogPush:
    """For development: says a wake-up would be sent, never who or which token."""

    name = "log"

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, wake: Wake) -> Result:
        self.sent += 1
        log.info("push: would wake a %s device", wake.registration.provider)
        return Result(Verdict.DELIVERED)

    async def close(self) -> None:
        return None


class Dispatcher:
    def __init__(
        self,
        relay: Sender,
        forget: Forget,
        *,
        apns: Sender | None = None,
        fcm: Sender | None = None,
        ttl_s: float = 60.0,
        retry: Retry | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._relay = relay
        self._direct = {name: s for name, s in (("apns", apns), ("fcm", fcm)) if s is not None}
        self._forget = forget
        self._ttl_s = ttl_s
        self._retry = retry or Retry()
        self._metrics = metrics

    def sender_for(self, registration: PushRegistration) -> Sender:
        if registration.delivery == "direct":
            return self._direct.get(registration.provider, self._relay)
        return self._relay

    async def wake(
        self, call_id: str, account_id: str, registrations: list[PushRegistration]
    ) -> None:
        now = int(time.time())
        expires_at = now + max(1, round(self._ttl_s))
        await asyncio.gather(
            *(self._deliver(account_id, Wake(call_id, r, now, expires_at)) for r in registrations)
        )

    async def _deliver(self, account_id: str, wake: Wake) -> None:
        sender = self.sender_for(wake.registration)
        try:
            result = await self._attempt(sender, wake)
        except Exception:
            # One registration's failure must not cost the others their wake-up.
            log.exception("push: %s sender failed", sender.name)
            result = Result(Verdict.FAILED)
        if self._metrics is not None and sender.name != "log":
            self._metrics.on_push(sender.name, result.verdict.value)
        if result.verdict is Verdict.GONE:
            registration = wake.registration
            try:
                await self._forget(account_id, registration.device_id, registration.token)
            except Exception:
                log.exception("push: could not remove an unregistered token")
        _report(sender.name, result)

    async def _attempt(self, sender: Sender, wake: Wake) -> Result:
        attempt = 0
        while True:
            result = await sender.send(wake)
            if result.verdict is not Verdict.RETRY:
                return result
            delay = self._retry.delay(attempt, result.retry_after)
            if delay is None:
                return Result(Verdict.FAILED, result.status, result.reason)
            await asyncio.sleep(delay)
            attempt += 1

    async def close(self) -> None:
        for sender in (self._relay, *self._direct.values()):
            await sender.close()


def _report(sender: str, result: Result) -> None:
    """One log line per wake-up that did not simply go through: the provider's reason code,
    never the token or whose device it is."""
    reason = printable_reason(result.reason)
    if result.verdict is Verdict.GONE:
        log.info("push: %s says a token is gone (%d %s): removed", sender, result.status, reason)
    elif result.verdict is Verdict.AUTH:
        log.error("push: %s refused our credentials (%d %s)", sender, result.status, reason)
    elif result.verdict is Verdict.FAILED:
        log.warning("push: %s did not take a wake-up (%d %s)", sender, result.status, reason)
