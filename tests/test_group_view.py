"""``view`` over the real WebSocket (docs/protocol.md 11.15.3): routed to the call's SFU room,
refused with the protocol's codes when it names nobody the SFU knows, or no call, or a bad
height."""

from __future__ import annotations

import json

from signaling.protocol import messages as m
from tests.conftest import Server
from tests.test_calls import _line
from tests.test_group_protocol import _start


async def test_view_is_routed_and_refused_with_stable_codes(server: Server) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with await _line(alice) as a, await _line(bob) as b:
        joined = await _start(a, "bob")
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=joined.call_id))
        bob_joined = await b.expect(m.Joined)
        await a.expect(m.Participants)

        # Nobody has published yet: the SFU knows neither of them.
        view = m.View(call_id=joined.call_id, participant=bob_joined.participant, max_height=180)
        await a.send(view)
        error = await a.expect(m.Error)
        assert (error.code, error.call_id) == ("unknown_subscription", joined.call_id)

        await a.send(m.View(call_id="0" * 32, participant=bob_joined.participant))
        assert (await a.expect(m.Error)).code == "unknown_call"

        for bad in (-1, 8193, "tall"):
            frame = {
                "type": "view",
                "call_id": joined.call_id,
                "participant": bob_joined.participant,
                "max_height": bad,
            }
            await a.send_raw(json.dumps(frame))
            assert (await a.expect(m.Error)).code == "invalid_message"
