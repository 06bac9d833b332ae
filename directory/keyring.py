"""Storage for the server's token signing keys, shared by every node through the store.

The keys are opaque here; the signaling service generates them and signs with them. One key is
current (the newest); older ones stay until every token they signed has expired. At rest each
private key is sealed under the deployment secret (``directory.secret``), so read access to the
store does not let anyone mint tokens, and a key written by someone without the secret (clear
or sealed under another secret) is never used to sign or verify.
"""

from __future__ import annotations

import base64
import itertools
import logging
from collections.abc import Callable

import msgspec
from cryptography.exceptions import InvalidTag

from directory.records import SigningKey, StoredSigningKey
from directory.storage import keys
from directory.store import Store

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(StoredSigningKey).decode

# Adds the candidate key only if the newest stored key is due for rotation, atomically, so
# nodes noticing together add one key between them.
_ADD_IF_DUE = """
local newest = tonumber(redis.call('GET', KEYS[2]) or '-1e18')
if tonumber(ARGV[1]) - newest < tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""
# Replaces a key's stored form only if it is still the one read: a key retired meanwhile by
# another node stays retired.
_REPLACE_IF_UNCHANGED = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


def seal(store: Store, key: SigningKey) -> str:
    raw = base64.urlsafe_b64decode(key.private_key)
    sealed = store.deployment_secret().seal(raw, key.kid)
    stored = StoredSigningKey(
        kid=key.kid, created_at=key.created_at, sealed=base64.b64encode(sealed).decode()
    )
    return _encode(stored).decode()


def _open(store: Store, kid: str, value: str) -> SigningKey | None:
    stored = _decode(value)
    if not stored.sealed or stored.kid != kid:
        return None
    try:
        raw = store.deployment_secret().open(base64.b64decode(stored.sealed), kid)
    except (InvalidTag, ValueError):
        return None
    private = base64.urlsafe_b64encode(raw).decode()
    return SigningKey(kid=stored.kid, private_key=private, created_at=stored.created_at)


async def load(store: Store) -> list[SigningKey]:
    """The stored keys this deployment's secret opens, newest first."""
    raw: dict[str, str] = await store.redis.hgetall(keys.signing_keys())
    opened = [_open(store, kid, value) for kid, value in raw.items()]
    usable = [k for k in opened if k is not None]
    if len(usable) < len(raw):
        log.error(
            "%d stored signing key(s) do not open with this node's deployment secret: every "
            "node of a deployment must share the same CALLBOOK_SECRET",
            len(raw) - len(usable),
        )
    return sorted(usable, key=lambda k: k.created_at, reverse=True)


async def seal_clear_keys(store: Store) -> int:
    """Start-up migration: seal the keys stored in clear before the deployment secret existed.

    Idempotent, and safe with several nodes starting at once: each replacement is conditional
    on the value read. Returns how many keys this call sealed.
    """
    raw: dict[str, str] = await store.redis.hgetall(keys.signing_keys())
    sealed = 0
    for kid, value in raw.items():
        stored = _decode(value)
        if stored.sealed or not stored.private_key:
            continue
        clear = SigningKey(kid=kid, private_key=stored.private_key, created_at=stored.created_at)
        sealed += await store.run_script(
            _REPLACE_IF_UNCHANGED, [keys.signing_keys()], [kid, value, seal(store, clear)]
        )
    return sealed


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
            [repr(now), rotate_after_s, key.kid, seal(store, key)],
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
