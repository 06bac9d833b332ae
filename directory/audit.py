"""The audit log: one append-only stream of every operator action.

No API edits or deletes an entry; the stream is trimmed from its old end (XADD MINID) to the
configured retention. Entries name the operator, the action, its target (a call id, an account
id, ``account_id/device_id``, a report id; never a handle) and the reason the operator gave.

One rewrite, by erase: the erased person's ids leave every entry (``forget``). What
accountability needs stays, the operator, the action, the time and the reason; the person's
account and device ids (and, in entries that target them, their handle) become a random
pseudonym, a new one per entry, so the entries cannot be linked to each other either. No entry
is exempt: reports drop the erased person's id at the same moment (``reports.forget``), so no
report can need it, and an action on an account that no longer exists cannot be appealed or
repeated (docs/privacy.md).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Collection
from typing import Literal

import msgspec

from directory.records import AuditRecord
from directory.storage import keys
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
_PAGE = 1000
#: What an erased person's ids become: random per entry.
PSEUDONYM_PREFIX = "erased:"

#: KEYS: the audit stream. ARGV: entry id, target, reason, ... for the entries to change.
#: A stream entry cannot be edited in place, and a new entry cannot take an old id: the stream
#: is rebuilt with the same ids, in one script so no append slips in between. O(entries).
_REWRITE = """
local changes = {}
for i = 1, #ARGV, 3 do changes[ARGV[i]] = {ARGV[i + 1], ARGV[i + 2]} end
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
local found = 0
for _, entry in ipairs(entries) do
  if changes[entry[1]] then found = found + 1 end
end
if found == 0 then return 0 end
redis.call('DEL', KEYS[1])
for _, entry in ipairs(entries) do
  local fields = entry[2]
  local change = changes[entry[1]]
  if change then
    for j = 1, #fields, 2 do
      if fields[j] == 'target' then fields[j + 1] = change[1] end
      if fields[j] == 'reason' then fields[j + 1] = change[2] end
    end
  end
  redis.call('XADD', KEYS[1], entry[1], unpack(fields))
end
return found
"""


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
    return [_entry(entry_id, fields) for entry_id, fields in raw]


def _entry(entry_id: str, fields: dict[str, str]) -> AuditEntry:
    return AuditEntry(
        id=entry_id,
        at=int(fields.get("at", 0)),
        operator=fields.get("operator", ""),
        action=fields.get("action", ""),
        target=fields.get("target", ""),
        reason=fields.get("reason", ""),
    )


async def _all(store: Store) -> AsyncIterator[AuditEntry]:
    """Every entry, oldest first, a page at a time (the log is read whole only by export and
    erase, both rare)."""
    after: str | None = None
    while page := await read(store, after, _PAGE):
        for entry in page:
            yield entry
        after = page[-1].id


def _targets(entry: AuditEntry, account_id: str) -> bool:
    return entry.target == account_id or entry.target.startswith(account_id + "/")


async def about(store: Store, account_id: str, report_ids: Collection[str]) -> list[AuditRecord]:
    """The entries on one person, for their export: those targeting the account or one of its
    devices, and decisions on the reports it filed. Without the operator's name."""
    return [
        AuditRecord(id=e.id, at=e.at, action=e.action, target=e.target, reason=e.reason)
        async for e in _all(store)
        if _targets(e, account_id) or e.target in report_ids
    ]


async def forget(store: Store, account_id: str, device_ids: Collection[str], handle: str) -> int:
    """At erase: the person's ids in every entry become a pseudonym, random per entry.

    Ids are replaced wherever they appear (target and reason); the handle only in the reasons
    of entries that target the person, where it surely means them (a handle can be a word).
    Returns how many entries changed.
    """
    ids = re.compile("|".join(re.escape(i) for i in {account_id, *device_ids}))
    # Not inside a longer handle (handles hold letters, digits, _ and .); a full stop may end it.
    handle_word = re.compile(rf"(?<![\w.]){re.escape(handle)}(?!\w|\.\w)", re.IGNORECASE)
    changes: list[str] = []
    async for entry in _all(store):
        targeted = _targets(entry, account_id)
        if not targeted and not ids.search(entry.reason):
            continue
        pseudonym = PSEUDONYM_PREFIX + secrets.token_hex(8)
        target = pseudonym if targeted else entry.target
        reason = ids.sub(pseudonym, entry.reason)
        if targeted:
            reason = handle_word.sub(pseudonym, reason)
        changes += [entry.id, target, reason]
    if not changes:
        return 0
    changed: int = await store.run_script(_REWRITE, [keys.audit_log()], changes)
    return changed
