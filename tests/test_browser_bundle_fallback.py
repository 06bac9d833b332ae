"""The web SDK against a server that does not bundle (docs/protocol.md 11.15.2): such a server
refuses ``publish {bundle: true}`` with ``invalid_message`` naming no call, as every server from
before 11.15.2 did, and the SDK (sfu.js ``onInvalidMessage``) publishes the same offer again
without ``bundle``. The call then runs the old way: Chromium sends its media and receives each
other participant on a receiving connection of its own, decoding them all.

The server is the real one with ``CALLBOOK_SFU_BUNDLE=off`` (``Config.sfu_bundle``), which
refuses ``bundle`` exactly so; the WebSocket frames are read as the browser sent and got them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import WebSocket

from signaling.sdk.softphone import Softphone
from tests.conftest import MakeServer, Server
from tests.test_browser import CHROMIUM, Browsers
from tests.test_browser import browsers as _browsers  # noqa: F401 (the ``browsers`` fixture)
from tests.test_browser_bundle import group_with_bob_and_carol
from tests.test_browser_group import RecordingSession, holds
from tests.test_browser_group import sessions as _sessions  # noqa: F401 (the ``sessions`` fixture)
from tests.test_sdk_js import SIGN_UP_JS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


@pytest.fixture
def browsers(_browsers: Browsers) -> Browsers:  # noqa: F811 (the imported fixture)
    return _browsers


@pytest.fixture
def sessions(_sessions: list[RecordingSession]) -> list[RecordingSession]:  # noqa: F811
    return _sessions


async def old_bot(server: Server, handle: str, name: str) -> Softphone:
    """A bot in the old mode from the start: what the browser gets depends on the web SDK alone."""
    phone = Softphone(await server.signup(handle, name), video=True, bundle=False)
    await phone.line.open()
    return phone


class Frames:
    """The call WebSocket's JSON messages, both ways, in the order the page saw them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def watch(self, ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: self._add("sent", payload))
        ws.on("framereceived", lambda payload: self._add("received", payload))

    def _add(self, way: str, payload: str | bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict):
            self.seen.append((way, message))

    def of(self, way: str, kind: str) -> list[dict[str, Any]]:
        return [x for w, x in self.seen if w == way and x.get("type") == kind]


async def test_the_sdk_falls_back_to_a_connection_per_sender_when_the_server_refuses_bundle(
    make_server: MakeServer, browsers: Browsers, sessions: list[RecordingSession]
) -> None:
    server = await make_server(sfu_bundle=False)
    page = await browsers.page()
    frames = Frames()
    page.on("websocket", frames.watch)
    await page.goto(server.url + "/")
    assert "bundle: false" not in SIGN_UP_JS  # the SDK as shipped: bundle by default
    await page.evaluate(SIGN_UP_JS, "fallback")
    bots = [await old_bot(server, "bob", "Bob Builder"), await old_bot(server, "carol", "Carol")]
    answering = [asyncio.create_task(b.answer(120.0)) for b in bots]
    try:
        seen = await group_with_bob_and_carol(
            page, "both bots decoded after the fallback", 45.0, lambda: frames.seen[-20:]
        )

        # What went over the wire: bundle asked, refused naming no call, asked again without.
        publishes = [p for p in frames.of("sent", "publish") if p.get("source") != "screen"]
        assert [p.get("bundle", False) for p in publishes] == [True, False], publishes
        assert publishes[0]["sdp"] == publishes[1]["sdp"]  # the same offer, only re-sent
        refused = [e for e in frames.of("received", "error") if e["code"] == "invalid_message"]
        assert len(refused) == 1 and "call_id" not in refused[0], refused
        assert "bundle" in refused[0]["detail"]
        assert len(frames.of("received", "publish_answer")) == 1
        assert not frames.of("received", "renegotiate")

        # The old mode: the uplink only sends, and each sender has a receiving connection.
        assert seen["mode"] == "separate", seen
        assert seen["downlinks"] == 2 and seen["connections"] == 3, seen
        assert not any(p["onUplink"] for p in seen["participants"].values()), seen
        assert await page.evaluate("() => window.sdkTest.call.sfu.bundle") is False
        subscribed = {s["participant"] for s in frames.of("received", "subscribe_offer")}
        assert subscribed == set(seen["participants"]), (subscribed, seen)

        # And the browser's own media reaches both bots, decoded.
        me = await page.evaluate("() => window.sdkTest.call.me")

        def decoding_me(s: RecordingSession) -> bool:
            return me in s.received and s.received[me].video_frames_received > 0

        await holds(
            lambda: len(sessions) == 2 and all(decoding_me(s) for s in sessions),
            "the bots decoding the browser",
            within=30.0,
        )
        await page.evaluate("() => window.sdkTest.call.hangup()")
    finally:
        for task in answering:
            task.cancel()
        for b in bots:
            await b.close()
