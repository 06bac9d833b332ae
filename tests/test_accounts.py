"""Sign-up, handle uniqueness under concurrency, handle changes and quarantine."""

from __future__ import annotations

import asyncio

import pytest

from directory import accounts
from directory.errors import HandleTaken, NotFound
from directory.storage import keys
from directory.store import Store
from signaling.protocol.bodies import AccountUpdate
from signaling.sdk.client import ClientError
from tests.conftest import MakeServer, Server
from tests.redis_cluster import BOTH_STORES


async def test_concurrent_signups_for_one_handle_yield_exactly_one_account(
    server: Server, store: Store
) -> None:
    spellings = ["carol", "Carol", "CAROL", "ｃａｒｏｌ", "carol"] * 4
    results = await asyncio.gather(
        *(server.client().signup(s) for s in spellings), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, ClientError)]
    assert len(winners) == 1
    assert len(losers) == len(spellings) - 1
    assert {(e.status, e.code) for e in losers} == {(409, "handle_taken")}
    # The losers left nothing behind: one account hash in the whole store.
    account_keys = [k async for k in store.redis.scan_iter(match=keys.account("*"))]
    assert len(account_keys) == 1


async def test_handle_change_keeps_the_account_and_its_contacts(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await alice.add_contact("bob", nickname="B")
    bob_id = (await bob.me()).id

    renamed = await bob.update(AccountUpdate(handle="robert"))
    assert (renamed.id, renamed.handle) == (bob_id, "robert")

    [contact] = await alice.contacts()
    assert (contact.account_id, contact.handle, contact.nickname) == (bob_id, "robert", "B")
    assert (await alice.whois("robert")).account_id == bob_id
    with pytest.raises(ClientError) as old:
        await alice.whois("bob")
    assert old.value.code == "not_found"


async def test_released_handle_is_quarantined_then_free(make_server: MakeServer) -> None:
    server = await make_server(handle_quarantine_s=1)
    bob = await server.signup("bob")
    await bob.update(AccountUpdate(handle="robert"))

    with pytest.raises(ClientError) as taken:
        await server.signup("bob")
    assert taken.value.code == "handle_taken"

    await asyncio.sleep(1.5)
    newcomer = await server.signup("bob")
    assert (await newcomer.me()).handle == "bob"


async def test_erased_handle_is_quarantined(server: Server) -> None:
    bob = await server.signup("bob")
    await bob.erase()
    with pytest.raises(ClientError) as taken:
        await server.signup("bob")
    assert taken.value.code == "handle_taken"


async def test_changing_to_a_taken_handle_changes_nothing(server: Server) -> None:
    await server.signup("alice")
    bob = await server.signup("bob")
    with pytest.raises(ClientError) as taken:
        await bob.update(AccountUpdate(handle="ALICE"))
    assert taken.value.code == "handle_taken"
    assert (await bob.me()).handle == "bob"


async def test_signup_stores_only_the_documented_fields(server: Server, store: Store) -> None:
    alice = await server.signup("alice", "Alice")
    account_id = (await alice.me()).id
    stored = await store.redis.hgetall(keys.account(account_id))
    assert set(stored) == {
        "handle", "display_name", "created_day", "discoverable", "who_can_call", "relay_calls",
        "recovery_hash",
    }  # fmt: skip
    assert stored["recovery_hash"].startswith("$argon2id$")
    assert alice.profile is not None and alice.profile.recovery_code
    assert alice.profile.recovery_code.replace("-", "") not in stored["recovery_hash"]


async def test_store_level_uniqueness_is_atomic(store: Store) -> None:
    from signaling.sdk.client import new_device_key

    _key, public = new_device_key()
    attempts = [accounts.signup(store, "dave", None, "phone", public) for _ in range(10)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, HandleTaken) for r in results if isinstance(r, BaseException))


@BOTH_STORES
async def test_an_update_of_an_erased_account_writes_nothing(store: Store) -> None:
    from signaling.sdk.client import new_device_key

    _key, public = new_device_key()
    account_id = (await accounts.signup(store, "erin", None, "phone", public)).account.id
    await store.redis.delete(keys.account(account_id))  # erased between the read and the write
    with pytest.raises(NotFound):
        await accounts.suspend(store, account_id)
    assert await store.redis.exists(keys.account(account_id)) == 0


async def test_profile_settings_roundtrip(server: Server) -> None:
    alice = await server.signup("alice")
    account = await alice.update(
        AccountUpdate(display_name="Alice Liddell", discoverable="contacts", who_can_call="nobody")
    )
    assert (account.display_name, account.discoverable, account.who_can_call) == (
        "Alice Liddell", "contacts", "nobody",
    )  # fmt: skip
    cleared = await alice.update(AccountUpdate(display_name=None))
    assert cleared.display_name is None and cleared.discoverable == "contacts"
    with pytest.raises(ClientError) as bad:
        await alice.update(AccountUpdate(display_name="x\u0000y"))
    assert bad.value.code == "invalid_value"


async def test_a_rejected_update_changes_nothing(server: Server) -> None:
    bob = await server.signup("bob")
    with pytest.raises(ClientError) as bad:
        await bob.update(AccountUpdate(handle="robert", display_name="\u0007bell"))
    assert bad.value.code == "invalid_value"
    assert (await bob.me()).handle == "bob"
    # "robert" was never claimed, so it is free.
    assert (await bob.update(AccountUpdate(handle="robert"))).handle == "robert"


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("Zoë 👩\u200d💻", True),  # an emoji sequence joined with ZWJ
        ("محمد", True),
        ("李小龍", True),
        ("evil\u202egnp.exe", False),  # right-to-left override
        ("two\nlines", False),
        ("tab\there", False),
        ("x" * 65, False),
    ],
)
async def test_display_names_welcome_any_script_but_no_controls(
    server: Server, name: str, accepted: bool
) -> None:
    alice = await server.signup("alice")
    if accepted:
        assert (await alice.update(AccountUpdate(display_name=name))).display_name == name
    else:
        with pytest.raises(ClientError) as bad:
            await alice.update(AccountUpdate(display_name=name))
        assert bad.value.code in {"invalid_value", "invalid_request"}
