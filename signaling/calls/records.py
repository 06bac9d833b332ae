"""Live calls in the store, so that another node can continue a call whose node died.

The node that runs a call (its *owner*) writes a snapshot after every transition that changed
it: the pure machine's ``Call`` or ``GroupCall`` (msgspec, msgpack in base64), the timers it has
set, a version and the owner's id. Each write is a compare-and-set in Lua on (version, owner): a
node that lost the call to another one (it was taken for dead) can no longer overwrite it, and
learns so. ``take_over`` is the same compare-and-set on the owner: only a call whose owner is
the dead node moves, and only to the first survivor that asks.

Keys (``directory.keys``): ``call_record`` per call (``{c:<id>}``) and ``node_calls`` per node
(``{n:<node>}``), both expiring ``CALL_RECORD_TTL_S`` after the owner's last refresh.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from directory import keys
from directory.store import Store
from signaling.calls import group as g
from signaling.calls import machine as sm

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


def encode(call: AnyCall, timers: list[Timer], media: str | None = None) -> str:
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


#: KEYS: record. ARGV: expected version (0: new), owner, state, ttl. New version, or -1.
_SAVE = """
local v = redis.call('HGET', KEYS[1], 'v')
local owner = redis.call('HGET', KEYS[1], 'owner')
if (not v and ARGV[1] == '0') or (v == ARGV[1] and owner == ARGV[2]) then
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
    def __init__(self, store: Store, node_id: str, ttl_s: int = keys.CALL_RECORD_TTL_S) -> None:
        self._store = store
        self._redis: Any = store.redis
        self._node_id = node_id
        self._ttl_s = ttl_s

    async def save(
        self, call: AnyCall, timers: list[Timer], version: int, media: str | None = None
    ) -> int | None:
        """Write the call if it is still at ``version`` and ours; the new version, else None.
        ``media``: the media node of the call's SFU room, if it has one."""
        if version == 0:
            index = keys.node_calls(self._node_id)
            await self._redis.sadd(index, call.id)
            await self._redis.expire(index, self._ttl_s)
        result = await self._store.run_script(
            _SAVE,
            [keys.call_record(call.id)],
            [version, self._node_id, encode(call, timers, media), self._ttl_s],
        )
        return int(result) if int(result) > 0 else None

    async def delete(self, call_id: str) -> None:
        await self._store.run_script(_DELETE, [keys.call_record(call_id)], [self._node_id])
        await self._redis.srem(keys.node_calls(self._node_id), call_id)

    async def owner(self, call_id: str) -> str | None:
        owner: str | None = await self._redis.hget(keys.call_record(call_id), "owner")
        return owner

    async def load(self, call_id: str) -> Stored | None:
        fields = await self._redis.hgetall(keys.call_record(call_id))
        if not fields:
            return None
        snapshot = decode(fields["state"])
        return Stored(
            _call(snapshot), snapshot.timers, int(fields["v"]), fields["owner"], snapshot.media
        )

    async def refresh(self, call_ids: list[str]) -> None:
        """The owner is alive: its records and its index live on."""
        if not call_ids:
            return
        pipe = self._redis.pipeline(transaction=False)
        for call_id in call_ids:
            pipe.expire(keys.call_record(call_id), self._ttl_s)
        await pipe.execute()
        index = keys.node_calls(self._node_id)
        await self._redis.sadd(index, *call_ids)
        await self._redis.expire(index, self._ttl_s)

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
        index = keys.node_calls(self._node_id)
        await self._redis.sadd(index, call_id)
        await self._redis.expire(index, self._ttl_s)
        return Stored(_call(snapshot), snapshot.timers, int(version), self._node_id, snapshot.media)

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
        index = keys.node_calls(successor)
        await self._redis.sadd(index, call_id)
        await self._redis.expire(index, self._ttl_s)
        await self._redis.srem(keys.node_calls(self._node_id), call_id)
        return int(result)

    async def forget_node(self, node: str) -> None:
        await self._redis.delete(keys.node_calls(node))
