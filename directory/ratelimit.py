"""Token buckets kept in the store, so every node shares one budget per account."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from directory.errors import RateLimited
from directory.storage import keys
from directory.store import Store

# The clock is the store's own (TIME), so nodes with skewed clocks still agree. The tokens a
# bucket holds now, refilled since its last use; both scripts below start with it.
_REFILLED = """
local capacity = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * refill)
"""

_TOKEN_BUCKET = (
    _REFILLED
    + """
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait_ms = math.ceil((1 - tokens) / refill * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return wait_ms
"""
)

# Without spending: 1 when a token is there now, else 0.
_PEEK = (
    _REFILLED
    + """
if tokens >= 1 then return 1 end
return 0
"""
)


async def take(store: Store, key: str, burst: int, refill_per_s: float, what: str) -> None:
    """Spend one token from the bucket at ``key`` or raise RateLimited with the wait."""
    check(await spend(store, Bucket(key, burst, refill_per_s)), what)


async def spend(store: Store, bucket: Bucket) -> int:
    """Spend one token if there is one; the wait in ms when there was none (0: spent)."""
    return int(await store.run_script(_TOKEN_BUCKET, [bucket.key], bucket.args()))


async def has_token(store: Store, bucket: Bucket) -> bool:
    return bool(await store.run_script(_PEEK, [bucket.key], bucket.args()[:2]))


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    burst: int
    refill_per_s: float

    def args(self) -> list[Any]:
        return [self.burst, self.refill_per_s, keys.RATE_LIMIT_IDLE_TTL_S]


async def run_with_bucket(store: Store, bucket: Bucket, queue: Callable[[Any], None]) -> list[Any]:
    """Spend a token from ``bucket`` and execute a pipeline that ``queue`` fills, in one round
    trip; returns the bucket's answer (pass it to ``check``) followed by the pipeline's results.

    On one server the script goes first in the pipeline, by EVALSHA alone (a registered script
    would make the pipeline ask SCRIPT EXISTS first, on every execute), and is loaded once if
    the server answers NOSCRIPT (restarted or failed over). redis-py's cluster pipeline refuses
    scripts, so on a Redis Cluster the script and the pipeline run side by side: two requests,
    still one round trip of waiting.
    """
    if store.cluster:
        async with store.redis.pipeline(transaction=False) as pipe:
            queue(pipe)
            wait_ms, rest = await asyncio.gather(
                store.run_script(_TOKEN_BUCKET, [bucket.key], bucket.args()), pipe.execute()
            )
        return [wait_ms, *rest]
    sha = store.script(_TOKEN_BUCKET).sha
    for attempt in (1, 2):
        async with store.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(sha, 1, bucket.key, *bucket.args())
            queue(pipe)
            try:
                results: list[Any] = await pipe.execute()
                return results
            except NoScriptError:
                if attempt == 2:
                    raise
        await store.redis.script_load(_TOKEN_BUCKET)
    raise AssertionError("unreachable")


def check(wait_ms: Any, what: str) -> None:
    """Raise RateLimited when the bucket's answer was a wait."""
    wait_ms = int(wait_ms)
    if wait_ms > 0:
        retry_after = max(1, math.ceil(wait_ms / 1000))
        raise RateLimited(f"Too many {what}; try again in {retry_after} s.", retry_after)


def recovery_bucket(store: Store, handle: str) -> Bucket:
    """Recovery attempts on one handle, whether or not anyone holds it."""
    cfg = store.config
    return Bucket(
        keys.recovery_bucket_key(store.handle_digest(handle)),
        cfg.recovery_burst,
        cfg.recovery_refill_per_s,
    )
