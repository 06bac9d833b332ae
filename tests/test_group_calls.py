"""Group calls end to end: real aiortc bots, the real SFU process, the real server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from signaling.phone.softphone import Softphone, Summary
from tests.conftest import Server

pytestmark = pytest.mark.slow


async def _answer_after_ring(phone: Softphone, duration_s: float) -> Summary:
    return await phone.answer(duration_s)


async def test_three_bots_each_receive_both_others_audio_and_video(server: Server) -> None:
    events: list[tuple[str, dict[str, object]]] = []

    def log(name: str) -> Callable[[dict[str, object]], None]:
        return lambda event: events.append((name, event))

    alice = Softphone(await server.signup("alice"), video=True, emit=log("alice"))
    bob = Softphone(await server.signup("bob"), video=True, emit=log("bob"))
    carol = Softphone(await server.signup("carol"), video=True, emit=log("carol"))
    try:
        for phone in (bob, carol):
            await phone.line.open()
        results = await asyncio.wait_for(
            asyncio.gather(alice.group(["bob", "Carol"], 8.0), bob.answer(7.0), carol.answer(7.0)),
            60,
        )
    except TimeoutError:
        pytest.fail(f"stuck; events: {events}")
    finally:
        for phone in (alice, bob, carol):
            await phone.close()
    for summary in results:
        assert summary.outcome == "connected", summary.as_event()
        assert summary.participants_received == 2, summary.as_event()
        assert summary.sent_packets > 0
