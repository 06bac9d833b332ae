"""A device changes networks mid-call, in the network lab: the SDK's softphone (aiortc) notices
its own move, resumes its WebSocket and negotiates a new peer connection inside the same call;
media flows again both ways and the call goes on (protocol 11.5.9, 11.5.10)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from signaling.sdk import line
from tests.netlab import Host, Lab
from tests.netlab_calls import Person, befriend, call, signed_up, start_server, until

pytestmark = [pytest.mark.netlab, pytest.mark.slow]

#: Frames each side must decode after the move: a second and more of video (15 fps), so a
#: few stray packets of the old path never pass for the new one.
FRAMES_AFTER = 20
#: A generous limit for a loaded machine (the figure is in docs/benchmarks.md: ~1-2 s).
RECOVER_S = 30.0


def _frames(person: Person) -> tuple[int, int]:
    received = person.phone.received
    if received is None:
        return 0, 0
    return received.audio_packets_received, received.video_frames_received


def _more(person: Person, before: tuple[int, int]) -> bool:
    audio, video = _frames(person)
    return audio > before[0] + 2 * FRAMES_AFTER and video > before[1] + FRAMES_AFTER


def _events(person: Person, name: str) -> list[dict[str, object]]:
    return [e for e in person.events if e["event"] == name]


def _network(lab: Lab) -> tuple[Host, Host, Host, Host]:
    """(the server's host, the internet, Alice's host, Bob's), each device behind a cone NAT."""
    inet = lab.internet()
    public = lab.host("server")
    lab.link(inet, public)
    a, _ = lab.behind_nat(inet, "a", "cone")
    b, _ = lab.behind_nat(inet, "b", "cone")
    return public, inet, a, b


async def _move_mid_call(
    alice: Person, bob: Person, mover: Person, move: object
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Call, wait for media both ways, make ``mover`` move (``move()``), wait for media both
    ways again; hang up. Returns what each had decoded before the move."""
    await befriend(alice, bob)
    calling = asyncio.ensure_future(call(alice, bob, duration_s=None))
    try:
        await until(lambda: min(_frames(alice)) > 0 and min(_frames(bob)) > 0, "media")
        before = _frames(alice), _frames(bob)
        assert callable(move)
        move()
        await until(lambda: _more(alice, before[0]) and _more(bob, before[1]),
                    "media both ways after the move", RECOVER_S)  # fmt: skip
        assert not calling.done(), calling.result()
        await alice.host.run(alice.phone.hang_up())
        summaries = await asyncio.wait_for(calling, 30)
    finally:
        calling.cancel()
    for summary in summaries:
        assert summary.outcome == "connected" and summary.reason == "hangup", summary.as_event()
    assert mover.phone.line.losses, "the moved device's WebSocket was resumed"
    return before


def _recovered(moved: Person, other: Person, first_why: str) -> None:
    """Each reported ``reconnecting`` and then ``reconnected``; the moved device first for
    ``first_why``, the other for its peer's move (or, on a slow machine, its media stopping)."""
    assert _events(moved, "reconnecting")[0]["why"] == first_why, moved.events
    assert _events(other, "reconnecting")[0]["why"] in ("peer", "media"), other.events
    for person in (moved, other):
        names = [e["event"] for e in person.events]
        last = len(names) - 1 - names[::-1].index("reconnecting")
        assert "reconnected" in names[last:], names


@pytest.mark.parametrize("told", [True, False], ids=["os-tells", "os-silent"])
async def test_a_device_whose_address_changes_mid_call_gets_its_media_back(
    netlab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, told: bool
) -> None:
    """Alice (the caller) gets a new address from her home router mid-call: her sockets, the
    WebSocket's and the peer connection's, die with the old one. Her line resumes, she offers
    from a new connection, and Bob answers from a new one. Her device learns of the change
    from the operating system (rtnetlink); one that is not told notices its media stopping,
    and then its WebSocket not answering a ping."""
    if not told:
        monkeypatch.setattr(line.NetworkWatch, "start", lambda _on_change: None)
    public, _, a, b = _network(netlab)
    deployment = await start_server(public, tmp_path)
    renewed = a.address.rsplit(".", 1)[0] + ".3"
    async with signed_up(deployment, (a, "alice"), (b, "bob"), video=True) as (alice, bob):
        await _move_mid_call(alice, bob, alice, lambda: a.renumber(renewed))
    _recovered(alice, bob, "network" if told else "media")


async def test_a_device_that_moves_behind_another_nat_mid_call_gets_its_media_back(
    netlab: Lab, tmp_path: Path
) -> None:
    """Bob (the callee) leaves his home network for a mobile one (another interface, another
    router, another NAT, another public address): he offers from a new connection though he
    is the callee, and the call goes on through the new NAT, peer to peer."""
    public, inet, a, b = _network(netlab)
    mobile = netlab.host("b-mobile", router=True)
    mobile.nat(netlab.link(inet, mobile).down, "cone")
    carrier = netlab.link(mobile, b, private=True)
    b.sh("ip", "addr", "flush", "dev", carrier.down)  # one network at a time
    deployment = await start_server(public, tmp_path)
    async with signed_up(deployment, (a, "alice"), (b, "bob"), video=True) as (alice, bob):
        await _move_mid_call(alice, bob, bob, lambda: b.switch(carrier))
    _recovered(bob, alice, "network")
    local, remote = _events(bob, "reconnected")[-1]["path"]  # type: ignore[misc]
    assert local == "host" and remote in ("srflx", "prflx"), (local, remote)
