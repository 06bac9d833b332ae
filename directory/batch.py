"""Store commands and Lua scripts sent together: one write and one round trip for the lot.

On one server they go in one pipeline, in order, each script as ``EVALSHA`` alone (a script
registered with redis-py's pipeline would make it ask ``SCRIPT EXISTS`` before every execute).
A store that answers ``NOSCRIPT`` (restarted, failed over) gets the script loaded and only the
commands that failed sent again: the others ran, and a compare-and-set must not run twice. On a
Redis Cluster, whose pipeline refuses scripts, a batch of plain commands goes in its pipeline
(one request per shard, side by side) and one with scripts runs one command after the other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from directory.store import Store

#: What a staged job does with the batch's results (all of them, indexed as it queued them).
Finish = Callable[[list[Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Staged:
    """A job of a writer that queues its commands on a batch shared with the jobs queued next
    to it (``stage``), and is told the results (the ``Finish`` it returns, if any): one round
    trip for all of them."""

    stage: Callable[[Batch], Finish | None]


class Batch:
    def __init__(self, store: Store) -> None:
        self._store = store
        # (script source, or None for a plain command; its arguments)
        self._ops: list[tuple[str | None, tuple[Any, ...]]] = []

    def __len__(self) -> int:
        return len(self._ops)

    def command(self, *args: Any) -> int:
        """Queue a command (``"HDEL", key, field``); its index in ``execute``'s results."""
        self._ops.append((None, args))
        return len(self._ops) - 1

    def script(self, source: str, keys: list[str], args: list[Any]) -> int:
        self._ops.append((source, (len(keys), *keys, *args)))
        return len(self._ops) - 1

    async def execute(self) -> list[Any]:
        """Every result, in order; the first command's error, if one failed."""
        if self._store.cluster:
            if any(source is not None for source, _ in self._ops):
                return [await self._alone(source, args) for source, args in self._ops]
            async with self._store.redis.pipeline() as pipe:
                for _, args in self._ops:
                    pipe.execute_command(*args)
                commands: list[Any] = await pipe.execute()
            return commands
        results = await self._pipelined(list(range(len(self._ops))))
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            for source in {self._ops[i][0] for i in missing}:
                await self._store.redis.script_load(source)
            for i, result in zip(missing, await self._pipelined(missing), strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def _pipelined(self, indexes: list[int]) -> list[Any]:
        async with self._store.redis.pipeline(transaction=False) as pipe:
            for i in indexes:
                source, args = self._ops[i]
                if source is None:
                    pipe.execute_command(*args)
                else:
                    pipe.execute_command("EVALSHA", self._store.script(source).sha, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    async def _alone(self, source: str | None, args: tuple[Any, ...]) -> Any:
        if source is None:
            return await self._store.redis.execute_command(*args)
        count = args[0]
        return await self._store.run_script(
            source, list(args[1 : 1 + count]), list(args[1 + count :])
        )
