"""A shared screen that ends without ``unpublish`` (docs/protocol.md 11.15.1, 11.15.2): its
connection closed by itself (a closed tab, a crash), or its sharer's device gone past the resume
window. Either way the others hear what an ``unpublish`` would have told them: ``unpublished``,
and for a device on one connection a ``renegotiate`` whose streams no longer list the screen;
the cameras go on. Real aiortc peers over the real WebSocket and SFU."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, TypeVar

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from signaling.protocol import messages as m
from signaling.sdk import softphone
from signaling.sdk.ice import codec_preferences
from signaling.sdk.line import Line
from signaling.sdk.media import PatternTrack, ToneTrack, peer_connection
from signaling.sdk.sfu_session import SfuSession
from signaling.sdk.softphone import Softphone, Summary
from tests.conftest import MakeServer, Server
from tests.test_calls import _line
from tests.test_group_screen import camera_frames, camera_goes_on
from tests.test_sfu_support import until

pytestmark = pytest.mark.slow

M = TypeVar("M", bound=m.ServerMessage)
#: Every wait's bound: generous, for a machine with a core taken by a CPU hog.
WITHIN = 60.0


class Session(SfuSession):
    """An SfuSession the test can reach while its call runs, keeping what the server sent."""

    live: ClassVar[list[Session]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: list[m.ServerMessage] = []
        Session.live.append(self)

    async def _on(self, message: m.ServerMessage) -> str | None:
        self.messages.append(message)
        return await super()._on(message)

    def since(self, mark: int, kind: type[M]) -> list[M]:
        return [x for x in self.messages[mark:] if isinstance(x, kind)]


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[Session]:
    Session.live = []
    monkeypatch.setattr(softphone, "SfuSession", Session)
    return Session.live


def session_of(phone: Softphone, sessions: list[Session]) -> Session:
    return next(s for s in sessions if s.line is phone.line)


async def crash_screen(sharer: SfuSession) -> None:
    """The screen's connection closes without ``unpublish`` or ``mute``, as when the sharing
    tab is closed: the SDK's own ``stop_sharing`` would send both, so reach past it."""
    screen = sharer._screen
    assert screen is not None
    sharer._screen = None
    await screen.close()


def screen_streams(offer: m.Renegotiate, participant: str) -> list[m.Stream]:
    return [s for s in offer.streams if s.participant == participant and s.source == "screen"]


