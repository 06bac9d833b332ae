"""Storage for the server's token signing keys, shared by every node through the store.

The keys are opaque here; the signaling service generates them and signs with them. One key is
current (the newest); older ones stay until every token they signed has expired.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import msgspec

from directory import keys
from directory.records import SigningKey
from directory.store import Store

_encode = msgspec.json.Encoder().encode

# Adds the candidate key only if the newest stored key is due for rotation, atomically, so
# nodes noticing together add one key between them.
_ADD_IF_DUE = """
local newest = tonumber(redis.call('GET', KEYS[2]) or '-1e18')
if tonumber(ARGV[1]) - newest < tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""
_decode = msgspec.json.Decoder(SigningKey).decode


async def load(store: Store) -> list[SigningKey]:
    """All stored keys, newest first."""
    raw: dict[str, str] = await store.redis.hgetall(keys.signing_keys())
    return sorted((_decode(v) for v in raw.values()), key=lambda k: k.created_at, reverse=True)


async def rotate_if_due(
    store: Store,
    make_key: Callable[[float], SigningKey],
    *,
    rotate_after_s: float,
    keep_for_s: float,
) -> list[SigningKey]:
    """Add a new key when the newest is older than ``rotate_after_s``; drop retired keys."""
    now = store.clock()
    current = await load(store)
    if not current or now - current[0].created_at >= rotate_after_s:
        key = make_key(now)
        await store.run_script(
            _ADD_IF_DUE,
            [keys.signing_keys(), keys.signing_key_newest()],
            [repr(now), rotate_after_s, key.kid, _encode(key)],
        )
        current = await load(store)
    # A key is retired once its successor has signed for longer than a token lives.
    retired = [
        older.kid
        for newer, older in itertools.pairwise(current)
        if now - newer.created_at > keep_for_s
    ]
    if retired:
        await store.redis.hdel(keys.signing_keys(), *retired)
        current = [k for k in current if k.kid not in retired]
    return current
