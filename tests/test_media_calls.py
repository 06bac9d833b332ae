"""Real WebRTC peers (aiortc softphones) calling by handle through the server."""

from __future__ import annotations

import asyncio

import pytest

from signaling.phone.softphone import Softphone
from tests.conftest import Server

pytestmark = pytest.mark.slow


async def test_aiortc_calls_aiortc_by_handle_with_audio_and_video(server: Server) -> None:
    alice = Softphone(await server.signup("alice"), video=True)
    bob = Softphone(await server.signup("bob"), video=True)
    await bob.line.open()
    try:
        answering = asyncio.create_task(bob.answer(duration_s=None))
        caller = await alice.call("bob", duration_s=4.0)
        callee = await asyncio.wait_for(answering, 10)
    finally:
        await alice.close()
        await bob.close()
    for side in (caller, callee):
        assert side.outcome == "connected", side.as_event()
        assert side.media.audio_packets_received > 0
        assert side.media.video_frames_received > 0
        assert side.sent_packets > 0
    assert callee.reason == "hangup"
