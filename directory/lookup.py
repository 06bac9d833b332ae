"""Finding a person by exact handle, and deciding who may call whom.

An unknown, erased, quarantined, suspended, undiscoverable or blocking target is
indistinguishable: each raises the same NotFound, after the same store round trips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from directory import accounts, budgets, handles, ratelimit
from directory.batch import Batch
from directory.errors import NotFound
from directory.records import Account, Card, RelayCalls
from directory.storage import keys
from directory.store import Store

_NOT_FOUND = "No account is reachable under that handle."
# Stands in for a missing target so that every answer costs the same store round trips.
_NO_ACCOUNT = "-"


async def find(store: Store, viewer_id: str, raw_handle: str) -> Card:
    """Rate-limited lookup by exact handle, as seen by ``viewer_id``: two round trips (three
    for a young viewer, directory.budgets)."""
    handle = handles.parse_lookup(raw_handle) or ""

    def queue(pipe: Any) -> None:
        pipe.get(keys.handle_key(store.handle_digest(handle)))

    (owner,) = await budgets.charge(store, viewer_id, queue)
    card = await _card_of_owner(store, viewer_id, owner)
    if card is None:
        raise NotFound(_NOT_FOUND)
    return card


async def resolve(
    store: Store, viewer_id: str, raw_handle: str, bucket: ratelimit.Bucket, what: str
) -> Card | None:
    """Spend a token of ``bucket``, then the card of whom the handle names if the viewer may see
    it; raises RateLimited (counting ``what``) when the bucket is empty.

    The same store commands, in the same order, whether the handle is invalid, free,
    quarantined, or held by someone hidden, blocking or visible: two round trips.
    """
    handle = handles.parse_lookup(raw_handle) or ""

    def queue(pipe: Any) -> None:
        pipe.get(keys.handle_key(store.handle_digest(handle)))

    wait_ms, owner = await ratelimit.run_with_bucket(store, bucket, queue)
    ratelimit.check(wait_ms, what)
    return await _card_of_owner(store, viewer_id, owner)


async def _card_of_owner(store: Store, viewer_id: str, owner: str | None) -> Card | None:
    # A free or quarantined handle reads a stand-in account's card: the same reads either way.
    target_id = None if owner == keys.QUARANTINED else owner
    return await visible_card(store, viewer_id, target_id or _NO_ACCOUNT)


CARD_READS = 3


def queue_card_reads(pipe: Any, viewer_id: str, target_id: str) -> None:
    """Queue on a pipeline the reads that decide what ``viewer_id`` may see of the target."""
    pipe.hmget(keys.account(target_id), ("handle", "display_name", "discoverable", "suspended"))
    pipe.hexists(keys.blocks(target_id), viewer_id)
    pipe.hexists(keys.contacts(target_id), viewer_id)


def card_from(viewer_id: str, target_id: str, reads: list[Any]) -> Card | None:
    """The card those reads allow the viewer to see, or None (missing or hidden alike)."""
    (handle, display_name, discoverable, suspended), blocked, is_contact = reads
    if handle is None or (suspended and viewer_id != target_id):
        return None
    if viewer_id != target_id and (
        blocked or discoverable == "nobody" or (discoverable == "contacts" and not is_contact)
    ):
        return None
    return Card(account_id=target_id, handle=handle, display_name=display_name or None)


async def visible_card(store: Store, viewer_id: str, target_id: str) -> Card | None:
    """The target's card if the viewer may see it, else None."""
    async with store.redis.pipeline(transaction=False) as pipe:
        queue_card_reads(pipe, viewer_id, target_id)
        reads = await pipe.execute()
    return card_from(viewer_id, target_id, reads)


async def may_call(store: Store, caller_id: str, callee_id: str) -> bool:
    """Whether the callee's who-can-call setting and blocks let the caller ring them."""
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.hget(keys.account(callee_id), "who_can_call")
        pipe.hexists(keys.blocks(callee_id), caller_id)
        pipe.hexists(keys.contacts(callee_id), caller_id)
        who_can_call, blocked, is_contact = await pipe.execute()
    if who_can_call is None or blocked or caller_id == callee_id:
        return False
    if who_can_call == "everyone":
        return True
    return who_can_call == "contacts" and bool(is_contact)


