"""Live calls in the store, so that another node can continue a call whose node died.

The node that runs a call (its *owner*) writes a snapshot after every transition that changed
it: the pure machine's ``Call`` or ``GroupCall`` (msgspec, msgpack in base64), the timers it has
set, a version and the owner's id. Each write is a compare-and-set in Lua on (version, owner): a
node that lost the call to another one (it was taken for dead) can no longer overwrite it, and
learns so. ``take_over`` is the same compare-and-set on the owner: only a call whose owner is
the dead node moves, and only to the first survivor that asks.

Keys (``directory.storage.keys``): ``call_record`` per call (``{c:<id>}``) and ``node_calls`` per
node (``{n:<node>}``), both expiring ``CALL_RECORD_TTL_S`` after the owner's last refresh.

A record names the parties by account and device id only: the handles and display names of
the machine's cards (``m.Person``) are blanked before the write and read back from the address
book when a node takes the call over (``load``, ``take_over``). The store's append-only file
keeps every write until its next rewrite; a handle there would outlive an erase
(issue 12, "call parties on disk").
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

import msgspec

from directory import accounts
from directory.batch import Batch
from directory.storage import keys
from directory.store import Store
from signaling.calls import group as g
from signaling.calls import machine as sm
from signaling.cluster.outage import StoreOutage
from signaling.protocol import messages as m

AnyCall = sm.Call | g.GroupCall


class Timer(msgspec.Struct, frozen=True, array_like=True):
    kind: sm.TimerKind
    at: float
    device: sm.DeviceRef | None = None


class Snapshot(msgspec.Struct, kw_only=True):
    one: sm.Call | None = None
    group: g.GroupCall | None = None
    timers: list[Timer] = msgspec.field(default_factory=list)
    #: The media node its SFU room lives on (group and relayed calls), for a survivor to adopt.
    media: str | None = None


class Stored(msgspec.Struct, frozen=True):
    call: AnyCall
    timers: list[Timer]
    version: int
    owner: str
    media_node: str | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)


Names = dict[str, tuple[str, str | None]]


def _named(person: m.Person, names: Names) -> m.Person:
    handle, display_name = names.get(person.account_id, (None, None))
    return m.Person(account_id=person.account_id, handle=handle, display_name=display_name)


def with_names(call: AnyCall, names: Names) -> AnyCall:
    """The call with every card's handle and display name taken from ``names`` (account id ->
    handle, display name); an account missing there (erased) gets none."""
    return _cards(call, lambda person: _named(person, names))


def without_names(call: AnyCall) -> AnyCall:
    """What a record keeps of the call: every card reduced to its account id."""
    return with_names(call, {})


def _cards(call: AnyCall, change: Callable[[m.Person], m.Person]) -> AnyCall:
    if isinstance(call, g.GroupCall):
        members = {d: replace(x, person=change(x.person)) for d, x in call.members.items()}
        return replace(call, host=change(call.host), members=members)
    return replace(call, caller_card=change(call.caller_card), callee_card=change(call.callee_card))


def _accounts_named(call: AnyCall) -> Iterable[str]:
    if isinstance(call, g.GroupCall):
        return [call.host.account_id, *(x.person.account_id for x in call.members.values())]
    return [call.caller_card.account_id, call.callee_card.account_id]


def encode(call: AnyCall, timers: list[Timer], media: str | None = None) -> str:
    call = without_names(call)
    snapshot = (
        Snapshot(group=call, timers=timers, media=media)
        if isinstance(call, g.GroupCall)
        else Snapshot(one=call, timers=timers, media=media)
    )
    return base64.b64encode(_encoder.encode(snapshot)).decode()


def decode(raw: str) -> Snapshot:
    snapshot = _decoder.decode(base64.b64decode(raw))
    if snapshot.one is None and snapshot.group is None:
        raise ValueError("a call record without a call")
    return snapshot


def _call(snapshot: Snapshot) -> AnyCall:
    call = snapshot.one if snapshot.one is not None else snapshot.group
    assert call is not None  # decode checked
    return call


#: KEYS: record. ARGV: expected version (0: new), owner, state, ttl, restore (0/1).
#: New version; -1 if the record moved on or to another owner; -2 if it is missing (expired).
_SAVE = """
local v = redis.call('HGET', KEYS[1], 'v')
local owner = redis.call('HGET', KEYS[1], 'owner')
if not v and ARGV[1] ~= '0' and ARGV[5] ~= '1' then
  return -2
