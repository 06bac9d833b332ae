"""A direct call tells operators which path its media took (the selected candidate pair)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from signaling.appkeys import CALLS
from signaling.sdk.softphone import Softphone
from tests.conftest import Server, befriend

pytestmark = pytest.mark.slow


async def test_a_peer_to_peer_call_reports_that_it_is_not_relayed(server: Server) -> None:
    alice, bob = await server.signup("alice"), await server.signup("bob")
    await befriend(alice, bob)
    events: list[dict[str, Any]] = []
    caller, callee = Softphone(alice, emit=events.append), Softphone(bob)
    await callee.line.open()
    answering = asyncio.create_task(callee.answer(duration_s=None))
    calling = asyncio.create_task(caller.call("bob", duration_s=None))
    book = server.app[CALLS].quality
    try:
        async with asyncio.timeout(30):  # the first report comes 5 s into the call
            while not (reported := _relayed(book, events)):
                assert not calling.done(), calling.result().as_event()
                await asyncio.sleep(0.1)
    finally:
        await caller.hang_up()
        await asyncio.wait_for(asyncio.gather(calling, answering), 30)
        await caller.close()
        await callee.close()
    assert set(reported) == {False}
    [connected] = [e for e in events if e["event"] == "connected"]
    assert connected["path"] == ["host", "host"]


def _relayed(book: Any, events: list[dict[str, Any]]) -> list[bool]:
    call_ids = {e["call_id"] for e in events if e["event"] == "ringing"}
    legs = [leg for call_id in call_ids for leg in book.legs(call_id).values()]
    return [leg.relayed for leg in legs if leg.relayed is not None]
