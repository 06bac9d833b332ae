"""Lookup by exact handle: rate limits, and every hidden case looking exactly like "unknown"."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from directory import lookup
from directory.store import Store
from signaling.protocol.bodies import AccountUpdate
from signaling.sdk.client import Client, ClientError
from tests.conftest import MakeServer, Server


async def _raw_lookup(server: Server, viewer: Client, handle: str) -> tuple[int, str, Any]:
    headers = {"Authorization": f"Bearer {await viewer.token()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/v1/handles/{handle}", headers=headers) as response,
    ):
        return response.status, response.content_type, await response.read()


async def test_lookup_rate_limit_answers_429_with_retry_after(make_server: MakeServer) -> None:
    server = await make_server(lookup_burst=3, lookup_refill_per_s=0.2)
    alice = await server.signup("alice")
    await server.signup("bob")
    for _ in range(3):
        await alice.whois("bob")
    headers = {"Authorization": f"Bearer {await alice.token()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/v1/handles/bob", headers=headers) as response,
    ):
        body = await response.json(content_type=None)
        assert response.status == 429
        assert response.headers["Retry-After"] == "5"
    assert body["code"] == "rate_limited" and body["retry_after"] == 5
    # Unknown handles spend the budget too: probing costs the same as finding.
    with pytest.raises(ClientError) as again:
        await alice.whois("nobody_here")
    assert again.value.code == "rate_limited"


async def test_the_budget_is_per_account(make_server: MakeServer) -> None:
    server = await make_server(lookup_burst=2, lookup_refill_per_s=0.01)
    alice = await server.signup("alice")
    carol = await server.signup("carol")
    await server.signup("bob")
    for _ in range(2):
        await alice.whois("bob")
    with pytest.raises(ClientError):
        await alice.whois("bob")
    assert (await carol.whois("bob")).handle == "bob"


async def test_hidden_accounts_are_indistinguishable_from_unknown(server: Server) -> None:
    viewer = await server.signup("viewer")
    hidden = await server.signup("hidden")
    await hidden.update(AccountUpdate(discoverable="nobody"))
    friends_only = await server.signup("friends_only")
    await friends_only.update(AccountUpdate(discoverable="contacts"))
    blocker = await server.signup("blocker")
    await blocker.block("viewer")
    erased = await server.signup("erased")
    await erased.erase()

    unknown = await _raw_lookup(server, viewer, "never_registered")
    assert unknown[0] == 404 and unknown[1] == "application/problem+json"
    for handle in ("hidden", "friends_only", "blocker", "erased", "x", "ADMIN"):
        assert await _raw_lookup(server, viewer, handle) == unknown, handle


async def test_contacts_only_discoverability_lets_contacts_find(server: Server) -> None:
    viewer = await server.signup("viewer")
    friend = await server.signup("friend")
    await friend.update(AccountUpdate(discoverable="contacts"))
    with pytest.raises(ClientError):
        await viewer.whois("friend")
    await friend.add_contact("viewer")
    assert (await viewer.whois("friend")).handle == "friend"
    # An account always finds itself.
    assert (await friend.whois("friend")).handle == "friend"


@pytest.mark.parametrize(
    ("who_can_call", "caller_is_contact", "callee_blocks_caller", "allowed"),
    [
        ("everyone", False, False, True),
        ("everyone", True, False, True),
        ("everyone", True, True, False),
        ("contacts", False, False, False),
        ("contacts", True, False, True),
        ("contacts", True, True, False),
        ("nobody", True, False, False),
        ("nobody", False, False, False),
    ],
)
async def test_who_can_call(
    server: Server,
    store: Store,
    who_can_call: str,
    caller_is_contact: bool,
    callee_blocks_caller: bool,
    allowed: bool,
) -> None:
    caller = await server.signup("caller")
    callee = await server.signup("callee")
    await callee.update(AccountUpdate(who_can_call=who_can_call))  # type: ignore[arg-type]
    if caller_is_contact:
        await callee.add_contact("caller")
    if callee_blocks_caller:
        await callee.block("caller")
    caller_id, callee_id = (await caller.me()).id, (await callee.me()).id
    assert await lookup.may_call(store, caller_id, callee_id) is allowed
    assert await lookup.may_call(store, caller_id, "0" * 32) is False


async def test_lists_show_a_handle_only_where_a_lookup_would(server: Server) -> None:
    viewer = await server.signup("viewer")
    friend = await server.signup("friend")
    await viewer.add_contact("friend", nickname="F")
    await viewer.block("friend")
    [contact] = await viewer.contacts()
    assert (contact.handle, contact.nickname) == ("friend", "F")

    await friend.update(AccountUpdate(discoverable="nobody", handle="friend_renamed"))
    [contact] = await viewer.contacts()
    [block] = await viewer.blocks()
    # The entry stays (it follows the account) but its new handle is not revealed.
    assert (contact.handle, contact.display_name, contact.nickname) == (None, None, "F")
    assert block.handle is None and block.account_id == contact.account_id
