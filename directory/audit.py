"""The audit log: one append-only stream of every operator action.

Nothing edits or deletes an entry; the stream is only trimmed from its old end (XADD MINID) to
the configured retention. Entries name the operator, the action, its target (a call id, an
account id, a report id; never a handle) and the reason the operator gave.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from directory import keys
from directory.store import Store

Action = Literal[
    "reveal",
    "end_call",
    "disconnect_device",
    "suspend",
    "unsuspend",
    "decide_report",
]
MAX_COUNT = 500


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    #: The stream id: pass it as ``after`` to read on from here.
    id: str
    at: int
    operator: str
    action: str
    target: str
    reason: str


async def append(store: Store, operator: str, action: Action, target: str, reason: str) -> str:
    now = store.clock()
    oldest_ms = int((now - store.config.audit_retention_s) * 1000)
    fields = {
        "at": str(int(now)),
        "operator": operator,
        "action": action,
        "target": target,
        "reason": reason,
    }
    entry_id: str = await store.redis.xadd(keys.audit_log(), fields, minid=oldest_ms)
    return entry_id


async def read(store: Store, after: str | None, count: int) -> list[AuditEntry]:
    """Oldest first, from just after ``after`` (the beginning when None)."""
    start = "-" if after is None else f"({after}"
    raw = await store.redis.xrange(keys.audit_log(), min=start, max="+", count=count)
    return [
        AuditEntry(
            id=entry_id,
            at=int(fields.get("at", 0)),
            operator=fields.get("operator", ""),
            action=fields.get("action", ""),
            target=fields.get("target", ""),
            reason=fields.get("reason", ""),
        )
        for entry_id, fields in raw
    ]
