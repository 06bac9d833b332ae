"""One-time start-up migrations of data written by earlier versions.

Each is idempotent and safe with several nodes starting at once: a key is moved by writing its
new name only if absent and then deleting the old one, so two nodes moving the same key leave
one copy. Run every node of a deployment on the same version: a node of the previous version
still running would keep writing the old forms (docs/deploy.md, upgrading).
"""

from __future__ import annotations

import logging

from directory import keyring
from directory.storage import keys
from directory.store import Store

log = logging.getLogger(__name__)


async def run(store: Store) -> None:
    moved = await rekey_handles(store)
    sealed = await keyring.seal_clear_keys(store)
    if moved or sealed:
        log.info(
            "migrated %d handle key(s) to keyed digests, sealed %d signing key(s)", moved, sealed
        )


async def rekey_handles(store: Store) -> int:
    """Rename the keys named by an unkeyed handle digest to the keyed one, keeping their TTLs.

    The keyed digest is taken of the unkeyed one (``keys.handle_preimage``), so a quarantined
    handle, whose name nobody knows any more, moves too.
    """
    if await store.redis.get(keys.handle_digests_migrated()):
        return 0
    keyed = store.deployment_secret().digest
    moved = 0
    async for old in store.redis.scan_iter(match=keys.LEGACY_HANDLE_KEYS, count=1000):
        new = keys.rekeyed_handle_key(old, keyed)
        if new is not None:
            moved += await _move(store, old, new)
    await store.redis.set(keys.handle_digests_migrated(), "1")
    return moved


async def _move(store: Store, old: str, new: str) -> int:
    """Copy ``old`` to ``new`` unless ``new`` exists, with the same TTL; then delete ``old``.

    The two names hash to different Redis Cluster slots, so this cannot be one script.
    """
    redis = store.redis
    kind = await redis.type(old)
    ttl_ms = await redis.pttl(old)
    copied = 0
    if kind == "string":
        value = await redis.get(old)
        if value is not None:
            copied = int(
                bool(await redis.set(new, value, nx=True, px=ttl_ms if ttl_ms > 0 else None))
            )
    elif kind == "hash":
        fields = await redis.hgetall(old)
        if fields and not await redis.exists(new):
            await redis.hset(new, mapping=fields)
            if ttl_ms > 0:
                await redis.pexpire(new, ttl_ms)
            copied = 1
    await redis.delete(old)
    return copied
