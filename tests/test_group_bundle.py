"""One connection per participant over the real WebSocket and SFU (protocol 11.15.2): the
``renegotiate`` flow with real aiortc connections, ``stale_offer``, and the offer sent again
after a resume."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from signaling.config import ConfigError, from_env
from signaling.protocol import messages as m
from signaling.sdk.line import Line
from signaling.sdk.media import ToneTrack, peer_connection
from signaling.sdk.softphone import Softphone, Summary
from tests.conftest import MakeServer, Server
from tests.test_calls import _line
from tests.test_sfu_support import until

pytestmark = pytest.mark.slow

M = TypeVar("M", bound=m.ServerMessage)


async def _next(line: Line, kind: type[M], within: float = 20.0) -> M:
    """The next message of ``kind``, skipping others (rosters, speakers, keys)."""
    while True:
        message = await line.receive(within)
        if isinstance(message, kind):
            return message  # type: ignore[return-value]
        assert not isinstance(message, (m.SubscribeOffer, m.Error)), message


async def _publish(line: Line, call_id: str) -> RTCPeerConnection:
    pc = peer_connection([], relay_only=False, bundle=True)
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    await line.send(m.Publish(call_id=call_id, sdp=pc.localDescription.sdp, bundle=True))
    answer = await _next(line, m.PublishAnswer)
    assert isinstance(answer, m.PublishAnswer)
    await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    return pc


async def _answer(line: Line, pc: RTCPeerConnection, offer: m.Renegotiate) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await line.send(
        m.RenegotiateAnswer(
            call_id=offer.call_id, revision=offer.revision, sdp=pc.localDescription.sdp
        )
    )


async def test_renegotiate_offers_stale_answers_and_the_offer_again_after_a_resume(
    server: Server,
) -> None:
    alice, bob = await server.signup("alice"), await server.signup("bob")
    pcs: list[RTCPeerConnection] = []
    async with await _line(alice) as a, await _line(bob) as b:
        await a.send(m.GroupInvite(handles=["bob"], media="audio", ref="g"))
        joined = await _next(a, m.Joined)
        assert isinstance(joined, m.Joined)
        call_id = joined.call_id
        pcs.append(await _publish(a, call_id))
        await b.send(m.Accept(call_id=(await _next(b, m.Incoming)).call_id))  # type: ignore[attr-defined]
        bob_joined = await _next(b, m.Joined)
        assert isinstance(bob_joined, m.Joined)
        pcs.append(await _publish(b, call_id))

        # each gets one offer adding the other's audio, named by mid (no subscribe_offer)
        offer = await _next(a, m.Renegotiate)
        assert isinstance(offer, m.Renegotiate) and offer.revision == 1
        assert [(s.participant, s.source, s.kind) for s in offer.streams] == [
            (bob_joined.participant, "camera", "audio")
        ]
        bob_offer = await _next(b, m.Renegotiate)
        assert isinstance(bob_offer, m.Renegotiate)
        assert [s.participant for s in bob_offer.streams] == [joined.participant]

        # an answer for another revision changes nothing
        await a.send(m.RenegotiateAnswer(call_id=call_id, revision=2, sdp="v=0\r\n"))
        error = await a.receive(20)
        while not isinstance(error, m.Error):
            error = await a.receive(20)
        assert (error.code, error.call_id) == ("stale_offer", call_id)

        # an answer that does not answer the offer is refused; the offer stays outstanding
        await a.send(m.RenegotiateAnswer(call_id=call_id, revision=1, sdp="v=0\r\n"))
        error = await a.receive(20)
        while not isinstance(error, m.Error):
            error = await a.receive(20)
        assert (error.code, error.call_id) == ("invalid_sdp", call_id)

        # alice drops before answering; on resume the outstanding offer comes again
        await a.drop()
        assert (await a.open(resume=True)).resumed
        again = await _next(a, m.Renegotiate)
        assert isinstance(again, m.Renegotiate)
        assert (again.revision, again.sdp) == (offer.revision, offer.sdp)
        await _answer(a, pcs[0], again)
        await _answer(b, pcs[1], bob_offer)
        # the same revision answered twice is stale: the first answer was taken
        await a.send(
            m.RenegotiateAnswer(call_id=call_id, revision=1, sdp=pcs[0].localDescription.sdp)
        )
        error = await a.receive(20)
        while not isinstance(error, m.Error):
            error = await a.receive(20)
        assert error.code == "stale_offer"

        # bob leaves: alice's next offer no longer lists him
        await b.send(m.Hangup(call_id=call_id))
        gone = await _next(a, m.Renegotiate)
        assert isinstance(gone, m.Renegotiate)
        assert (gone.revision, gone.streams) == (2, [])
        await _answer(a, pcs[0], gone)
        await a.send(m.Hangup(call_id=call_id))
    for pc in pcs:
        await pc.close()


@pytest.mark.parametrize(("raw", "on"), [("", True), ("off", False), ("0", False), ("on", True)])
def test_the_bundle_switch_reads_the_usual_words(raw: str, on: bool) -> None:
    assert from_env({"CALLBOOK_SFU_BUNDLE": raw}).sfu_bundle is on
    with pytest.raises(ConfigError, match="CALLBOOK_SFU_BUNDLE must be on or off"):
        from_env({"CALLBOOK_SFU_BUNDLE": "maybe"})


async def test_with_bundling_off_publish_bundle_is_refused_as_by_an_older_server(
    make_server: MakeServer,
) -> None:
    """``CALLBOOK_SFU_BUNDLE=off``: ``publish {bundle: true}`` gets the ``invalid_message`` a
    server from before 11.15.2 gave (naming no call), and the same offer without ``bundle``
    is answered; what the device receives then comes by ``subscribe_offer``."""
    server = await make_server(sfu_bundle=False)
    alice, bob = await server.signup("alice"), await server.signup("bob")
    pcs: list[RTCPeerConnection] = []
    async with await _line(alice) as a, await _line(bob) as b:
        await a.send(m.GroupInvite(handles=["bob"], media="audio", ref="g"))
        call_id = (await _next(a, m.Joined)).call_id
        pc = peer_connection([], relay_only=False)
        pcs.append(pc)
        pc.addTransceiver(ToneTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        await a.send(m.Publish(call_id=call_id, sdp=offer, bundle=True))
        error = await a.receive(20)
        while not isinstance(error, m.Error):
            error = await a.receive(20)
        assert (error.code, error.call_id) == ("invalid_message", None)
        assert "unknown field `bundle`" in error.detail
        await a.send(m.Publish(call_id=call_id, sdp=offer))
        await pc.setRemoteDescription(
            RTCSessionDescription((await _next(a, m.PublishAnswer)).sdp, "answer")
        )
        await b.send(m.Accept(call_id=(await _next(b, m.Incoming)).call_id))
        await _next(b, m.Joined)
        bob_pc = peer_connection([], relay_only=False)
        pcs.append(bob_pc)
        bob_pc.addTransceiver(ToneTrack(), direction="sendonly")
        await bob_pc.setLocalDescription(await bob_pc.createOffer())
        await b.send(m.Publish(call_id=call_id, sdp=bob_pc.localDescription.sdp))
        await _next(b, m.PublishAnswer)
        subscription = await _next(a, m.SubscribeOffer)
        assert isinstance(subscription, m.SubscribeOffer)
        await a.send(m.Hangup(call_id=call_id))
    for pc in pcs:
        await pc.close()


async def test_the_python_sdk_falls_back_to_the_old_mode_on_a_server_that_refuses_bundle(
    make_server: MakeServer,
) -> None:
    """Two softphones that bundle by default, on a server that refuses it: each publishes
    again without ``bundle`` (sfu_session.py) and they decode each other the old way."""
    server = await make_server(sfu_bundle=False)
    alice = Softphone(await server.signup("alice"), video=True)
    bob = Softphone(await server.signup("bob"), video=True)
    tasks: list[asyncio.Task[Summary]] = []
    try:
        await bob.line.open()
        tasks = [
            asyncio.create_task(alice.group(["bob"], 120.0)),
            asyncio.create_task(bob.answer(120.0)),
        ]

        def decoding() -> bool:
            found = [p.session for p in (alice, bob)]
            return all(s is not None and s.participants_received(video=True) == 1 for s in found)

        await until(decoding, 45.0, "alice and bob decoding each other")
        for phone in (alice, bob):
            assert phone.session is not None and not phone.session.bundle
            assert phone.session.revision == 0  # no renegotiate: subscribe_offers only
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for phone in (alice, bob):
            await phone.close()
