"""Reads every key of a store back as the inventory's field names (``directory/inventory.py``).

The names follow the inventory's rules: a hash's field names, or for entries keyed by an id the
id's name and the keys of each JSON value (positions of a JSON array, named in order; the one
value field of a plain value); a sorted set's score; a stream's field names and its consumer
groups (``delivery_group``); ``field.key`` inside a JSON field the inventory names so. Anything
the inventory has no name for comes back as ``<unnamed ...>``, so a comparison fails on it.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import msgspec

from directory.inventory import INVENTORY, Datum, glob
from directory.store import Store

_TYPES = {"hash": "hash", "string": "string", "set": "set", "zset": "sorted_set",
          "stream": "stream"}  # fmt: skip


def datum_for(key: str) -> Datum | None:
    matches = [d for d in INVENTORY if fnmatch.fnmatchcase(key, glob(d))]
    assert len(matches) <= 1, f"{key} matches several entries: {[d.name for d in matches]}"
    return matches[0] if matches else None


def _json(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


def _value_fields(datum: Datum) -> list[str]:
    outer = {datum.entry, datum.score}
    return [f for f in datum.fields if f not in outer and "." not in f]


def _position(named: list[str], index: int) -> str:
    return named[index] if index < len(named) else f"<unnamed position {index}>"


def _value_names(datum: Datum, raw: str) -> set[str]:
    """The names in one value: JSON object keys, array positions, or the single value field."""
    value = _json(raw)
    named = _value_fields(datum)
    if isinstance(value, dict):
        return set(value)
    if isinstance(value, list):
        return {_position(named, i) for i in range(len(value))}
    return {named[0]} if len(named) == 1 else {"<unnamed value>"}


def _record_names(datum: Datum, record: dict[str, str]) -> set[str]:
    """Field names of a hash or stream entry, and ``field.key`` inside JSON fields named so."""
    names = set(record)
    for field, raw in record.items():
        if any(f.startswith(field + ".") for f in datum.fields):
            value = _json(raw)
            keys = value if isinstance(value, dict) else {"<not an object>": None}
            names |= {f"{field}.{key}" for key in keys}
    return names


async def _hash(store: Store, key: str, datum: Datum) -> set[str]:
    stored: dict[str, str] = await store.redis.hgetall(key)
    if datum.entry is None:
        return _record_names(datum, stored)
    names = {datum.entry}
    for raw in stored.values():
        names |= _value_names(datum, raw)
    return names


async def _sorted_set(store: Store, key: str, datum: Datum) -> set[str]:
    members: list[str] = await store.redis.zrange(key, 0, -1)
    names = {datum.score or "<unnamed score>"}
    for member in members:
        names |= {datum.entry} if datum.entry else _value_names(datum, member)
    return names


async def _stream(store: Store, key: str, datum: Datum) -> set[str]:
    names: set[str] = set()
    for _id, fields in await store.redis.xrange(key):
        names |= _record_names(datum, fields)
    if await store.redis.xinfo_groups(key):
        names.add("delivery_group")
    return names


async def _string(store: Store, key: str, datum: Datum) -> set[str]:
    return _value_names(datum, await store.redis.get(key))


async def stored_fields(store: Store, key: str, datum: Datum) -> set[str]:
    """The names of every field the key holds; a type the inventory does not state fails."""
    kind = _TYPES.get(await store.redis.type(key), "<other>")
    assert kind == datum.type, f"{key} is a {kind}, the inventory says {datum.type}"
    if kind == "set":
        return {datum.entry or "<unnamed member>"}
    reader = {"hash": _hash, "sorted_set": _sorted_set, "stream": _stream, "string": _string}
    return await reader[kind](store, key, datum)
