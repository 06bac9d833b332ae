"""Real calls across the network lab's NATs and firewalls: the SDK's softphones (aiortc) in hosts
behind them, ``callbook serve`` (and coturn) in a public host."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCRtpReceiver

from signaling.sdk import softphone
from tests.netlab import Host, Lab
from tests.netlab_calls import Person, befriend, call, signed_up, start_server, until

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


def _connected_through(person: Person) -> tuple[str, str]:
    local, remote = person.event("connected")["path"]
    return local, remote


@pytest.mark.parametrize("turn", ["udp", None])
async def test_behind_a_symmetric_nat_calls_go_through_a_relay(
    netlab: Lab, tmp_path: Path, turn: str | None
) -> None:
    """Peer to peer cannot work here (a symmetric NAT against a port-restricted one). Until
    the call falls back by itself, the relay comes from the relay setting: strangers are
    relayed, through coturn when configured, else through the SFU."""
    inet, public = _public(netlab)
    a, _ = netlab.behind_nat(inet, "a", "symmetric")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    deployment = await start_server(public, tmp_path, turn=turn)
    async with signed_up(deployment, (a, "alice"), (b, "bob")) as (alice, bob):
        calling, answered = await call(alice, bob, duration_s=2.0)
    for summary in (calling, answered):
        assert summary.outcome == "connected" and summary.media_both_ways, summary.as_event()
    for person in (alice, bob):
        accepted = person.event("accepted")
        assert (accepted["relay_only"], accepted["sfu"]) == (True, turn is None)
        if turn is not None:
            assert _connected_through(person) == ("relay", "relay")
    if turn is not None:
        assert "ALLOCATE" in deployment.turn_text()


async def test_with_udp_blocked_calls_go_through_turn_over_tcp(netlab: Lab, tmp_path: Path) -> None:
    inet, public = _public(netlab)
    a, firewall = netlab.behind_nat(inet, "a", "cone")
    firewall.block_udp()
    b, _ = netlab.behind_nat(inet, "b", "cone")
    deployment = await start_server(public, tmp_path, turn="tcp")
    async with signed_up(deployment, (a, "alice"), (b, "bob")) as (alice, bob):
        calling, answered = await call(alice, bob, duration_s=2.0)
    for summary in (calling, answered):
        assert summary.outcome == "connected" and summary.media_both_ways, summary.as_event()
    assert _connected_through(alice) == ("relay", "relay")
    assert "tcp or tls connected" in deployment.turn_text()  # a TURN client over TCP


#: How long the link loses 5 %: the 30 s the issue asks for (shorter for a quick local run).
LOSS_S = float(os.environ.get("CALLBOOK_NETLAB_LOSS_S", "30"))


async def test_five_percent_loss_on_a_link_the_call_stays_up_and_recovers(
    netlab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feedback = _count_feedback(monkeypatch)
    inet, public = _public(netlab)
    a, router = netlab.behind_nat(inet, "a", "cone")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    deployment = await start_server(public, tmp_path)
    async with signed_up(deployment, (a, "alice"), (b, "bob"), video=True) as (alice, bob):
        await befriend(alice, bob)
        calling = asyncio.ensure_future(call(alice, bob, duration_s=None))
        await until(lambda: min(_frames(bob)) > 0, "media")
        before = _frames(bob)
        rules = [router.loss(router.uplink, 0.05), router.loss(router.uplink, 0.05, True)]
        await asyncio.sleep(LOSS_S)  # the lossy stretch itself, not a wait for something
        during, dropped = _frames(bob), router.dropped()
        for rule in rules:
            router.restore(rule)
        # After 30 s of loss aiortc's decoder may wait for a keyframe it asks for on its next
        # decoder error; in a loaded CI run that took over 30 s once (alone with a hog: ~2 s).
        await until(lambda: _frames(bob)[1] > during[1] + 15, "video after the loss", 60.0)
        await alice.host.run(alice.phone.hang_up())
        summaries = await calling
    assert dropped > 0
    for summary in summaries:
        assert summary.outcome == "connected" and summary.reason == "hangup", summary.as_event()
    assert during[0] > before[0] and during[1] > before[1], (before, during)  # kept flowing
    assert feedback["nack"] > 0, feedback  # lost video packets were asked for again (PLIs: counted)


def _frames(person: Person) -> tuple[int, int]:
    """(audio frames, video frames) the person's phone has decoded in the call so far."""
    received = person.phone.received
    if received is None:
        return 0, 0
    return received.audio_packets_received, received.video_frames_received


