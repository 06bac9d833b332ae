"""Operator metrics in the Prometheus text format, served at ``GET /metrics``.

Every series is an aggregate: no label ever carries a handle, an account or device id, a call id
or an address. Label values come from closed sets (message tags, end reasons, error codes).

Each application owns one :class:`Metrics` with its own registry, so two servers in one process
(as in the tests) never share counts. Hot paths call the small ``on_*`` methods, which use
label children created once per value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from signaling.protocol import messages as m

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Ringing lasts up to the ring timeout (60 s by default); people answer in seconds.
_RING_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0)
# A loopback or same-rack store answers in well under a millisecond; a second is an outage.
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _task_count() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # scraped outside the loop (a test reading the registry)
        return 0.0


def _client_tags() -> dict[type[m.ClientMessage], str]:
    tags: dict[type[m.ClientMessage], str] = {}
    for kind in get_args(m.ClientMessages):
        tag = kind.__struct_config__.tag
        if isinstance(tag, str):
            tags[kind] = tag
    return tags


class Metrics:
    """The metric objects of one application, and cheap ways to update them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active_calls = Gauge(
            "callbook_active_calls",
            "Calls this node holds now (ringing or connected).",
            ["kind"],
            registry=r,
        )
        self.call_setups = Counter(
            "callbook_call_setups",
            "Calls placed: invites that passed validation and started ringing (or would have).",
            registry=r,
        )
        self.calls_answered = Counter(
            "callbook_calls_answered", "Calls answered on some device of the callee.", registry=r
        )
        self.call_endings = Counter(
            "callbook_call_endings",
            "Calls ended, by the reason sent to the caller (answered calls count when they end).",
            ["reason"],
            registry=r,
        )
        self.call_paths = Counter(
            "callbook_call_paths",
            "Answered 1:1 calls when they end, by the path their media took last (p2p, turn, "
            "sfu) and whether they fell back to it from a failed peer-to-peer path.",
            ["path", "fell_back"],
            registry=r,
        )
        self.ring_to_answer = Histogram(
            "callbook_ring_to_answer_seconds",
            "Time from a call's invite to its answer, for answered calls.",
            buckets=_RING_BUCKETS,
            registry=r,
        )
        self.websocket_connections = Gauge(
            "callbook_websocket_connections",
            "Call WebSockets open now (signed in or still authenticating).",
            registry=r,
        )
        # A task that outlives its work (a leak) shows here long before it shows in memory.
        self.asyncio_tasks = Gauge(
            "callbook_asyncio_tasks", "Asyncio tasks alive in this node's event loop.", registry=r
        )
        self.asyncio_tasks.set_function(_task_count)
        self.ws_messages = Counter(
            "callbook_ws_messages",
            "Client WebSocket messages decoded, by message type.",
            ["type"],
            registry=r,
        )
        self.rejected_inputs = Counter(
            "callbook_rejected_inputs",
            "Inputs refused: WebSocket error codes sent, and REST problem codes with a 4xx status.",
            ["reason"],
            registry=r,
        )
        self.store_seconds = Histogram(
            "callbook_store_seconds",
            "Store latency seen from the server, sampled on two operations only: op=ping is a "
            "successful /readyz PING (one round trip), op=dial an invite's lookup (several).",
            ["op"],
            buckets=_STORE_BUCKETS,
            registry=r,
        )

        self.quality_dropped = Counter(
            "callbook_quality_reports_dropped",
            "Client quality reports dropped for coming sooner than 2 s after the previous one.",
            registry=r,
        )
        self.reports_received = Counter(
            "callbook_abuse_reports_received",
            "Abuse reports filed, by category (matched or not: the same answer for both).",
            ["category"],
            registry=r,
        )
        self.operator_actions = Counter(
            "callbook_operator_actions",
            "Operator actions written to the audit log, by action.",
            ["action"],
            registry=r,
        )

        self.webhooks_delivered = Counter(
            "callbook_webhooks_delivered",
            "Lifecycle webhook deliveries a receiver accepted (2xx), counted per URL.",
            registry=r,
        )
        self.webhooks_failed = Counter(
            "callbook_webhooks_failed",
            "Lifecycle webhook attempts that failed (another status, no answer); retried.",
            registry=r,
        )
        self.webhooks_dead_lettered = Counter(
            "callbook_webhooks_dead_lettered",
            "Lifecycle webhook events given up on after the last attempt (kept as dead letters).",
            registry=r,
        )
        self.webhook_events_dropped = Counter(
            "callbook_webhook_events_dropped",
            "Lifecycle events dropped before the stream: the node's queue was full.",
            registry=r,
        )

        self.push_wakeups = Counter(
            "callbook_push_wakeups",
            "Wake-ups of offline devices, by sender (webhook, apns, fcm) and outcome: delivered, "
            "unregistered (the token was removed), auth_failed (our credentials were refused: "
            "act on it), failed (refused otherwise, or retried in vain).",
            ["provider", "outcome"],
            registry=r,
        )

        self._one_to_one = self.active_calls.labels(kind="one_to_one")
        self._one_to_one.set(0)
        self._setups = self.call_setups
        self._endings = {
            reason: self.call_endings.labels(reason=reason) for reason in get_args(m.EndReason)
        }
        self._messages = {
            kind: self.ws_messages.labels(type=tag) for kind, tag in _client_tags().items()
        }
        self._rejected: dict[str, Counter] = {}
        self.store_ping = self.store_seconds.labels(op="ping")
        self.store_dial = self.store_seconds.labels(op="dial")

    # --- calls ---------------------------------------------------------------------------------

    def track_active_calls(self, count: Callable[[], int]) -> None:
        """Read the number of one-to-one calls from ``count`` at scrape time."""
        self._one_to_one.set_function(lambda: float(count()))

    def on_setup(self) -> None:
        self._setups.inc()

    def on_answered(self, ring_s: float | None) -> None:
        self.calls_answered.inc()
        if ring_s is not None:
            self.ring_to_answer.observe(ring_s)

    def on_path(self, path: str, fell_back: bool) -> None:
        self.call_paths.labels(path=path, fell_back="true" if fell_back else "false").inc()

    def on_ended(self, reason: str) -> None:
        child = self._endings.get(reason)
        if child is None:
            child = self._endings[reason] = self.call_endings.labels(reason=reason)
        child.inc()

    # --- inputs --------------------------------------------------------------------------------

    def on_ws_message(self, message: m.ClientMessage) -> None:
        child = self._messages.get(type(message))
        if child is not None:
            child.inc()

    def on_rejected(self, code: str) -> None:
        # Codes come from closed sets (ApiError codes, CallError and DirectoryError codes).
        child = self._rejected.get(code)
        if child is None:
            child = self._rejected[code] = self.rejected_inputs.labels(reason=code)
        child.inc()

    # --- operators and reports -----------------------------------------------------------------

    def on_quality_dropped(self) -> None:
        self.quality_dropped.inc()

    def on_report(self, category: str) -> None:
        # Categories are a closed set (directory.records.Category).
        self.reports_received.labels(category=category).inc()

    def on_operator_action(self, action: str) -> None:
        # Actions are a closed set (directory.audit.Action).
        self.operator_actions.labels(action=action).inc()

    # --- webhooks ------------------------------------------------------------------------------

    def on_webhook(self, outcome: str) -> None:
        counter = {
            "delivered": self.webhooks_delivered,
            "failed": self.webhooks_failed,
            "dead_lettered": self.webhooks_dead_lettered,
        }[outcome]
        counter.inc()

    def on_webhook_dropped(self) -> None:
        self.webhook_events_dropped.inc()

    # --- push ----------------------------------------------------------------------------------

    def on_push(self, provider: str, outcome: str) -> None:
        # Both closed sets: the senders' names and signaling.push.dispatch.Verdict.
        self.push_wakeups.labels(provider=provider, outcome=outcome).inc()

    # --- exposition ----------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)