async def test_a_screen_connection_that_closes_without_unpublish_ends_the_share_for_all(
    server: Server, sessions: list[Session]
) -> None:
    alice = Softphone(await server.signup("alice"), video=True)
    bob = Softphone(await server.signup("bob"), video=True)  # one connection (bundle)
    carol = Softphone(await server.signup("carol"), video=True, bundle=False)  # the old mode
    tasks: list[asyncio.Task[Summary]] = []
    try:
        for phone in (bob, carol):
            await phone.line.open()
        tasks = [
            asyncio.create_task(alice.group(["bob", "carol"], 120.0)),
            asyncio.create_task(bob.answer(120.0)),
            asyncio.create_task(carol.answer(120.0)),
        ]
        await until(lambda: len(sessions) == 3, WITHIN, "everyone in the call")
        sharer = session_of(alice, sessions)
        bundled, old = session_of(bob, sessions), session_of(carol, sessions)
        await until(lambda: sharer.call_id in {s.call_id for s in sessions}, 5.0, "one call")
        await until(
            lambda: camera_frames(bundled) > 5 and camera_frames(old) > 5,
            WITHIN,
            "bob and carol decoding cameras",
        )

        await sharer.share_screen()
        for viewer in (bundled, old):
            await until(
                lambda v=viewer: any(r.video_frames_received >= 5 for r in v.screens.values()),  # type: ignore[misc]
                WITHIN,
                "the screen decoded by bob and carol",
            )
        [who] = list(bundled.screens)
        assert bundled.bundle and not old.bundle and list(old.screens) == [who]
        await until(lambda: bundled.roster[who].screen, WITHIN, "the roster showing the share")
        shown = [x for x in bundled.since(0, m.Renegotiate) if screen_streams(x, who)]
        assert shown, "the screen came over bob's one connection"
        marks = {id(s): len(s.messages) for s in (bundled, old)}

        await crash_screen(sharer)

        # bob (one connection): unpublished, and a new offer without the screen's section
        def told(session: Session) -> bool:
            return any(
                (u.participant, u.source) == (who, "screen")
                for u in session.since(marks[id(session)], m.Unpublished)
            )

        def offer_without_screen() -> m.Renegotiate | None:
            offers = bundled.since(marks[id(bundled)], m.Renegotiate)
            return next((x for x in offers if not screen_streams(x, who)), None)

        await until(lambda: told(bundled), WITHIN, "unpublished sent to bob")
        await until(lambda: offer_without_screen() is not None, WITHIN, "bob's offer sans screen")
        offer = offer_without_screen()
        assert offer is not None and offer.revision > shown[-1].revision
        kept = {(s.participant, s.source, s.kind) for s in offer.streams}
        assert {(who, "camera", "audio"), (who, "camera", "video")} <= kept
        await until(lambda: bundled.revision >= offer.revision, WITHIN, "bob answering it")
        assert not bundled.screens and bundled.screens_seen[who] >= 5

        # carol (the old mode): unpublished, and her screen's connection closed
        await until(lambda: told(old), WITHIN, "unpublished sent to carol")
        assert not old.screens and old.screens_seen[who] >= 5
        assert not old.since(marks[id(old)], m.Renegotiate)  # she never has one connection

        # nobody sent mute: the server clears the roster's share itself
        await until(lambda: not bundled.roster[who].screen, WITHIN, "the roster without the share")
        await until(lambda: not old.roster[who].screen, WITHIN, "carol's roster too")

        # the cameras go on over both kinds of connection
        await camera_goes_on(bundled, who, "alice's camera to bob after the screen died")
        await camera_goes_on(old, who, "alice's camera to carol after the screen died")
        bob_id = next(p for p, e in old.roster.items() if e.person.handle == "bob")
        await camera_goes_on(old, bob_id, "bob's camera to carol")

        # and the sharer may share again
        await sharer.share_screen()
        await until(
            lambda: (
                bundled.screens.get(who) is not None
                and bundled.screens[who].video_frames_received >= 5
            ),
            WITHIN,
            "the second share decoded by bob",
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for phone in (alice, bob, carol):
            await phone.close()


# --- the sharer's whole device gone past the resume window ---------------------------------------


async def _next(line: Line, kind: type[M], within: float = WITHIN) -> M:
    """The next message of ``kind``, skipping others (rosters, speakers, keys, offers)."""
    while True:
        message = await line.receive(within)
        if isinstance(message, kind):
            return message


async def _publish(line: Line, call_id: str, bundle: bool) -> RTCPeerConnection:
    pc = peer_connection([], relay_only=False, bundle=bundle)
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    await line.send(m.Publish(call_id=call_id, sdp=pc.localDescription.sdp, bundle=bundle))
    answer = await _next(line, m.PublishAnswer)
    await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    return pc


async def _share(line: Line, call_id: str) -> RTCPeerConnection:
    pc = peer_connection([], relay_only=False)
    pc.addTrack(PatternTrack())
    for transceiver in pc.getTransceivers():
        transceiver.setCodecPreferences(codec_preferences("video"))
    await pc.setLocalDescription(await pc.createOffer())
    await line.send(m.Publish(call_id=call_id, sdp=pc.localDescription.sdp, source="screen"))
    answer = await _next(line, m.PublishAnswer)
    assert answer.source == "screen"
    await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    await line.send(m.Mute(call_id=call_id, audio_muted=False, video_muted=True, screen=True))
    return pc


async def _answer(line: Line, pc: RTCPeerConnection, offer: m.Renegotiate) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    reply = m.RenegotiateAnswer(
        call_id=offer.call_id, revision=offer.revision, sdp=pc.localDescription.sdp
    )
    await line.send(reply)


async def _follow(
    line: Line, pc: RTCPeerConnection, done: Any, what: str, within: float = 60.0
) -> list[m.ServerMessage]:
    """Everything ``line`` receives, answering each ``renegotiate`` as a client on one
    connection must (the next offer waits for it), until ``done(received)``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    received: list[m.ServerMessage] = []
    while not done(received):
        remaining = deadline - loop.time()
        assert remaining > 0, f"timed out waiting for {what}"
        message = await line.receive(remaining)
        received.append(message)
        if isinstance(message, m.Renegotiate):
            await _answer(line, pc, message)
    return received


def _offers(received: list[m.ServerMessage]) -> list[m.Renegotiate]:
    return [x for x in received if isinstance(x, m.Renegotiate)]


def _unpublished(received: list[m.ServerMessage]) -> list[tuple[str, str]]:
    return [(x.participant, x.source) for x in received if isinstance(x, m.Unpublished)]


async def test_a_sharer_gone_past_the_resume_window_takes_its_screen_from_everyone(
    make_server: MakeServer,
) -> None:
    server = await make_server(resume_window_s=2.0)
    alice, bob = await server.signup("alice"), await server.signup("bob")
    carol = await server.signup("carol")
    pcs: list[RTCPeerConnection] = []
    async with await _line(alice) as a, await _line(bob) as b, await _line(carol) as c:
        await a.send(m.GroupInvite(handles=["bob", "carol"], media="video", ref="g"))
        joined = await _next(a, m.Joined)
        call_id, sharer = joined.call_id, joined.participant
        pcs.append(await _publish(a, call_id, bundle=True))
        for line in (b, c):
            await line.send(m.Accept(call_id=(await _next(line, m.Incoming)).call_id))
            await _next(line, m.Joined)
        bob_pc = await _publish(b, call_id, bundle=True)
        pcs.append(bob_pc)
        pcs.append(await _publish(c, call_id, bundle=False))
        pcs.append(await _share(a, call_id))
        await _follow(
            b, bob_pc, lambda r: any(screen_streams(x, sharer) for x in _offers(r)), "a screen"
        )

        await a.drop()  # alice's device goes away (her connections to the SFU stay up)

        # past the 2 s resume window she is dropped, and her screen with her
        def over(received: list[m.ServerMessage]) -> bool:
            offers = _offers(received)
            return bool(_unpublished(received)) and any(
                all(s.participant != sharer for s in x.streams) for x in offers
            )

        seen = await _follow(b, bob_pc, over, "bob told of the end of alice and her screen")
        assert _unpublished(seen) == [(sharer, "screen")]
        told = await _next(c, m.Unpublished, 60.0)
        assert (told.participant, told.source) == (sharer, "screen")
    for pc in pcs:
        await pc.close()
