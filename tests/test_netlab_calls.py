"""Real calls across the network lab's NATs and firewalls: the SDK's softphones (aiortc) in hosts
behind them, ``callbook serve`` (and coturn) in a public host."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.netlab import Host, Lab
from tests.netlab_calls import befriend, call, signed_up, start_server

pytestmark = [pytest.mark.netlab, pytest.mark.slow]


def _public(lab: Lab) -> tuple[Host, Host]:
    """(the internet's router, a public host for the server)."""
    inet = lab.internet()
    server = lab.host("server")
    lab.link(inet, server)
    return inet, server


async def test_behind_two_cone_nats_with_no_configuration_calls_go_peer_to_peer(
    netlab: Lab, tmp_path: Path
) -> None:
    inet, public = _public(netlab)
    a, _ = netlab.behind_nat(inet, "a", "cone")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    deployment = await start_server(public, tmp_path)
    async with signed_up(deployment, (a, "alice"), (b, "bob")) as (alice, bob):
        await befriend(alice, bob)
        calling, answered = await call(alice, bob, duration_s=2.0)
    for summary in (calling, answered):
        assert summary.outcome == "connected" and summary.media_both_ways, summary.as_event()
    for person in (alice, bob):
        accepted = person.event("accepted")
        assert (accepted["relay_only"], accepted["sfu"]) == (False, False)
        local, remote = person.event("connected")["path"]
        # Each reached the other's public mapping: learned by STUN (srflx) or from the other's
        # checks (prflx); never a relay, and no host address is reachable across the NATs.
        assert local == "host" and remote in ("srflx", "prflx"), (local, remote)
    # What each was sent: the other's server-reflexive candidate, learned from the server's STUN.
    for phone in (alice.phone, bob.phone):
        assert any("typ srflx" in line for line in phone.received_signaling)
