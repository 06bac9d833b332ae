"""The newcomer's path end to end over HTTP: sign up two handles, find, block, export, erase."""

from __future__ import annotations

import pytest

from signaling.sdk.client import ClientError
from tests.conftest import Server


async def test_two_people_find_each_other_then_one_erases(server: Server) -> None:
    alice = await server.signup("alice", "Alice")
    bob = await server.signup("bob")

    card = await alice.whois("BOB")
    assert card.handle == "bob"
    assert (await bob.whois("alice")).display_name == "Alice"

    await bob.block("alice")
    with pytest.raises(ClientError) as blocked:
        await alice.whois("bob")
    assert (blocked.value.status, blocked.value.code) == (404, "not_found")

    exported = await bob.export()
    assert [b.handle for b in exported.blocks] == ["alice"]

    await bob.erase()
    with pytest.raises(ClientError) as gone:
        await alice.whois("bob")
    assert gone.value.code == "not_found"
    with pytest.raises(ClientError) as revoked:
        await bob.me()
    assert revoked.value.code == "device_revoked"
