"""Answering a call while the store still says the device talks in a call that just ended on
another node (its owner has not yet written the busy entry's removal).

The soak's `unknown_call` at `accept`: the node that runs the answered call hangs up the call
the device "talks in elsewhere", as the device would, by a forwarded `hangup`; that call is
already over, and its old owner refused the hangup to the device, which had sent no hangup.
"""

from __future__ import annotations

from typing import Any

from directory.storage import keys
from directory.store import Store
from signaling.protocol import messages as m
from tests.conftest import MakeServer
from tests.test_store_costs import Link, _blocked, _connect, _people
from tests.test_store_costs import nodes as _two_nodes

nodes = _two_nodes  # the fixture: call services on the Redis router, in this process


async def _until(link: Link, kind: type[m.ServerMessage]) -> list[m.ServerMessage]:
    """What the device hears up to and including the first ``kind``."""
    seen = [await link.expect(m.ServerMessage)]  # type: ignore[type-abstract]
    while not isinstance(seen[-1], kind):
        seen.append(await link.expect(m.ServerMessage))  # type: ignore[type-abstract]
    return seen


async def test_answering_right_after_a_call_on_another_node_ended_refuses_nothing(
    make_server: MakeServer, store: Store, nodes: Any
) -> None:
    (alice, _), (bob, bob_handle), (carol, _) = await _people(make_server, 3)
    a, b = await nodes("stale-a"), await nodes("stale-b")
    ca, cb, cc = await _connect(a, alice), await _connect(a, bob), await _connect(b, carol)
    await a.handle(alice, m.Invite(handle=bob_handle, media="audio", ref="r"))
    first = (await ca.expect(m.Ringing)).call_id
    await cb.expect(m.Incoming)
    await a.handle(bob, m.Accept(call_id=first))
    await cb.expect(m.Accepted)
    await a.flush_store_writes()  # bob's busy entry names node a's call
    go = await _blocked(a)  # the window: node a has not removed it yet
    await a.handle(alice, m.Hangup(call_id=first))
    await cb.expect(m.Ended)
    assert bob.device_id in await store.redis.hgetall(keys.busy(bob.account_id))

    await b.handle(carol, m.Invite(handle=bob_handle, media="audio", ref="r2"))
    second = (await cc.expect(m.Ringing)).call_id
    await cb.expect(m.Incoming)
    await a.handle(bob, m.Accept(call_id=second))
    heard = await _until(cb, m.Accepted)
    go.set()
    assert not [s for s in heard if isinstance(s, m.Error)], heard
    await cc.expect(m.Accepted)
