"""``mute`` in a 1:1 call (protocol 11.5.13) over the real WebSocket: the other device of the
call gets ``peer_mute``, nobody else hears of it, it waits for a device that is reconnecting,
and a call that is not connected refuses it."""

from __future__ import annotations

from signaling.protocol import messages as m
from tests.conftest import Server, befriend
from tests.test_calls import _answered, _device, _line, _quiet, _ring


async def test_mute_reaches_only_the_other_device_of_the_call(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await befriend(alice, bob)
    laptop = await _device(server, bob)
    async with await _line(alice) as a, await _line(bob) as b1, await _line(laptop) as b2:
        call_id = await _ring(a, b1, b2)
        await b1.send(m.Accept(call_id=call_id))
        await a.expect(m.Accepted)
        await b1.expect(m.Accepted)
        assert (await b2.expect(m.Ended)).reason == "answered_elsewhere"

        await a.send(m.Mute(call_id=call_id, audio_muted=True, video_muted=True))
        told = await b1.expect(m.PeerMute)
        assert (told.call_id, told.audio_muted, told.video_muted) == (call_id, True, True)
        await b1.send(m.Mute(call_id=call_id, audio_muted=False, video_muted=True))
        told = await a.expect(m.PeerMute)
        assert (told.audio_muted, told.video_muted) == (False, True)
        await _quiet(b2)  # the device that did not answer hears nothing
        await _quiet(a)


async def test_mute_before_the_call_is_connected_is_refused(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _ring(a, b)
        await a.send(m.Mute(call_id=call_id, audio_muted=True, video_muted=False))
        error = await a.expect(m.Error)
        assert (error.code, error.call_id) == ("not_in_call", call_id)
        await b.send(m.Mute(call_id=call_id, audio_muted=True, video_muted=False))
        assert (await b.expect(m.Error)).code == "not_in_call"


async def test_mute_waits_for_a_device_that_is_reconnecting(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    await befriend(alice, bob)
    async with await _line(alice) as a, await _line(bob) as b:
        call_id = await _answered(a, b)
        await b.drop()
        await a.expect(m.PeerReconnecting)
        await a.send(m.Mute(call_id=call_id, audio_muted=True, video_muted=False))
        welcome = await b.open(resume=True)
        assert welcome.resumed
        told = await b.expect(m.PeerMute)
        assert (told.call_id, told.audio_muted, told.video_muted) == (call_id, True, False)
        await a.expect(m.PeerResumed)
