"""Missed calls: the only call history kept, per callee, for 30 days.

Each entry names the caller by account id and by the handle they had at the time. A reverse index
in the caller's keys lets erase remove the entries that name an erased caller.
"""

from __future__ import annotations

import secrets

import msgspec

from directory.records import MissedCall
from directory.storage import keys
from directory.store import Store

_encode = msgspec.json.Encoder().encode
#: An account id no account has (ids are 32 hex digits).
_NOBODY = "-"
_decode = msgspec.json.Decoder(MissedCall).decode


# Only for an account that still exists: a call may ring out after its callee was erased.
_RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# ``_RECORD``'s commands on scratch keys, then undone.
_RECORD_NOTHING = """
redis.call('EXISTS', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('SREM', KEYS[2], ARGV[5])
return 1
"""


async def record_missed(
    store: Store, callee_id: str, caller_id: str, caller_handle: str, at: float
) -> None:
    entry = MissedCall(caller_account_id=caller_id, caller_handle=caller_handle, at=int(at))
    # The reverse index first, so erase can always find what names the caller.
    await store.redis.sadd(keys.missed_by(caller_id), callee_id)
    await store.redis.expire(keys.missed_by(caller_id), keys.MISSED_CALLS_TTL_S)
    recorded = await store.run_script(
        _RECORD,
        [keys.account(callee_id), keys.missed_calls(callee_id)],
        [at, _encode(entry), at - keys.MISSED_CALLS_TTL_S, keys.MISSED_CALLS_TTL_S],
    )
    if not recorded:
        await store.redis.srem(keys.missed_by(caller_id), callee_id)


async def record_nothing(store: Store, at: float) -> None:
    """What ``record_missed`` costs the store, round trip for round trip and write for write,
    remembering nothing: for a call that ended unanswered whose callee may not be rung, so that
    its end costs the same (a caller must not tell "blocked" from "offline" by timing, and a
    store that skips the writes frees the CPU it shares with the node sooner). The writes go to
    scratch keys under an id no account has, with a random member that names nobody, and are
    undone by the script that makes them."""
    member = secrets.token_hex(16)
    entry = MissedCall(caller_account_id=member, caller_handle="", at=int(at))
    await store.redis.sadd(keys.missed_by(_NOBODY), member)
    await store.redis.expire(keys.missed_by(_NOBODY), keys.MISSED_CALLS_TTL_S)
    await store.run_script(
        _RECORD_NOTHING,
        [keys.missed_calls(_NOBODY), keys.missed_by(_NOBODY)],
        [at, _encode(entry), at - keys.MISSED_CALLS_TTL_S, keys.MISSED_CALLS_TTL_S, member],
    )


async def list_missed(store: Store, account_id: str) -> list[MissedCall]:
    """Newest first; entries past the retention are dropped on the way."""
    oldest = store.clock() - keys.MISSED_CALLS_TTL_S
    await store.redis.zremrangebyscore(keys.missed_calls(account_id), "-inf", oldest)
    raw: list[str] = await store.redis.zrevrange(keys.missed_calls(account_id), 0, 499)
    return [_decode(item) for item in raw]


async def clear_missed(store: Store, account_id: str) -> None:
    await store.redis.delete(keys.missed_calls(account_id))


async def forget(store: Store, account_id: str) -> None:
    """Before an erase: no other account's history keys may name this one afterwards."""
    await _forget_caller(store, account_id)
    # The callers of this account index it as a callee; drop it from their indexes.
    raw: list[str] = await store.redis.zrange(keys.missed_calls(account_id), 0, -1)
    for caller_id in {_decode(item).caller_account_id for item in raw}:
        await store.redis.srem(keys.missed_by(caller_id), account_id)


async def _forget_caller(store: Store, caller_id: str) -> None:
    """Remove every entry naming ``caller_id`` from the lists of the people it called."""
    callees: set[str] = await store.redis.smembers(keys.missed_by(caller_id))
    for callee in callees:
        raw: list[str] = await store.redis.zrange(keys.missed_calls(callee), 0, -1)
        stale = [item for item in raw if _decode(item).caller_account_id == caller_id]
        if stale:
            await store.redis.zrem(keys.missed_calls(callee), *stale)
