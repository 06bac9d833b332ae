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


Values = dict[str, set[str]]


def _json(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


def text(value: Any) -> str:
    """A stored value as text: JSON null is empty, JSON booleans are ``1`` and ``0``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def _add(values: Values, name: str, value: Any) -> None:
    values.setdefault(name, set()).add(text(value))


def _value_fields(datum: Datum) -> list[str]:
    outer = {datum.entry, datum.score}
    return [f for f in datum.fields if f not in outer and "." not in f]


def _position(named: list[str], index: int) -> str:
    return named[index] if index < len(named) else f"<unnamed position {index}>"


def _add_value(values: Values, datum: Datum, raw: str) -> None:
    """One value: JSON object keys, array positions, or the single value field."""
    value = _json(raw)
    named = _value_fields(datum)
    if isinstance(value, dict):
        for name, item in value.items():
            _add(values, name, item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _add(values, _position(named, index), item)
    else:
        _add(values, named[0] if len(named) == 1 else "<unnamed value>", raw)


def _add_record(values: Values, datum: Datum, record: dict[str, str]) -> None:
    """A hash or stream entry, and ``field.key`` inside JSON fields the inventory names so."""
    for field, raw in record.items():
        _add(values, field, raw)
        if any(f.startswith(field + ".") for f in datum.fields):
            value = _json(raw)
            inner = value if isinstance(value, dict) else {"<not an object>": None}
            for name, item in inner.items():
                _add(values, f"{field}.{name}", item)


async def _hash(store: Store, key: str, datum: Datum, values: Values) -> None:
    stored: dict[str, str] = await store.redis.hgetall(key)
    if datum.entry is None:
        _add_record(values, datum, stored)
        return
    for entry, raw in stored.items():
        _add(values, datum.entry, entry)
        _add_value(values, datum, raw)


async def _set(store: Store, key: str, datum: Datum, values: Values) -> None:
    for member in await store.redis.smembers(key):
        _add(values, datum.entry or "<unnamed member>", member)


async def _sorted_set(store: Store, key: str, datum: Datum, values: Values) -> None:
    score_name = datum.score or "<unnamed score>"
    for member, score in await store.redis.zrange(key, 0, -1, withscores=True):
        if datum.entry:
            _add(values, datum.entry, member)
        else:
            _add_value(values, datum, member)
        value = _json(member)
        # A JSON member holding the score's field (its time, as "at") stands for the score.
        if not (isinstance(value, dict) and score_name in value):
            _add(values, score_name, score)


async def _stream(store: Store, key: str, datum: Datum, values: Values) -> None:
    for _id, fields in await store.redis.xrange(key):
        _add_record(values, datum, fields)
    for group in await store.redis.xinfo_groups(key):
        _add(values, "delivery_group", group["name"])


async def _string(store: Store, key: str, datum: Datum, values: Values) -> None:
    _add_value(values, datum, await store.redis.get(key))


async def stored_values(store: Store, key: str, datum: Datum) -> Values:
    """Every field the key holds, by name, with the values seen; a type the inventory does not
    state fails."""
    kind = _TYPES.get(await store.redis.type(key), "<other>")
    assert kind == datum.type, f"{key} is a {kind}, the inventory says {datum.type}"
    reader = {"hash": _hash, "set": _set, "sorted_set": _sorted_set, "stream": _stream,
              "string": _string}  # fmt: skip
    values: Values = {}
    await reader[kind](store, key, datum, values)
    return values


async def stored_fields(store: Store, key: str, datum: Datum) -> set[str]:
    return set(await stored_values(store, key, datum))