@dataclass(frozen=True, slots=True)
class Dialing:
    """What placing a call needs before it can ring: the caller, and whom the target names."""

    caller: Account
    callee_id: str | None


async def dial(
    store: Store,
    caller_id: str,
    *,
    handle: str | None,
    account_id: str | None,
    burst: int,
    refill_per_s: float,
) -> Dialing:
    """Spend a call token, read the caller, resolve the target: one round trip.

    ``handle`` is canonical; the target is None when nobody holds it.
    """

    def queue(pipe: Any) -> None:
        pipe.hmget(keys.account(caller_id), accounts.FIELDS)
        if handle is not None:
            pipe.get(keys.handle_key(store.handle_digest(handle)))
        else:
            pipe.exists(keys.account(account_id or _NO_ACCOUNT))

    bucket = ratelimit.Bucket(keys.invite_bucket(caller_id), burst, refill_per_s)
    wait_ms, caller_fields, target = await ratelimit.run_with_bucket(store, bucket, queue)
    ratelimit.check(wait_ms, "calls")
    caller = accounts.from_fields(caller_id, caller_fields)
    if handle is not None:
        return Dialing(caller, None if target in (None, keys.QUARANTINED) else target)
    return Dialing(caller, account_id if target else None)


async def callable_card(
    store: Store, caller_id: str, callee_id: str, caller_relay: RelayCalls = "strangers"
) -> tuple[Card, bool] | None:
    """The callee's card, and whether the call must be relayed, if the caller may both see and
    ring them. ``caller_relay`` is the caller's own ``relay_calls``.

    None covers unknown, erased, hidden, blocking and not-allowed alike, in one round trip.
    """
    batch = Batch(store)
    card = stage_callable_card(batch, caller_id, callee_id, caller_relay)
    return card(await batch.execute())


CallableCard = Callable[[list[Any]], tuple[Card, bool] | None]


def stage_callable_card(
    batch: Batch, caller_id: str, callee_id: str, caller_relay: RelayCalls = "strangers"
) -> CallableCard:
    """``callable_card``'s reads on a batch (shared with other reads: one round trip); what it
    returns reads the answer from the batch's results."""
    if caller_id == callee_id:
        return lambda _results: None
    at = batch.command(
        "HMGET", keys.account(callee_id), "handle", "display_name", "discoverable",
        "who_can_call", "hide_ip", "suspended", "relay_calls",
    )  # fmt: skip
    batch.command("HEXISTS", keys.blocks(callee_id), caller_id)
    batch.command("HEXISTS", keys.contacts(callee_id), caller_id)
    batch.command("HEXISTS", keys.contacts(caller_id), callee_id)
    return lambda results: _callable(caller_id, callee_id, caller_relay, results[at : at + 4])


def _callable(
    caller_id: str, callee_id: str, caller_relay: RelayCalls, reads: list[Any]
) -> tuple[Card, bool] | None:
    (
        (handle, name, discoverable, who_can_call, hide_ip, suspended, relay),
        blocked,
        is_contact,
        knows_callee,
    ) = reads
    card = card_from(
        caller_id, callee_id, [(handle, name, discoverable, suspended), blocked, is_contact]
    )
    allowed = who_can_call == "everyone" or (who_can_call == "contacts" and is_contact)
    if card is None or not allowed:
        return None
    callee_relay = accounts.relay_setting(relay, hide_ip)
    relayed = wants_relay(caller_relay, bool(knows_callee)) or wants_relay(
        callee_relay, bool(is_contact)
    )
    return card, relayed


def wants_relay(setting: RelayCalls, has_peer_as_contact: bool) -> bool:
    """Whether one side's ``relay_calls`` asks for a relay on a call with this peer."""
    return setting == "always" or (setting == "strangers" and not has_peer_as_contact)
