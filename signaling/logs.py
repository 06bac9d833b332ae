"""Structured logs: one JSON object per line, with nothing personal in them.

Every line has ``ts`` (ISO-8601, UTC), ``level``, ``logger`` and ``msg``; fields passed with
``extra=`` are added when they are JSON-serialisable. An exception is logged as ``exc``: its type
and the ``file:line`` of each traceback frame only, because an exception's message can quote
request data (a handle, a token, an address).

Callers keep personal data out of ``msg`` and ``extra``: log route templates, statuses, counts and
pseudonymous ids such as a call id, never a handle, token, IP address, device key or account id.
Libraries do not know that rule (aiohttp logs the client's address and its subprotocol list, a
bearer token included), so the handler also redacts every record, whoever logged it: addresses
and token-shaped strings are replaced, and the message is formatted once so no argument object
(a request, a transport) reaches a formatter.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_BASE_KEYS = ("ts", "level", "logger", "msg", "exc")


def _exception(
    info: tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None],
) -> dict[str, Any] | None:
    kind, _value, tb = info
    if kind is None:
        return None
    frames = [f"{frame.filename}:{frame.lineno}" for frame in traceback.extract_tb(tb)]
    return {"type": f"{kind.__module__}.{kind.__qualname__}", "frames": frames}


def _serialisable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string still gets logged, unformatted
            message = str(record.msg)
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": message,
        }
        extras = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _RECORD_FIELDS and key not in _BASE_KEYS and not key.startswith("_")
        }
        line.update(extras)
        if record.exc_info:
            exc = _exception(record.exc_info)
            if exc is not None:
                line["exc"] = exc
        try:
            # One encode for the common case (every access-log line); check fields only if needed.
            return json.dumps(line, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):
            for key, value in extras.items():
                if not _serialisable(value):
                    del line[key]
            return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


REDACTED = "[redacted]"

_IPV4 = r"(?<![\d.])(?:::ffff:)?(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"
# Full form, or any form with "::" (a time of day such as 12:30:45 matches neither).
_HEX = "[0-9a-fA-F]"
_IPV6 = (
    rf"(?<![\w:])(?:(?:{_HEX}{{1,4}}:){{7}}{_HEX}{{1,4}}"
    rf"|(?:{_HEX}{{1,4}}:){{0,7}}{_HEX}{{0,4}}::(?:{_HEX}{{1,4}}(?::{_HEX}{{1,4}}){{0,6}})?)(?![\w:])"
)
# A JWT's header is base64 of '{"': it starts with eyJ.
_JWT = r"eyJ[\w-]*\.[\w-]*\.?[\w-]*"
# The call socket's subprotocols (bearer.<token>, resume.<token>), an Authorization header's
# value, and operator tokens.
_LABELLED = r"(?<!\w)(?:(?i:bearer)[.\s]\s*|resume\.)[^\s,'\"\]\)]+|cbo_[\w-]+"
_SECRETS = re.compile("|".join((_JWT, _LABELLED, _IPV4, _IPV6)))


def redact(text: str) -> str:
    """``text`` with addresses and token-shaped strings replaced by ``[redacted]``."""
    return _SECRETS.sub(REDACTED, text)


#: Set (through ``extra=``) on records built only from values that cannot carry personal data,
#: such as the access log's (a known method, a route template, a status): they skip the redaction,
#: which would double the cost of a line written for every request.
CLEAN = "_clean"


class Redact(logging.Filter):
    """Redact every record in place (installed on the handler: library loggers included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.__dict__.get(CLEAN):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string still gets logged, unformatted
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and isinstance(value, str):
                record.__dict__[key] = redact(value)
        return True


def handler(stream: IO[str] | None = None) -> logging.Handler:
    """The one log handler: redacted JSON lines to ``stream`` (stderr)."""
    out = logging.StreamHandler(sys.stderr if stream is None else stream)
    out.addFilter(Redact())
    out.setFormatter(JsonFormatter())
    return out


def configure(level: int | str = logging.INFO) -> None:
    """Log redacted JSON lines to stderr from the root logger, replacing any handlers it had."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler())
    root.setLevel(level)
