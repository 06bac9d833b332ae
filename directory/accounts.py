"""Accounts: sign-up, profile and settings, handle changes and recovery.

An account is an opaque random id with a handle, an optional display name, a created day and two
privacy settings. The handle key points at the account; the account never depends on the handle
string, so contacts and blocks follow the account through handle changes.

Order of writes across slots: sign-up writes the account first and claims the handle second, so a
handle key never points at an account that does not exist. A released handle is not deleted but
overwritten with a quarantine marker that expires, so nobody can take it during quarantine.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from directory import budgets, devices, handles, inventory, labels, ratelimit, recovery
from directory.errors import (
    BadRecoveryCode,
    HandleTaken,
    InvalidValue,
    NotFound,
    PuzzleRequired,
    RateLimited,
    TooManyDevices,
)
from directory.records import (
    AUDIENCES,
    MAX_DISPLAY_NAME,
    RELAY_CHOICES,
    Account,
    Audience,
    Device,
    RelayCalls,
)
from directory.storage import keys
from directory.store import Store

# Replaces the owner of a handle with the quarantine marker, only if this account still owns it;
# a negative TTL (a banned handle) quarantines it for good.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[3]) < 0 then
    redis.call('SET', KEYS[1], ARGV[2])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  end
  return 1
end
return 0
"""

FIELDS = (
    "handle", "display_name", "created_day", "discoverable", "who_can_call", "hide_ip",
    "suspended", "relay_calls",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SignedUp:
    account: Account
    device: Device
    recovery_code: str


def check_display_name(name: str | None) -> str | None:
    return labels.check(name, MAX_DISPLAY_NAME, "display name")


def check_audience(value: str, setting: str) -> Audience:
    for audience in AUDIENCES:
        if value == audience:
            return audience
    raise InvalidValue(f"{setting} is one of {', '.join(AUDIENCES)}.")


async def signup(
    store: Store,
    raw_handle: str,
    display_name: str | None,
    device_name: str,
    public_key: str,
    media_key: devices.MediaKey | None = None,
) -> SignedUp:
    handle = handles.parse(raw_handle)
    name = check_display_name(display_name)
    device_record = devices.new_record(store, device_name, public_key, media_key)
    code = recovery.new_code()
    code_hash = await recovery.hash_code(store.hashing, code)
    account_id = secrets.token_hex(16)
    device_id = devices.new_id()
    fields = {
        "handle": handle,
        "display_name": name or "",
        "created_day": store.today(),
        "discoverable": "everyone",
        "who_can_call": "everyone",
        "relay_calls": "strangers",
        "recovery_hash": code_hash,
    }
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.account(account_id), mapping=fields)
        pipe.hset(keys.devices(account_id), device_id, devices.encode(device_record))
        await pipe.execute()
    if not await store.redis.set(keys.handle_key(store.handle_digest(handle)), account_id, nx=True):
        await store.redis.delete(*inventory.account_keys(account_id))
        raise HandleTaken(f"The handle {handle!r} is taken.")
    account = await get(store, account_id)
    return SignedUp(account, device_record.with_id(device_id), code)


async def get(store: Store, account_id: str) -> Account:
    return from_fields(account_id, await store.redis.hmget(keys.account(account_id), FIELDS))


def from_fields(account_id: str, values: list[Any]) -> Account:
    """The account from an HMGET of FIELDS; NotFound when it does not exist."""
    if values[0] is None:
        raise NotFound("No such account.")
    handle, display_name, created_day, discoverable, who_can_call, hide_ip, suspended, relay = (
        values
    )
    relay_calls = relay_setting(relay, hide_ip)
    return Account(
        id=account_id,
        handle=handle,
        display_name=display_name or None,
        created_day=created_day,
        discoverable=check_audience(discoverable, "discoverable"),
        who_can_call=check_audience(who_can_call, "who_can_call"),
        hide_ip=relay_calls == "always",
        relay_calls=relay_calls,
        suspended=bool(suspended),
    )


def relay_setting(stored: str | None, legacy_hide_ip: str | None) -> RelayCalls:
    """The stored ``relay_calls``; an account from before it has only ``hide_ip`` ("1": always)
    and gets the default otherwise."""
    for choice in RELAY_CHOICES:
        if stored == choice:
            return choice
    return "always" if legacy_hide_ip == "1" else "strangers"


