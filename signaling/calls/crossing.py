"""What every node must see of the calls other nodes run: glare and busy (docs/scaling.md).

- **Ringing pairs.** A 1:1 call that rings is written into the hash of its two accounts
  (``keys.ringing_pair``) by a script that, in the same step, returns the calls ringing the other
  way. The store runs the scripts of two crossing invites one after the other, so the second
  always sees the first: exactly one node finds the crossing, as one node does in memory.
- **Busy devices.** The owner of a call writes each device that talks in it into the account's
  busy hash (``keys.busy``), refreshes it with its call records and removes it when the device
  stops talking. An invite on any node reads it to flag ``incoming`` as ``busy``.

Entries carry their owner and a deadline; readers skip entries past it or written by a node that
is not alive, so a node that dies leaves nothing that counts (and its keys expire).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec

from directory.batch import Batch
from directory.storage import keys
from directory.store import Store

_encode = msgspec.json.Encoder().encode


class Ringing(msgspec.Struct, frozen=True):
    call: str
    owner: str


class Busy(msgspec.Struct, frozen=True, kw_only=True):
    call: str
    node: str
    until: float


_decode_busy = msgspec.json.Decoder(Busy).decode

#: KEYS: the pair's hash. ARGV: call id, caller account, owner, now, deadline, ttl, written
#: (1/0). Drops entries past their deadline, adds the call, returns {call id, owner} of each
#: entry whose caller is the other account (the calls crossing this one). With written 0 (a
#: callee who may not be rung) it reads and cleans the same, and neither adds nor returns.
_RING = """
local crossing = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local entry = cjson.decode(entries[i + 1])
  if tonumber(entry.d) < tonumber(ARGV[4]) then
    redis.call('HDEL', KEYS[1], entries[i])
  elseif entry.c ~= ARGV[2] and entries[i] ~= ARGV[1] then
    table.insert(crossing, entries[i])
    table.insert(crossing, entry.o)
  end
end
if ARGV[7] ~= '1' then
  return {}
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({c = ARGV[2], o = ARGV[3], d = ARGV[5]}))
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[6]) then
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
return crossing
"""

#: KEYS: the account's busy hash. ARGV: device id, call id. Removes the entry only if it is
#: still this call's (the device may have moved on to another call meanwhile).
_UNBUSY = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value and cjson.decode(value).call == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


#: KEYS: the account's busy hash. ARGV: ttl, entry, device ids. One script, so that the entries
#: never outlive their TTL (as MULTI did), and so that it can share a pipeline.
_BUSY = """
for i = 3, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 0
"""


class Crossing:
    def __init__(self, store: Store, node_id: str, ring_timeout_s: float) -> None:
        self._store = store
        self._redis: Any = store.redis
        self._node_id = node_id
        self._ring_ttl_s = math.ceil(ring_timeout_s) + keys.RINGING_MARGIN_S

    async def ring(
        self, call_id: str, caller: str, callee: str, written: bool = True
    ) -> list[Ringing]:
        """Record a ringing call; the calls ringing from ``callee`` to ``caller``. Not
        ``written``: the same script, which records and finds nothing."""
        batch = Batch(self._store)
        at = self.stage_ring(batch, call_id, caller, callee, written)
        return crossing_calls(await batch.execute(), at)

    # The writes below are queued on a batch: the writes of a call's change, and of the changes
    # queued next to it, go in one round trip (``crossing_calls.py``).

    def stage_ring(
        self, batch: Batch, call_id: str, caller: str, callee: str, written: bool = True
    ) -> int:
        """``ring`` on a batch; the index of its result (read it with ``crossing_calls``)."""
        now = self._store.clock()
        return batch.script(
            _RING,
            [keys.ringing_pair(caller, callee)],
            [call_id, caller, self._node_id, now, now + self._ring_ttl_s, self._ring_ttl_s,
             1 if written else 0],
        )  # fmt: skip

    def stop_ringing(self, batch: Batch, call_id: str, caller: str, callee: str) -> None:
        batch.command("HDEL", keys.ringing_pair(caller, callee), call_id)

    def set_busy(self, batch: Batch, call_id: str, account_id: str, device_ids: list[str]) -> None:
        if not device_ids:
            return
        until = self._store.clock() + keys.BUSY_TTL_S
        value = _encode(Busy(call=call_id, node=self._node_id, until=until)).decode()
        batch.script(_BUSY, [keys.busy(account_id)], [keys.BUSY_TTL_S, value, *device_ids])

    def clear_busy(self, batch: Batch, call_id: str, account_id: str, device_id: str) -> None:
        batch.script(_UNBUSY, [keys.busy(account_id)], [device_id, call_id])

    async def busy(self, account_id: str) -> dict[str, Busy]:
        """The account's devices in a connected call (by device id), entries past their time
        left out; whether their owner is alive is for the caller to check."""
        batch = Batch(self._store)
        return self.stage_busy(batch, account_id)(await batch.execute())

    def stage_busy(self, batch: Batch, account_id: str) -> Callable[[list[Any]], dict[str, Busy]]:
        """``busy`` on a batch; what it returns reads the answer from the batch's results."""
        at = batch.command("HGETALL", keys.busy(account_id))
        return lambda results: self._busy(results[at])

    def _busy(self, raw: dict[str, str]) -> dict[str, Busy]:
        now = self._store.clock()
        found = {device_id: _decode_busy(value) for device_id, value in raw.items()}
        return {device_id: entry for device_id, entry in found.items() if entry.until >= now}


def crossing_calls(results: list[Any], at: int) -> list[Ringing]:
    """The calls crossing a new one, from a batch that staged its ``ring`` at ``at``."""
    found = results[at]
    return [Ringing(str(found[i]), str(found[i + 1])) for i in range(0, len(found), 2)]
