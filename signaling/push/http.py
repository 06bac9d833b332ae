"""The HTTP/2 client the provider senders share the idioms of (APNs speaks only HTTP/2)."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import httpx

# httpx logs every request's URL at INFO, and an APNs URL holds the device token.
logging.getLogger("httpx").setLevel(logging.WARNING)

#: A wake-up is worth something only while the call rings: fail fast, then retry.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def client(ca_file: Path | None) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        verify = ssl.create_default_context(cafile=str(ca_file))
    return httpx.AsyncClient(http2=True, verify=verify, timeout=TIMEOUT)


def retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by APNs or FCM)."""
    raw = headers.get("retry-after", "")
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def is_retryable(status: int) -> bool:
    return status == 429 or status >= 500