def _count_feedback(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the NACKs and PLIs aiortc's receivers send (every host's, in this process)."""
    counts = {"nack": 0, "pli": 0}
    nack, pli = RTCRtpReceiver._send_rtcp_nack, RTCRtpReceiver._send_rtcp_pli

    async def counting_nack(self: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> None:
        counts["nack"] += 1
        await nack(self, media_ssrc, lost)

    async def counting_pli(self: RTCRtpReceiver, media_ssrc: int) -> None:
        counts["pli"] += 1
        await pli(self, media_ssrc)

    monkeypatch.setattr(RTCRtpReceiver, "_send_rtcp_nack", counting_nack)
    monkeypatch.setattr(RTCRtpReceiver, "_send_rtcp_pli", counting_pli)
    return counts


async def test_a_server_behind_a_cloud_nat_announces_its_public_address(
    netlab: Lab, tmp_path: Path
) -> None:
    """The server (and its SFU) on a private address behind a 1:1 NAT, as on a cloud VM or in
    a container: with CALLBOOK_MEDIA_PUBLIC_IP its SFU's candidates name the public address
    (without it they name the private one, which nobody outside can reach), and the STUN URI
    names the address devices reached it by."""
    inet = netlab.internet()
    cloud = netlab.host("cloud-nat", router=True)
    wan = netlab.link(inet, cloud)
    private = netlab.host("server")
    netlab.link(cloud, private, private=True)
    public = wan.down_address
    cloud.one_to_one(wan.down, public, private.address)
    a, _ = netlab.behind_nat(inet, "a", "cone")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    deployment = await start_server(
        private, tmp_path, reached_at=public, CALLBOOK_MEDIA_PUBLIC_IP=public
    )
    async with signed_up(deployment, (a, "alice"), (b, "bob")) as (alice, bob):
        calling, answered = await call(alice, bob, duration_s=2.0)  # strangers: through the SFU
    for summary in (calling, answered):
        assert summary.outcome == "connected", summary.as_event()
        assert summary.participants_received == 1
    assert alice.event("accepted")["sfu"] is True
    seen = "\n".join(alice.phone.received_signaling)
    assert f" {public} " in seen and private.address not in seen


async def test_contacts_behind_a_symmetric_nat_reach_each_other_through_turn_by_ice_alone(
    netlab: Lab, tmp_path: Path
) -> None:
    """Contacts (peer to peer by policy), one behind a symmetric NAT, TURN configured: the
    direct pairs never work, but every device gathers relay candidates too, and ICE settles on
    the relay by itself; no relay setting is needed."""
    inet, public = _public(netlab)
    a, _ = netlab.behind_nat(inet, "a", "symmetric")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    deployment = await start_server(public, tmp_path, turn="udp")
    async with signed_up(deployment, (a, "alice"), (b, "bob")) as (alice, bob):
        await befriend(alice, bob)
        calling, answered = await call(alice, bob, duration_s=2.0)
    for summary in (calling, answered):
        assert summary.outcome == "connected" and summary.media_both_ways, summary.as_event()
    for person in (alice, bob):
        assert person.event("accepted")["relay_only"] is False
        assert "relay" in _connected_through(person)


async def test_contacts_whose_peer_to_peer_path_fails_fall_back_to_the_sfu_by_themselves(
    netlab: Lab, tmp_path: Path
) -> None:
    """Contacts (peer to peer by policy), one behind a symmetric NAT, no TURN: no direct pair
    works, so the call moves to the SFU (protocol 11.9.1) without ending, media both ways,
    end-to-end encrypted as every call through the SFU."""
    inet, public = _public(netlab)
    a, _ = netlab.behind_nat(inet, "a", "symmetric")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    deployment = await start_server(public, tmp_path)
    async with signed_up(deployment, (a, "alice"), (b, "bob")) as (alice, bob):
        await befriend(alice, bob)
        calling, answered = await call(alice, bob, duration_s=2.0)
        metrics = await alice.host.run(_metrics(deployment.url))
    for summary in (calling, answered):
        assert summary.outcome == "connected" and summary.media_both_ways, summary.as_event()
        assert summary.participants_received == 1
    for person in (alice, bob):
        accepted = person.event("accepted")
        assert (accepted["relay_only"], accepted["sfu"]) == (False, False)
        assert person.event("relayed")["sfu"] is True
        assert not [e for e in person.events if e["event"] == "connected"]  # never peer to peer
    assert 'callbook_call_paths_total{fell_back="true",path="sfu"} 1.0' in metrics


async def _metrics(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        return await response.text()


async def test_contacts_whose_peer_to_peer_path_fails_fall_back_to_turn_when_configured(
    netlab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With coturn configured the call moves to TURN: both devices make new relay-only
    connections and the caller offers again. ICE alone would find coturn here too (the test
    above), so each device asks at once, as one whose ICE failed does."""
    monkeypatch.setattr(softphone, "FALLBACK_AFTER_S", 0.0)
    inet, public = _public(netlab)
    a, _ = netlab.behind_nat(inet, "a", "symmetric")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    deployment = await start_server(public, tmp_path, turn="udp")
    async with signed_up(deployment, (a, "alice"), (b, "bob")) as (alice, bob):
        await befriend(alice, bob)
        calling, answered = await call(alice, bob, duration_s=2.0)
        metrics = await alice.host.run(_metrics(deployment.url))
    for summary in (calling, answered):
        assert summary.outcome == "connected" and summary.media_both_ways, summary.as_event()
    for person in (alice, bob):
        assert person.event("accepted")["relay_only"] is False
        assert person.event("relayed")["sfu"] is False
        assert _connected_through(person) == ("relay", "relay")
    # From the move on, the server passed relay candidates only.
    after = bob.phone.received_signaling[-1]
    assert "typ relay" in after and "typ host" not in after and "typ srflx" not in after
    assert 'callbook_call_paths_total{fell_back="true",path="turn"} 1.0' in metrics
