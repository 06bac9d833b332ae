"""Screen sharing through the SFU with aiortc bots (docs/protocol.md 11.15.1): a participant's
screen is a second video track beside its camera, offered to everyone (also to who joins later),
end-to-end encrypted with the sharer's key, and closed for all when the sharer stops."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from signaling.protocol import messages as m
from signaling.sdk import softphone
from signaling.sdk.sfu_session import SfuSession
from signaling.sdk.softphone import Softphone, Summary
from tests.conftest import Server
from tests.test_calls import _line, _quiet
from tests.test_sfu_support import until

pytestmark = pytest.mark.slow


class Session(SfuSession):
    """An SfuSession the test can reach while its call runs."""

    live: ClassVar[list[Session]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        Session.live.append(self)


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[Session]:
    Session.live = []
    monkeypatch.setattr(softphone, "SfuSession", Session)
    return Session.live


def session_of(phone: Softphone, sessions: list[Session]) -> Session:
    return next(s for s in sessions if s.line is phone.line)


def camera_frames(session: SfuSession, sender: str | None = None) -> int:
    """Camera frames ``session`` decoded from ``sender`` (from anyone when None)."""
    return sum(
        r.video_frames_received
        for who, r in session.received.items()
        if sender is None or who == sender
    )


async def camera_goes_on(session: SfuSession, sender: str, what: str) -> None:
    before = camera_frames(session, sender)
    await until(lambda: camera_frames(session, sender) >= before + 10, 30.0, what)


async def test_a_bot_shares_its_screen_beside_its_camera_and_stops(
    server: Server, sessions: list[Session]
) -> None:
    alice = Softphone(await server.signup("alice"), video=True)
    bob = Softphone(await server.signup("bob"), video=True)
    carol = Softphone(await server.signup("carol"), video=True)
    tasks: list[asyncio.Task[Summary]] = []
    try:
        for phone in (bob, carol):
            await phone.line.open()
        tasks = [
            asyncio.create_task(alice.group(["bob", "carol"], 60.0)),
            asyncio.create_task(bob.answer(60.0)),
        ]
        await until(lambda: len(sessions) == 2, 30.0, "alice and bob in the call")
        sharer, viewer = session_of(alice, sessions), session_of(bob, sessions)
        await until(lambda: camera_frames(viewer) > 5, 30.0, "bob decoding alice's camera")

        await sharer.share_screen()
        await until(lambda: len(viewer.screens) == 1, 30.0, "a screen offered to bob")
        [(who, screen)] = viewer.screens.items()
        assert viewer.roster[who].person.handle == "alice"
        await until(lambda: screen.video_frames_received >= 10, 30.0, "bob decoding the screen")
        await camera_goes_on(viewer, who, "alice's camera beside her screen")
        await until(lambda: viewer.roster[who].screen, 30.0, "the roster showing the share")
        assert sharer.keys.crypto is not None  # the same key encrypts both tracks

        # Carol joins while alice shares: she is offered the screen as well.
        tasks.append(asyncio.create_task(carol.answer(60.0)))
        await until(lambda: len(sessions) == 3, 30.0, "carol in the call")
        late = session_of(carol, sessions)
        await until(
            lambda: who in late.screens and late.screens[who].video_frames_received >= 5,
            30.0,
            "carol decoding alice's screen",
        )

        await sharer.stop_sharing()
        for session in (viewer, late):
            await until(lambda s=session: not s.screens, 30.0, "the screen closed")  # type: ignore[misc]
            assert session.screens_seen[who] >= 5
        await until(lambda: not viewer.roster[who].screen, 30.0, "the roster without the share")
        await camera_goes_on(viewer, who, "alice's camera after the share")
        await camera_goes_on(late, who, "alice's camera for carol")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for phone in (alice, bob, carol):
            await phone.close()


async def test_a_screen_before_ones_own_media_is_refused_and_unpublish_is_idempotent(
    server: Server,
) -> None:
    alice = await server.signup("alice")
    async with await _line(alice) as a:
        await a.send(m.GroupInvite(handles=["nobody_has_this"], media="video", ref="g1"))
        joined = await a.expect(m.Joined)
        await a.expect(m.Participants)
        offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        await a.send(m.Publish(call_id=joined.call_id, sdp=offer, source="screen"))
        error = await a.expect(m.Error)
        assert (error.code, error.call_id) == ("not_published", joined.call_id)
        await a.send(m.Unpublish(call_id=joined.call_id))  # not sharing: nothing happens
        await _quiet(a)
        await a.send(m.Unpublish(call_id="0" * 32))
        assert (await a.expect(m.Error)).code == "unknown_call"
