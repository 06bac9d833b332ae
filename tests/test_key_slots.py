"""Every key carries a hash tag, and every multi-key operation stays in one Redis Cluster slot.

Walks the key builders of ``directory/storage/keys.py`` (so a key added later is checked too), then
the operations that touch several keys at once: each MULTI, each script with more than one key, and
erase's DEL. The cluster runs of the multi-node tests exercise the same operations for real; this
test names them, and fails on a new key without a tag before any cluster does.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

import pytest
from redis.crc import key_slot

from directory.inventory import INVENTORY, account_keys
from directory.storage import keys

ID = "0123456789abcdef0123456789abcdef"
_TAG = re.compile(r"\{([^}]*)\}")
#: Builders of parts of keys (tags, digests) and the migration's renamer, not of keys.
_NOT_KEYS = {"account_tag", "node_tag", "call_tag", "handle_preimage", "rekeyed_handle_key"}


def _builders() -> list[tuple[str, Callable[..., str]]]:
    found: list[tuple[str, Callable[..., str]]] = []
    for name, function in inspect.getmembers(keys, inspect.isfunction):
        if function.__module__ == keys.__name__ and name not in _NOT_KEYS:
            found.append((name, function))
    return found


def _build(function: Callable[..., str]) -> str:
    arity = len(inspect.signature(function).parameters)
    return function(*[ID] * arity)


def _slot(key: str) -> int:
    return int(key_slot(key.encode()))


@pytest.mark.parametrize(("name", "builder"), _builders(), ids=[n for n, _ in _builders()])
def test_every_key_has_one_hash_tag_that_picks_its_slot(
    name: str, builder: Callable[..., str]
) -> None:
    key = _build(builder)
    assert key.startswith(keys.PREFIX + ":"), name
    tags = _TAG.findall(key)
    assert len(tags) == 1 and tags[0], f"{name}: {key} needs exactly one non-empty hash tag"
    assert _slot(key) == _slot(tags[0]), f"{name}: the tag of {key} does not decide its slot"


def _shape(key: str) -> str:
    """A key with each hash tag, placeholders nested in it included, reduced to ``{}``."""
    while True:
        reduced = re.sub(r"\{[^{}]*\}", "\x00", key)
        if reduced == key:
            return key.replace("\x00", "{}")
        key = reduced


def test_the_builders_cover_the_inventory() -> None:
    # Each inventory entry is built by some builder: the walk above sees every stored key.
    built = {_shape(_build(f)) for _, f in _builders()}
    for datum in INVENTORY:
        assert _shape(datum.key_pattern) in built, f"{datum.name}: no builder makes it"


#: Operations on several keys at once, as the code issues them (module: what).
MULTI_KEY_OPERATIONS: dict[str, list[str]] = {
    "accounts.signup (MULTI)": [keys.account(ID), keys.devices(ID)],
    "accounts.recover (script)": [keys.account(ID), keys.devices(ID), keys.push_tokens(ID)],
    "portability.erase (DEL)": list(account_keys(ID)),
    "devices.add (script)": [keys.devices(ID), keys.account(ID)],
    "devices.revoke (MULTI)": [keys.devices(ID), keys.push_tokens(ID)],
    "push_tokens.register (script)": [keys.devices(ID), keys.push_tokens(ID)],
    "history.record_missed (script)": [keys.account(ID), keys.missed_calls(ID)],
    "contacts.link (script)": [keys.account(ID), keys.contact_of(ID), keys.blocked_by(ID)],
    "reports.add_notice (script)": [keys.account(ID), keys.notices(ID)],
    "keyring.add_if_due (script)": [keys.signing_keys(), keys.signing_key_newest()],
    "webhooks (stream, dead letters, lease)": [
        keys.webhook_events(),
        keys.webhook_dead_letters(),
        keys.webhook_lease(),
    ],
}


@pytest.mark.parametrize("operation", sorted(MULTI_KEY_OPERATIONS))
def test_each_multi_key_operation_stays_in_one_slot(operation: str) -> None:
    slots = {_slot(key) for key in MULTI_KEY_OPERATIONS[operation]}
    assert len(slots) == 1, f"{operation} spans slots {sorted(slots)}"


def test_keys_of_different_accounts_spread_over_slots() -> None:
    # The point of per-account tags: accounts spread over the shards instead of one hot slot.
    slots = {_slot(keys.account(f"{i:032x}")) for i in range(1000)}
    assert len(slots) > 900
