"""Export everything the store holds about a person, and erase all of it."""

from __future__ import annotations

from directory import (
    accounts,
    audit,
    contacts,
    devices,
    disk,
    history,
    inventory,
    push_tokens,
    reports,
)
from directory.records import Export, Moderation
from directory.storage import keys
from directory.store import Store


async def export(store: Store, account_id: str) -> Export:
    """Every datum the inventory marks as exported (``Datum.export`` says where)."""
    filed = await reports.list_filed(store, account_id)
    suspended, banned = await store.redis.hmget(
        keys.account(account_id), ["suspended", "handle_banned"]
    )
    return Export(
        account=await accounts.get(store, account_id),
        devices=await devices.list_all(store, account_id),
        contacts=await contacts.list_contacts(store, account_id),
        blocks=await contacts.list_blocks(store, account_id),
        missed_calls=await history.list_missed(store, account_id),
        push_registrations=await push_tokens.list_all(store, account_id),
        reports_filed=filed,
        notices=await reports.list_notices(store, account_id),
        moderation=Moderation(suspended_since=suspended or None, handle_banned=bool(banned)),
        operator_actions=await audit.about(store, account_id, {r.id for r in filed}),
    )


async def erase(store: Store, account_id: str) -> None:
    """Remove every key of the account and every entry that names it in other accounts.

    Entries elsewhere and the handle go first and the account's own keys last, so a crash
    midway leaves an account that can be erased again rather than references nobody can find.
    Last, the erasure is counted so that the store's files are rewritten without it
    (``directory.disk``).
    """
    account = await accounts.get(store, account_id)
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hkeys(keys.devices(account_id))
        pipe.smembers(keys.contact_of(account_id))
        pipe.smembers(keys.blocked_by(account_id))
        pipe.hkeys(keys.contacts(account_id))
        pipe.hkeys(keys.blocks(account_id))
        device_ids, listed_by, blocked_by, my_contacts, my_blocks = await pipe.execute()
    async with store.redis.pipeline(transaction=False) as pipe:
        for other in listed_by:
            pipe.hdel(keys.contacts(other), account_id)
        for other in blocked_by:
            pipe.hdel(keys.blocks(other), account_id)
        for other in my_contacts:
            pipe.srem(keys.contact_of(other), account_id)
        for other in my_blocks:
            pipe.srem(keys.blocked_by(other), account_id)
        await pipe.execute()
    await history.forget(store, account_id)
    await reports.forget(store, account_id)
    await audit.forget(store, account_id, device_ids, account.handle)
    await accounts.release_handle(store, account_id, account.handle)
    await store.redis.delete(*inventory.account_keys(account_id))
    await disk.note_erasure(store)
