"""Contacts (with a private nickname) and blocks.

Each entry lives in the owner's keys with a reverse index in the target's keys, so erasing an
account finds every list that names it without scanning the store. The reverse index is written
first, and only while the target account exists: a crash in between leaves at most a reverse
entry without a forward one, which erase tolerates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from directory import labels, lookup
from directory.errors import InvalidValue, NotFound
from directory.records import MAX_NICKNAME, Block, Contact, StoredContact
from directory.storage import keys
from directory.store import Store

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(StoredContact).decode

T = TypeVar("T", Contact, Block)

_SADD_IF_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""


def check_nickname(nickname: str | None) -> str | None:
    return labels.check(nickname, MAX_NICKNAME, "nickname")


async def _link(store: Store, target_id: str, reverse_key: str, owner_id: str) -> None:
    linked = await store.run_script(
        _SADD_IF_ACCOUNT, [keys.account(target_id), reverse_key], [owner_id]
    )
    if not linked:
        raise NotFound("No such account.")


async def add_contact(
    store: Store, owner_id: str, raw_handle: str, nickname: str | None
) -> Contact:
    nickname = check_nickname(nickname)
    card = await lookup.find(store, owner_id, raw_handle)
    if card.account_id == owner_id:
        raise InvalidValue("You cannot add yourself as a contact.")
    await _link(store, card.account_id, keys.contact_of(card.account_id), owner_id)
    record = StoredContact(nickname=nickname, added_day=store.today())
    await store.redis.hset(keys.contacts(owner_id), card.account_id, _encode(record))
    return Contact(
        account_id=card.account_id,
        handle=card.handle,
        display_name=card.display_name,
        nickname=nickname,
        added_day=record.added_day,
    )


async def set_nickname(store: Store, owner_id: str, contact_id: str, nickname: str | None) -> None:
    value = await store.redis.hget(keys.contacts(owner_id), contact_id)
    if value is None:
        raise NotFound("No such contact.")
    record = msgspec.structs.replace(_decode(value), nickname=check_nickname(nickname))
    await store.redis.hset(keys.contacts(owner_id), contact_id, _encode(record))


async def remove_contact(store: Store, owner_id: str, contact_id: str) -> None:
    if not await store.redis.hdel(keys.contacts(owner_id), contact_id):
        raise NotFound("No such contact.")
    await store.redis.srem(keys.contact_of(contact_id), owner_id)


async def list_contacts(store: Store, owner_id: str) -> list[Contact]:
    raw: dict[str, str] = await store.redis.hgetall(keys.contacts(owner_id))

    def build(account_id: str, handle: str | None, display_name: str | None) -> Contact:
        record = _decode(raw[account_id])
        return Contact(
            account_id=account_id,
            handle=handle,
            display_name=display_name,
            nickname=record.nickname,
            added_day=record.added_day,
        )

    return await _resolve(store, owner_id, keys.contacts(owner_id), list(raw), build)


async def block(store: Store, owner_id: str, raw_handle: str) -> Block:
    card = await lookup.find(store, owner_id, raw_handle)
    return await block_account(store, owner_id, card.account_id)


async def block_account(store: Store, owner_id: str, target_id: str) -> Block:
    """Block by account id: how a person blocks a caller whose handle they cannot find."""
    if target_id == owner_id:
        raise InvalidValue("You cannot block yourself.")
    await _link(store, target_id, keys.blocked_by(target_id), owner_id)
    day = store.today()
    await store.redis.hset(keys.blocks(owner_id), target_id, day)
    card = await lookup.visible_card(store, owner_id, target_id)
    return Block(account_id=target_id, handle=card.handle if card else None, blocked_day=day)


async def unblock(store: Store, owner_id: str, target_id: str) -> None:
    if not await store.redis.hdel(keys.blocks(owner_id), target_id):
        raise NotFound("That account is not blocked.")
    await store.redis.srem(keys.blocked_by(target_id), owner_id)


async def list_blocks(store: Store, owner_id: str) -> list[Block]:
    raw: dict[str, str] = await store.redis.hgetall(keys.blocks(owner_id))

    def build(account_id: str, handle: str | None, _display_name: str | None) -> Block:
        return Block(account_id=account_id, handle=handle, blocked_day=raw[account_id])

    return await _resolve(store, owner_id, keys.blocks(owner_id), list(raw), build)


async def _resolve(
    store: Store,
    owner_id: str,
    list_key: str,
    account_ids: list[str],
    build: Callable[[str, str | None, str | None], T],
) -> list[T]:
    """Each entry with the handle and name the owner may see now (None where a lookup would
    find nothing); entries of erased accounts are dropped for good."""
    if not account_ids:
        return []
    async with store.redis.pipeline(transaction=False) as pipe:
        for account_id in account_ids:
            pipe.exists(keys.account(account_id))
            lookup.queue_card_reads(pipe, owner_id, account_id)
        reads = await pipe.execute()
    entries: list[T] = []
    gone: list[str] = []
    step = 1 + lookup.CARD_READS
    for i, account_id in enumerate(account_ids):
        exists, *card_reads = reads[i * step : (i + 1) * step]
        if not exists:
            gone.append(account_id)
            continue
        card = lookup.card_from(owner_id, account_id, card_reads)
        handle, name = (card.handle, card.display_name) if card else (None, None)
        entries.append(build(account_id, handle, name))
    if gone:
        await store.redis.hdel(list_key, *gone)
    return sorted(entries, key=lambda e: (e.handle is None, e.handle or "", e.account_id))
