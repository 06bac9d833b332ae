"""1:1 calls by handle over the real WebSocket: ring rules, privacy, signaling relay."""

from __future__ import annotations

import asyncio

import pytest

from signaling.client import Client
from signaling.phone.line import Line
from signaling.schemas import AccountUpdate
from signaling.ws import messages as m
from tests.conftest import Server


async def _line(client: Client) -> Line:
    line = Line(client)
    await line.open()
    return line


async def _device(server: Server, owner: Client) -> Client:
    """A second device of the same account."""
    from signaling.client import _b64, new_device_key, Profile
    from directory.records import Device
    from signaling.schemas import DeviceEnrollment

    key, public = new_device_key()
    device: Device = await owner.request(
        "POST", "/v1/devices", Device, DeviceEnrollment(name="laptop", public_key=public)
    )
    assert owner.profile is not None
    other = server.client()
    other.profile = Profile(
        server=server.url,
        account_id=owner.profile.account_id,
        device_id=device.id,
        handle=owner.profile.handle,
        private_key=_b64(key.private_bytes_raw()),
    )
    return other


async def test_call_rings_every_device_and_one_answers(server: Server) -> None:
    alice = await server.signup("alice", "Alice")
    bob_phone = await server.signup("bob")
    bob_laptop = await _device(server, bob_phone)
    async with await _line(alice) as a, await _line(bob_phone) as b1, await _line(bob_laptop) as b2:
        await a.send(m.Invite(handle="bob", media="video", ref="r1"))
        ringing = await a.expect(m.Ringing)
        assert ringing.ref == "r1"
        ring1 = await b1.expect(m.Incoming)
        ring2 = await b2.expect(m.Incoming)
        assert ring1.call_id == ring2.call_id == ringing.call_id
        assert (ring1.caller.handle, ring1.caller.display_name, ring1.media) == ("alice", "Alice", "video")

        await b2.send(m.Accept(call_id=ringing.call_id))
        accepted = await a.expect(m.Accepted)
        assert (accepted.role, accepted.peer.handle, accepted.relay_only) == ("caller", "bob", False)
        assert (await b2.expect(m.Accepted)).role == "callee"
        elsewhere = await b1.expect(m.Ended)
        assert elsewhere.reason == "answered_elsewhere"

        await a.send(m.Description(call_id=ringing.call_id, kind="offer", sdp="v=0 offer"))
        offer = await b2.expect(m.PeerDescription)
        assert (offer.kind, offer.sdp) == ("offer", "v=0 offer")
        await b2.send(m.Ice(call_id=ringing.call_id, candidate="candidate:1 1 udp 1 127.0.0.1 9 typ host"))
        assert (await a.expect(m.PeerIce)).candidate.endswith("typ host")

        await a.send(m.Hangup(call_id=ringing.call_id))
        assert (await a.expect(m.Ended)).reason == "hangup"
        assert (await b2.expect(m.Ended)).reason == "hangup"
        # The device that did not answer heard nothing of the media negotiation.
        with pytest.raises(asyncio.TimeoutError):
            await b1.receive(timeout=0.3)
