"""What an erasure leaves in the store's files, and the rewrite that removes it.

Deleting keys removes a person from the store's memory, but its append-only file still holds
every command that ever wrote them, until the file is rewritten from memory. So each erasure
counts itself in the store (``keys.erasures``) and, every ``interval_s``, one node of the
deployment (the holder of ``keys.rewrite_lease``) rewrites the files of every primary when
erasures arrived since the last rewrite: a burst of erasures costs one rewrite. A rewrite starts
after the erasures it covers were counted, so its new files hold none of their data, and the
server deletes the old files once it has finished. With RDB snapshots configured, a new snapshot
replaces the old one too.

An external store whose settings cannot be read (a managed Redis forbidding CONFIG) is left
alone, with a warning at start-up; docs/deploy.md says what its operator must configure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from directory.storage import keys
from directory.storage.connection import STORE_UNAVAILABLE
from directory.store import Store

log = logging.getLogger(__name__)

#: How often a node checks whether erasures await a rewrite, unless configured otherwise.
DEFAULT_INTERVAL_S = 60.0
_POLL_S = 0.05
_UNREACHABLE: tuple[type[Exception], ...] = (*STORE_UNAVAILABLE, OSError)

# Raises the covered count, never lowers it (a slower rewrite that began earlier may finish last).
_COVERED = """
local done = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > done then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class Persistence:
    """What a store server writes to disk, from ``CONFIG GET``."""

    append_only: bool
    snapshots: bool
    keeps_old_files: bool

    @property
    def writes(self) -> bool:
        return self.append_only or self.snapshots


def assess(settings: Mapping[str, str]) -> Persistence:
    return Persistence(
        append_only=settings.get("appendonly") == "yes",
        snapshots=bool(settings.get("save", "").strip()),
        keeps_old_files=settings.get("aof-disable-auto-gc") == "yes",
    )


def warnings(persistence: Persistence | None) -> list[str]:
    """What the operator must fix for erasures to leave the store's disk (no personal data)."""
    if persistence is None:
        return [
            "the store's persistence settings cannot be read (CONFIG GET is refused): erased "
            "accounts stay in its files until it rewrites them; see docs/deploy.md"
        ]
    if persistence.keeps_old_files:
        return [
            "the store keeps old append-only files (aof-disable-auto-gc yes): erased accounts "
            "stay in them; set aof-disable-auto-gc no (docs/deploy.md)"
        ]
    return []


async def note_erasure(store: Store) -> None:
    """Count an erasure whose deletions have all been acknowledged."""
    await store.redis.incr(keys.erasures())


async def read_persistence(store: Store) -> Persistence | None:
    """The settings of the store (of its first primary on a Redis Cluster: a deployment
    configures its nodes alike), or None when the store refuses CONFIG."""
    target = (await _servers(store))[0]
    settings: dict[str, str] = {}
    try:
        for name in ("appendonly", "save", "aof-disable-auto-gc"):
            settings.update(await store.redis.execute_command("CONFIG GET", name, **target))
    except ResponseError:
        return None
    return assess(settings)


async def pending(store: Store) -> tuple[int, int]:
    """(erasures counted, erasures covered by a finished rewrite)."""
    counted, covered = await store.redis.mget(keys.erasures(), keys.erasures_rewritten())
    return int(counted or 0), int(covered or 0)


async def rewrite_if_due(store: Store, node_id: str, persistence: Persistence) -> bool:
    """Rewrite the store's files if erasures arrived since the last rewrite and no other node
    is rewriting them now; True when this call rewrote them."""
    counted, covered = await pending(store)
    if counted <= covered:
        return False
    lease = keys.rewrite_lease()
    if not await store.redis.set(lease, node_id, nx=True, ex=keys.REWRITE_LEASE_S):
        return False  # that node's rewrite, or ours at the next check, covers these erasures
    try:
        # Read after taking the lease: the rewrite below starts after every erasure counted here.
        counted, _ = await pending(store)
        for target in await _servers(store):
            if persistence.append_only:
                await _run_child(store, target, "BGREWRITEAOF", "aof_last_bgrewrite_status")
            if persistence.snapshots:
                await _run_child(store, target, "BGSAVE", "rdb_last_bgsave_status")
        await store.run_script(_COVERED, [keys.erasures_rewritten()], [counted])
    finally:
        await store.run_script(_RELEASE, [lease], [node_id])
    return True


_BUSY = ("aof_rewrite_in_progress", "aof_rewrite_scheduled", "rdb_bgsave_in_progress")


async def _run_child(store: Store, target: dict[str, Any], command: str, status: str) -> None:
    """Start a rewrite or snapshot once the server runs none (one already running may have
    started before the erasures), and wait until it has finished."""
    while True:
        await _idle(store, target)
        try:
            await store.redis.execute_command(command, **target)
            break
        except ResponseError as exc:
            if "in progress" not in str(exc):
                raise
    info = await _idle(store, target)
    if info.get(status) != "ok":
        raise RuntimeError(f"the store failed a {command}; see its log")


async def _idle(store: Store, target: dict[str, Any]) -> dict[str, Any]:
    """INFO persistence once the server runs no rewrite or snapshot and has none scheduled."""
    while True:
        info: dict[str, Any] = await store.redis.execute_command("INFO", "persistence", **target)
        if not any(int(info.get(flag, 0)) for flag in _BUSY):
            return info
        await asyncio.sleep(_POLL_S)


async def _servers(store: Store) -> list[dict[str, Any]]:
    """Command targets: the one server, or each primary of a Redis Cluster (a replica
    rewrites its own files; docs/deploy.md)."""
    if not store.cluster:
        return [{}]
    await store.redis.initialize()  # the client learns the nodes at its first command
    return [{"target_nodes": node} for node in store.redis.get_primaries()]


async def keep_rewriting(store: Store, node_id: str, interval_s: float) -> None:
    """The node's task: warn once about unsafe settings, then rewrite when due, forever. A
    store that does not answer is asked again at the next check; one that refuses the rewrite
    gets a warning and is left alone."""
    persistence = await _settings(store, interval_s)
    for warning in warnings(persistence):
        log.warning(warning)
    if persistence is None or not persistence.writes:
        return
    while True:
        await asyncio.sleep(interval_s)
        try:
            await rewrite_if_due(store, node_id, persistence)
        except _UNREACHABLE:
            continue
        except ResponseError as exc:
            log.warning(
                "the store refuses to rewrite its files (%s): erased accounts stay in them "
                "until it rewrites them itself; see docs/deploy.md",
                exc,
            )
            return
        except RuntimeError as exc:
            log.warning("%s; trying again in %g s", exc, interval_s)


async def _settings(store: Store, interval_s: float) -> Persistence | None:
    while True:
        try:
            return await read_persistence(store)
        except _UNREACHABLE:
            await asyncio.sleep(interval_s)