end
if (not v) or (v == ARGV[1] and owner == ARGV[2]) then
  local next = tonumber(ARGV[1]) + 1
  redis.call('HSET', KEYS[1], 'v', next, 'owner', ARGV[2], 'state', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return next
end
return -1
"""

#: KEYS: record. ARGV: owner. Deletes only the owner's record.
_DELETE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: KEYS: record. ARGV: dead owner, new owner, ttl. The record (v, state) if it moved, else nil.
_TAKE_OVER = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return false
end
local next = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {next, redis.call('HGET', KEYS[1], 'state')}
"""


#: KEYS: record. ARGV: owner, expected version, next owner, ttl. The new version, or -1.
#: The owner gives its call away (drain): only at the version it wrote last, so that nothing it
#: did is lost, and only while it still owns it.
_HAND_OVER = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner ~= ARGV[1] or redis.call('HGET', KEYS[1], 'v') ~= ARGV[2] then
  return -1
end
local next = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return next
"""


class CallRecords:
    def __init__(
        self,
        store: Store,
        node_id: str,
        ttl_s: int = keys.CALL_RECORD_TTL_S,
        outage: StoreOutage | None = None,
    ) -> None:
        self._store = store
        self._redis: Any = store.redis
        self._node_id = node_id
        self._ttl_s = ttl_s
        #: Where this node reports that the store was unreachable.
        self.outage = outage or StoreOutage()
        # Call -> when this node first held it (created or took it over): see ``_may_restore``.
        self._held_since: dict[str, float] = {}

    async def save(
        self, call: AnyCall, timers: list[Timer], version: int, media: str | None = None
    ) -> int | None:
        """Write the call if it is still at ``version`` and ours; the new version, else None.
        ``media``: the media node of the call's SFU room, if it has one."""
        batch = Batch(self._store)
        saved = self.stage_save(batch, call, timers, version, media)
        return await saved(await batch.execute())

    def stage_save(
        self, batch: Batch, call: AnyCall, timers: list[Timer], version: int, media: str | None
    ) -> Callable[[list[Any]], Awaitable[int | None]]:
        """``save`` on a batch; what it returns tells the new version from the batch's results."""
        state = encode(call, timers, media)
        args = [version, self._node_id, state, self._ttl_s, 0]
        if version == 0:
            # Indexed first: a record a survivor cannot find would never be taken over.
            self._queue_index(batch, [call.id])
            self._held_since[call.id] = self._store.clock()
        at = batch.script(_SAVE, [keys.call_record(call.id)], args)

        async def saved(results: list[Any]) -> int | None:
            return await self._saved(call.id, int(results[at]), args)

        return saved

    async def _saved(self, call_id: str, result: int, args: list[Any]) -> int | None:
        if result == -2 and await self._may_restore(call_id):
            # The record expired while the store was away (or unreachable from here), and no
            # node took the call over: write it again and put it back in this node's index.
            args[-1] = 1
            result = int(await self._store.run_script(_SAVE, [keys.call_record(call_id)], args))
            if result > 0:
                await self._index([call_id])
        if result > 0:
            return result
        self._held_since.pop(call_id, None)
        return None

    @property
    def store(self) -> Store:
        return self._store

    def hold(self, call_id: str) -> None:
        """This node runs the call from now on (adopted from a draining node)."""
        self._held_since.setdefault(call_id, self._store.clock())

    async def _may_restore(self, call_id: str) -> bool:
        """Whether a missing record of a call this node runs may be written again: not if
        another node judged this one dead since it has held the call (the call may have been
        taken over and ended; writing it back would raise it from the dead)."""
        judged = await self._redis.zscore(keys.nodes_judged_dead(), self._node_id)
        since = self._held_since.get(call_id)
        return since is not None and (judged is None or float(judged) < since)

    async def _index(self, call_ids: list[str], node: str | None = None) -> None:
        batch = Batch(self._store)
        self._queue_index(batch, call_ids, node)
        await batch.execute()

    def _queue_index(self, batch: Batch, call_ids: list[str], node: str | None = None) -> None:
        index = keys.node_calls(node or self._node_id)
        batch.command("SADD", index, *call_ids)
        batch.command("EXPIRE", index, self._ttl_s)

    async def delete(self, call_id: str) -> None:
        batch = Batch(self._store)
        self.stage_delete(batch, call_id)
        await batch.execute()

    def stage_delete(self, batch: Batch, call_id: str) -> None:
        self._held_since.pop(call_id, None)
        batch.script(_DELETE, [keys.call_record(call_id)], [self._node_id])
        batch.command("SREM", keys.node_calls(self._node_id), call_id)

    async def owner(self, call_id: str) -> str | None:
        owner: str | None = await self._redis.hget(keys.call_record(call_id), "owner")
        return owner

    async def load(self, call_id: str) -> Stored | None:
        fields = await self._redis.hgetall(keys.call_record(call_id))
        if not fields:
            return None
        snapshot = decode(fields["state"])
        call = await self._named(_call(snapshot))
        return Stored(call, snapshot.timers, int(fields["v"]), fields["owner"], snapshot.media)

    async def _named(self, call: AnyCall) -> AnyCall:
        """The cards' handles and display names, from the address book as they are now."""
        ids = [account_id for account_id in _accounts_named(call) if account_id]
        return with_names(call, await accounts.names(self._store, ids))

    async def refresh(self, call_ids: list[str]) -> list[str]:
        """The owner is alive: its records and its index live on. Returns the calls whose
        record is missing (expired during an outage): the owner writes them again."""
        if not call_ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for call_id in call_ids:
            pipe.expire(keys.call_record(call_id), self._ttl_s)
        found = await pipe.execute()
        await self._index(call_ids)
        return [call_id for call_id, ok in zip(call_ids, found, strict=True) if not ok]

    async def owned_by(self, node: str) -> list[str]:
        members: set[str] = await self._redis.smembers(keys.node_calls(node))
        return sorted(members)

    async def take_over(self, call_id: str, dead_node: str) -> Stored | None:
        result = await self._store.run_script(
            _TAKE_OVER, [keys.call_record(call_id)], [dead_node, self._node_id, self._ttl_s]
        )
        if not result:
            return None
        version, state = result
        snapshot = decode(state)
        self._held_since[call_id] = self._store.clock()
        await self._index([call_id])
        call = await self._named(_call(snapshot))
        return Stored(call, snapshot.timers, int(version), self._node_id, snapshot.media)

    async def hand_over(self, call_id: str, version: int, successor: str) -> int | None:
        """Give our call at ``version`` to ``successor``; its new version, or None if the call is
        no longer ours or changed since ``version``."""
        result = await self._store.run_script(
            _HAND_OVER,
            [keys.call_record(call_id)],
            [self._node_id, version, successor, self._ttl_s],
        )
        if int(result) < 0:
            return None
        self._held_since.pop(call_id, None)
        await self._index([call_id], successor)
        await self._redis.srem(keys.node_calls(self._node_id), call_id)
        return int(result)

    async def forget_node(self, node: str) -> None:
        await self._redis.delete(keys.node_calls(node))