def check_relay(relay_calls: str | None, hide_ip: bool | None) -> RelayCalls | None:
    """The new ``relay_calls`` from either field (``hide_ip``: true is always, false the
    default); InvalidValue when the two disagree."""
    from_hide_ip: RelayCalls | None = None
    if hide_ip is not None:
        from_hide_ip = "always" if hide_ip else "strangers"
    if relay_calls is None:
        return from_hide_ip
    chosen = next((choice for choice in RELAY_CHOICES if choice == relay_calls), None)
    if chosen is None:
        raise InvalidValue(f"relay_calls is one of {', '.join(RELAY_CHOICES)}.")
    if from_hide_ip is not None and (hide_ip is True) != (chosen == "always"):
        raise InvalidValue("hide_ip and relay_calls disagree; send relay_calls alone.")
    return chosen


async def names(store: Store, account_ids: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """Handle and display name of each of the accounts that exists, in one round trip."""
    wanted = sorted(set(account_ids))
    if not wanted:
        return {}
    async with store.redis.pipeline(transaction=False) as pipe:
        for account_id in wanted:
            pipe.hmget(keys.account(account_id), ("handle", "display_name"))
        found = await pipe.execute()
    return {
        account_id: (handle, display_name or None)
        for account_id, (handle, display_name) in zip(wanted, found, strict=True)
        if handle is not None
    }


async def exists(store: Store, account_id: str) -> bool:
    return bool(await store.redis.exists(keys.account(account_id)))


async def update(
    store: Store,
    account_id: str,
    *,
    handle: str | None = None,
    display_name: str | None = None,
    clear_display_name: bool = False,
    discoverable: str | None = None,
    who_can_call: str | None = None,
    hide_ip: bool | None = None,
    relay_calls: str | None = None,
) -> Account:
    """Apply every change or none: all values are checked before anything is written."""
    changes: dict[str, str] = {}
    if clear_display_name:
        changes["display_name"] = ""
    elif display_name is not None:
        changes["display_name"] = check_display_name(display_name) or ""
    if discoverable is not None:
        changes["discoverable"] = check_audience(discoverable, "discoverable")
    if who_can_call is not None:
        changes["who_can_call"] = check_audience(who_can_call, "who_can_call")
    relay = check_relay(relay_calls, hide_ip)
    if relay is not None:
        changes["relay_calls"] = relay
    new_handle = handles.parse(handle) if handle is not None else None
    old_handle = (await get(store, account_id)).handle
    if new_handle is not None and new_handle != old_handle:
        await _claim(store, account_id, new_handle)
        changes["handle"] = new_handle
    if changes:
        try:
            await _set_if_exists(store, account_id, changes)
        except NotFound:
            if "handle" in changes:
                await release_handle(store, account_id, changes["handle"])
            raise
    if "handle" in changes:
        await release_handle(store, account_id, old_handle)
        await _count_rename(store, account_id)
    return await get(store, account_id)


async def _claim(store: Store, account_id: str, handle: str) -> None:
    """Take a free handle for this account. An attempt is a lookup: a taken handle answers
    ``handle_taken`` whatever its owner's discoverability, so probing pays the lookup budget.
    Successful changes are limited per day, as each quarantines a name."""
    (renames,) = await budgets.charge(
        store, account_id, lambda pipe: pipe.get(keys.renames(account_id))
    )
    if int(renames or 0) >= store.config.renames_per_day:
        ttl = await store.redis.ttl(keys.renames(account_id))
        retry = max(1, int(ttl))
        raise RateLimited(f"Too many handle changes today; try again in {retry} s.", retry)
    if not await store.redis.set(keys.handle_key(store.handle_digest(handle)), account_id, nx=True):
        raise HandleTaken(f"The handle {handle!r} is taken.")


async def _count_rename(store: Store, account_id: str) -> None:
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.incr(keys.renames(account_id))
        pipe.expire(keys.renames(account_id), keys.RENAMES_WINDOW_S, nx=True)
        await pipe.execute()


#: KEYS: account. ARGV: field, value, ... Sets the fields only if the account exists: 1, else 0.
_SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


async def _set_if_exists(store: Store, account_id: str, changes: dict[str, str]) -> None:
    # A script rather than WATCH/EXISTS/MULTI: one round trip, and redis-py's cluster pipeline
    # answers an EXISTS inside WATCH with the pipeline itself (always true), not the count.
    args = [item for pair in changes.items() for item in pair]
    if not await store.run_script(_SET_IF_EXISTS, [keys.account(account_id)], args):
        raise NotFound("No such account.")


async def release_handle(store: Store, account_id: str, handle: str) -> None:
    """Quarantine a handle this account owns, so nobody can impersonate it for a while.

    A handle an operator banned (``ban_handle``) is quarantined for good: no expiry.
    """
    banned = await store.redis.hget(keys.account(account_id), "handle_banned")
    ttl = -1 if banned else store.config.handle_quarantine_s
    await store.run_script(
        _RELEASE,
        [keys.handle_key(store.handle_digest(handle))],
        [account_id, keys.QUARANTINED, ttl],
    )


async def suspend(store: Store, account_id: str, *, ban_handle: bool = False) -> None:
    """Suspend an account: it can no longer place calls, and lookups no longer find it.

    With ``ban_handle`` its handle is also never released: when the account changes its handle
    or is erased, the handle stays quarantined without expiry.
    """
    changes = {"suspended": store.today()}
    if ban_handle:
        changes["handle_banned"] = "1"
    await _set_if_exists(store, account_id, changes)


async def unsuspend(store: Store, account_id: str) -> None:
    """Lift a suspension (a handle ban stays: the handle was promised never to come back)."""
    if not await exists(store, account_id):
        raise NotFound("No such account.")
    await store.redis.hdel(keys.account(account_id), "suspended")


async def owner_of(store: Store, handle: str) -> str | None:
    """The account id owning a canonical handle; None when free, unknown or quarantined."""
    owner: str | None = await store.redis.get(keys.handle_key(store.handle_digest(handle)))
    if owner is None or owner == keys.QUARANTINED:
        return None
    return owner


# Spends the recovery code and enrolls the device in one step: the code is replaced only if it is
# still the one that was verified, and only when the device fits.
_RECOVER = """
if redis.call('HGET', KEYS[1], 'recovery_hash') ~= ARGV[1] then return -1 end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[2], KEYS[3])
elseif redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[1], 'recovery_hash', ARGV[6])
return 1
"""


def recovery_handle(raw_handle: str) -> str:
    """The handle whose budget a recovery attempt spends: canonical, or as typed when no
    account could hold it (such attempts cost the same and are budgeted the same)."""
    return handles.parse_lookup(raw_handle) or raw_handle.casefold()


async def recovery_strained(store: Store, raw_handle: str) -> bool:
    """Whether recovering this handle now needs the heaviest puzzle (its budget is spent)."""
    bucket = ratelimit.recovery_bucket(store, recovery_handle(raw_handle))
    return not await ratelimit.has_token(store, bucket)


async def recover(
    store: Store,
    raw_handle: str,
    code: str,
    device_name: str,
    public_key: str,
    *,
    revoke_others: bool,
    media_key: devices.MediaKey | None = None,
    puzzle_bits: int = 0,
    heavy_bits: int = 0,
) -> tuple[Account, Device, str]:
    """Enroll a new device with the recovery code; the code is replaced by a new one.

    Every attempt, for a real, unknown or impossible handle alike, spends a token of the
    handle's budget and one argon2 verification, so the answers do not tell which handles
    exist. A spent budget never refuses the owner: it asks for the heaviest puzzle
    (``heavy_bits``) instead, so strangers' guesses make recovery slower, not impossible.
    With puzzles turned off (``heavy_bits`` 0) it refuses with ``rate_limited``.
    """
    bad = BadRecoveryCode("The handle and recovery code do not match.")
    record = devices.new_record(store, device_name, public_key, media_key)
    handle = handles.parse_lookup(raw_handle)
    wait_ms = await ratelimit.spend(
        store, ratelimit.recovery_bucket(store, recovery_handle(raw_handle))
    )
    if wait_ms and heavy_bits <= 0:
        ratelimit.check(wait_ms, "recovery attempts")
    if wait_ms and puzzle_bits < heavy_bits:
        raise PuzzleRequired(
            "Many recovery attempts were made for this handle: solve a heavier puzzle."
        )
    # The same reads for every handle, held or not, so the time does not tell which it was.
    account_id = await owner_of(store, handle or "")
    code_hash = await store.redis.hget(keys.account(account_id or "-"), "recovery_hash")
    verified = await recovery.verify_code(store.hashing, code_hash or recovery.DUMMY_HASH, code)
    if not verified or not code_hash:
        raise bad
    assert account_id is not None
    new_code = recovery.new_code()
    device_id = devices.new_id()
    outcome = await store.run_script(
        _RECOVER,
        [keys.account(account_id), keys.devices(account_id), keys.push_tokens(account_id)],
        [
            code_hash,
            "1" if revoke_others else "0",
            store.config.max_devices,
            device_id,
            devices.encode(record),
            await recovery.hash_code(store.hashing, new_code),
        ],
    )
    if outcome == -1:
        raise bad
    if outcome == 0:
        raise TooManyDevices(
            f"An account has at most {store.config.max_devices} devices; "
            "recover with revoke_other_devices."
        )
    return await get(store, account_id), record.with_id(device_id), new_code
