"""Lifecycle webhooks: call events POSTed to the operator's URLs, signed, at least once, in order.

The pieces, and why they are shaped this way:

- ``signaling.calls.lifecycle`` derives events from the calls' transitions (pure), numbering them
  per call; the call service hands them to a sink and goes on (it never waits on Redis or HTTP).
- :mod:`.sink` appends them, from a single task so that a call's events enter in order, to one
  stream (``keys.webhook_events()``), trimmed by MINID to the retention. One stream rather than
  one per call: a consumer group per URL then tracks delivery with no key per call to expire.
- :mod:`.deliver` reads the stream with one consumer group **per URL** (a receiver that is down
  delays only itself), POSTs each event, XACKs after a 2xx, retries with exponential backoff and
  jitter, and dead-letters after the last attempt. A call's next event waits until the previous
  one was accepted (or dead-lettered), so each receiver sees a call's events in ``seq`` order.
- One node delivers at a time, holding a lease (``keys.webhook_lease()``, renewed every third of
  its TTL): with several consumers per group, two nodes could send one call's events at once and
  out of order. Lifecycle events are few (a handful per call), so one sender with concurrency
  across calls is plenty. A node that takes the lease over XAUTOCLAIMs every pending entry of
  the group first, so what a dead node had read but not delivered is sent again.

Signing is ``signaling.push``'s: ``X-Callbook-Signature: sha256=<hex HMAC-SHA256 of the body>``,
with the attempt's time inside the body (``sent_at``), so one verification routine serves push
wake-ups and lifecycle webhooks alike, and a receiver can refuse stale replays.
"""

from __future__ import annotations

from signaling.push import SIGNATURE_HEADER, sign

EVENT_ID_HEADER = "X-Callbook-Event-Id"
EVENT_TYPE_HEADER = "X-Callbook-Event"
ATTEMPT_HEADER = "X-Callbook-Delivery-Attempt"

__all__ = ["ATTEMPT_HEADER", "EVENT_ID_HEADER", "EVENT_TYPE_HEADER", "SIGNATURE_HEADER", "sign"]
