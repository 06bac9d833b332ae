"""Abuse reports, operators' decisions on them, and the statements of reasons people receive.

A report names its reporter and, when the handle the reporter typed is one the reporter may
find, the reported account; otherwise it is kept as ``unmatched`` (with no trace of the handle),
and the reporter gets the same answer either way, so reporting does not reveal who exists.
Reports, their indexes and notices expire after the report retention. Erasing an account
anonymises the reports it filed (the reporter id is removed) and those naming it.

A decision writes a notice (a statement of reasons) to the reporter and, unless the report is
dismissed, to the reported account; ``suspend`` and ``ban_handle`` suspend the reported account.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from directory import accounts, lookup, ratelimit
from directory.errors import AlreadyDecided, InvalidValue, NotFound
from directory.records import Category, Decision, FiledReport, Notice, Status
from directory.storage import keys
from directory.store import Store

MAX_TEXT = 1000
MAX_STATEMENT = 2000
_QUEUE_MAX = 500


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """A report as operators see it: parties by account id (null: unmatched or erased)."""

    id: str
    category: Category
    text: str
    call_id: str | None
    at: int
    status: Status
    reporter: str | None
    reported: str | None
    decision: Decision | None = None
    statement: str | None = None
    decided_at: int | None = None


_encode = msgspec.json.Encoder().encode
_decode_notice = msgspec.json.Decoder(Notice).decode

# Only for an account that still exists (it may be erased while its report is decided).
_ADD_NOTICE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""
# Changes a field of a report only while it exists: never recreates an expired one.
_SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def _retention(store: Store) -> int:
    return store.config.report_retention_s


async def file(
    store: Store,
    reporter_id: str,
    raw_handle: str,
    category: Category,
    text: str,
    call_id: str | None,
) -> str:
    """Store a report; the answer is the same whether or not the handle names anyone."""
    config = store.config
    bucket = ratelimit.Bucket(
        keys.report_bucket(reporter_id), config.report_burst, config.report_refill_per_s
    )
    # As a lookup: a hidden or blocking target costs what an unknown handle costs.
    card = await lookup.resolve(store, reporter_id, raw_handle, bucket, "reports")
    owner = card.account_id if card is not None and card.account_id != reporter_id else None
    report_id = secrets.token_hex(16)
    now = store.clock()
    ttl = _retention(store)
    fields = {
        "category": category,
        "text": text,
        "call_id": call_id or "",
        "at": str(int(now)),
        "status": "received" if owner else "unmatched",
        "reporter": reporter_id,
        "reported": owner or "",
    }
    # The indexes first, so erase can always find what names an account.
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.sadd(keys.reports_filed(reporter_id), report_id)
        pipe.expire(keys.reports_filed(reporter_id), ttl)
        if owner:
            pipe.sadd(keys.reports_about(owner), report_id)
            pipe.expire(keys.reports_about(owner), ttl)
        await pipe.execute()
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.report(report_id), mapping=fields)
        pipe.expire(keys.report(report_id), ttl)
        await pipe.execute()
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.report_queue(), {report_id: now})
        pipe.zremrangebyscore(keys.report_queue(), "-inf", now - ttl)
        pipe.expire(keys.report_queue(), ttl)
        await pipe.execute()
    return report_id


def _from_hash(report_id: str, raw: dict[str, Any]) -> Report:
    decided_at = raw.get("decided_at")
    return Report(
        id=report_id,
        category=raw["category"],
        text=raw.get("text", ""),
        call_id=raw.get("call_id") or None,
        at=int(raw.get("at", 0)),
        status=raw["status"],
        reporter=raw.get("reporter") or None,
        reported=raw.get("reported") or None,
        decision=raw.get("decision") or None,
        statement=raw.get("statement") or None,
        decided_at=int(decided_at) if decided_at else None,
    )


async def get(store: Store, report_id: str) -> Report:
    raw = await store.redis.hgetall(keys.report(report_id))
    if not raw:
        raise NotFound("No such report (or it has expired).")
    return _from_hash(report_id, raw)


async def _load(store: Store, report_ids: list[str]) -> list[Report]:
    if not report_ids:
        return []
    async with store.redis.pipeline(transaction=False) as pipe:
        for report_id in report_ids:
            pipe.hgetall(keys.report(report_id))
        raws = await pipe.execute()
    return [_from_hash(rid, raw) for rid, raw in zip(report_ids, raws, strict=True) if raw]


async def queue(store: Store, count: int = 100) -> list[Report]:
    """The newest reports first, decided ones included; expired ones leave the queue."""
    now = store.clock()
    await store.redis.zremrangebyscore(keys.report_queue(), "-inf", now - _retention(store))
    ids: list[str] = await store.redis.zrevrange(keys.report_queue(), 0, min(count, _QUEUE_MAX) - 1)
    found = await _load(store, ids)
    gone = set(ids) - {r.id for r in found}
    if gone:
        await store.redis.zrem(keys.report_queue(), *gone)
    return found


async def decide(store: Store, report_id: str, decision: Decision, statement: str) -> Report:
    """Record the decision, act on the reported account, and notify both parties."""
    report = await get(store, report_id)
    if report.status == "decided":
        raise AlreadyDecided(f"Report {report_id} was decided already ({report.decision}).")
    if decision in ("suspend", "ban_handle", "warn") and report.reported is None:
        raise InvalidValue("This report names no account; only 'dismiss' applies.")
    now = int(store.clock())
    if report.reported is not None and decision in ("suspend", "ban_handle"):
        await accounts.suspend(store, report.reported, ban_handle=decision == "ban_handle")
    await store.redis.hset(
        keys.report(report_id),
        mapping={
            "status": "decided",
            "decision": decision,
            "statement": statement,
            "decided_at": str(now),
        },
    )
    if report.reporter is not None:
        await add_notice(
            store, report.reporter,
            Notice(id=secrets.token_hex(8), at=now, kind="report_decision", statement=statement,
                   decision=decision, report=report_id, role="reporter"),
        )  # fmt: skip
    if report.reported is not None and decision != "dismiss":
        await add_notice(
            store, report.reported,
            Notice(id=secrets.token_hex(8), at=now, kind="report_decision", statement=statement,
                   decision=decision, report=report_id, role="reported"),
        )  # fmt: skip
    return await get(store, report_id)


async def add_notice(store: Store, account_id: str, notice: Notice) -> None:
    ttl = _retention(store)
    await store.run_script(
        _ADD_NOTICE,
        [keys.account(account_id), keys.notices(account_id)],
        [notice.at, _encode(notice), store.clock() - ttl, ttl],
    )


async def list_notices(store: Store, account_id: str) -> list[Notice]:
    """Newest first."""
    oldest = store.clock() - _retention(store)
    await store.redis.zremrangebyscore(keys.notices(account_id), "-inf", oldest)
    raw: list[str] = await store.redis.zrevrange(keys.notices(account_id), 0, 499)
    return [_decode_notice(item) for item in raw]


async def list_filed(store: Store, account_id: str) -> list[FiledReport]:
    """The reports this account filed and that are still kept, newest first."""
    ids = sorted(await store.redis.smembers(keys.reports_filed(account_id)))
    filed = [
        FiledReport(
            id=r.id, category=r.category, text=r.text, call_id=r.call_id, at=r.at,
            status="decided" if r.status == "decided" else "received",
            decision=r.decision, statement=r.statement, decided_at=r.decided_at,
        )
        for r in await _load(store, ids)
    ]  # fmt: skip
    return sorted(filed, key=lambda r: r.at, reverse=True)


async def forget(store: Store, account_id: str) -> None:
    """Before an erase: remove the account id from every report that names it."""
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.smembers(keys.reports_filed(account_id))
        pipe.smembers(keys.reports_about(account_id))
        filed, about = await pipe.execute()
    for report_id in filed:
        await store.run_script(_SET_IF_EXISTS, [keys.report(report_id)], ["reporter", ""])
    for report_id in about:
        await store.run_script(_SET_IF_EXISTS, [keys.report(report_id)], ["reported", ""])
