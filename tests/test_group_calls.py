"""Group calls end to end: real aiortc bots, the real SFU process, the real server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from media.control import MediaControl
from media.embedded import EmbeddedMedia
from signaling.protocol.bodies import AccountUpdate
from signaling.sdk.softphone import Softphone, Summary
from tests.conftest import MakeServer, Server
from tests.test_media_calls import _cli, _events
from tests.test_sfu_support import until

pytestmark = pytest.mark.slow


async def _answer_after_ring(phone: Softphone, duration_s: float) -> Summary:
    return await phone.answer(duration_s)


async def test_three_bots_each_receive_both_others_audio_and_video(server: Server) -> None:
    events: list[tuple[str, dict[str, object]]] = []

    def log(name: str) -> Callable[[dict[str, object]], None]:
        return lambda event: events.append((name, event))

    alice = Softphone(await server.signup("alice"), video=True, emit=log("alice"))
    bob = Softphone(await server.signup("bob"), video=True, emit=log("bob"))
    carol = Softphone(await server.signup("carol"), video=True, emit=log("carol"))
    try:
        for phone in (bob, carol):
            await phone.line.open()
        results = await asyncio.wait_for(
            asyncio.gather(alice.group(["bob", "Carol"], 8.0), bob.answer(7.0), carol.answer(7.0)),
            60,
        )
    except TimeoutError:
        pytest.fail(f"stuck; events: {events}")
    finally:
        for phone in (alice, bob, carol):
            await phone.close()
    for summary in results:
        assert summary.outcome == "connected", summary.as_event()
        assert summary.participants_received == 2, summary.as_event()
        assert summary.sent_packets > 0
    # Everyone sends the same tone: someone is the active speaker, announced to all three.
    speakers = {name: e["handle"] for name, e in events if e["event"] == "active_speaker"}
    assert set(speakers) == {"alice", "bob", "carol"}, events
    assert all(handle in {"alice", "bob", "carol"} for handle in speakers.values()), speakers


async def test_a_late_joiner_learns_who_is_speaking_without_waiting_for_a_change(
    server: Server,
) -> None:
    # Equal steady tones: the first speaker keeps the floor (hysteresis), so the speaker never
    # changes again and a joiner told only of changes would never learn it.
    heard: dict[str, asyncio.Queue[object]] = {"alice": asyncio.Queue(), "dave": asyncio.Queue()}

    def log(name: str) -> Callable[[dict[str, object]], None]:
        def emit(event: dict[str, object]) -> None:
            if event["event"] == "active_speaker" and name in heard:
                heard[name].put_nowait(event["handle"])

        return emit

    alice = Softphone(await server.signup("alice"), video=False, emit=log("alice"))
    others = {
        name: Softphone(await server.signup(name), video=False, emit=log(name))
        for name in ("bob", "carol", "dave")
    }
    for phone in others.values():
        await phone.line.open()
    calls = [asyncio.create_task(alice.group(["bob", "carol", "dave"], None))]
    calls += [asyncio.create_task(others[name].answer(None)) for name in ("bob", "carol")]
    try:
        while await asyncio.wait_for(heard["alice"].get(), 60) is None:
            pass
        calls.append(asyncio.create_task(others["dave"].answer(None)))  # rang all along
        told = await asyncio.wait_for(heard["dave"].get(), 60)
        assert told in {"alice", "bob", "carol"}, told
    finally:
        for call in calls:
            call.cancel()
        for phone in (alice, *others.values()):
            await phone.close()


def _candidate_ports(sdps: list[str]) -> set[int]:
    """The ports of every ICE candidate in these SDPs."""
    return {int(found[1]) for sdp in sdps for found in _CANDIDATE.finditer(sdp)}


_CANDIDATE = re.compile(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ")


def _family(pid: int) -> list[int]:
    """A process and its descendants (a media node's worker processes hold its sockets)."""
    found = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += _family(int(child))
    return found


def _udp_ports_of(pid: int) -> set[int]:
    """The local UDP ports of one process and its children: their socket inodes, looked up in
    /proc/net/udp{,6}."""
    inodes = set()
    for member in _family(pid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{member}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_hide_my_ip_without_turn_relays_through_the_sfu_and_hides_addresses(
    server: Server, sfu: EmbeddedMedia
) -> None:
    alice = Softphone(await server.signup("alice"), video=True)
    bob_client = await server.signup("bob")
    await bob_client.update(AccountUpdate(hide_ip=True))
    bob = Softphone(bob_client, video=True)
    await bob.line.open()
    assert sfu.pid is not None
    sfu_ports: set[int] = set()

    async def sample_sfu_ports(pid: int) -> None:
        while True:
            sfu_ports.update(_udp_ports_of(pid))
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample_sfu_ports(sfu.pid))
    try:
        answering = asyncio.create_task(bob.answer(duration_s=None))
        caller = await alice.call("bob", duration_s=4.0)
        callee = await asyncio.wait_for(answering, 15)
    finally:
        sampler.cancel()
        await alice.close()
        await bob.close()
    for summary in (caller, callee):
        assert summary.outcome == "connected", summary.as_event()
        assert summary.participants_received == 1
        assert summary.media.video_frames_received > 0
    for me, peer in ((alice, bob), (bob, alice)):
        seen = _candidate_ports(me.received_signaling)
        assert seen, "no candidates reached this side"
        # Sampled while the call ran (short-lived gathering sockets can slip between samples).
        assert seen & sfu_ports, "the candidates are not the SFU's"
        assert not seen & _candidate_ports(peer.sent_signaling), "the peer's own address leaked"


async def test_a_participant_killed_mid_call_drops_out_and_the_rest_go_on(
    make_server: MakeServer,
) -> None:
    server = await make_server(resume_window_s=1.0)
    rosters: dict[str, list[list[str]]] = {"alice": [], "bob": [], "carol": []}
    everyone = ["alice", "bob", "carol"]
    carol_is_in = asyncio.Event()

    def watch(name: str) -> Callable[[dict[str, Any]], None]:
        def emit(event: dict[str, Any]) -> None:
            if event["event"] == "participants":
                rosters[name].append(event["handles"])
                if name == "carol" and event["handles"] == everyone:
                    carol_is_in.set()

        return emit

    alice, bob, carol = [
        Softphone(await server.signup(name), video=True, emit=watch(name))
        for name in ("alice", "bob", "carol")
    ]
    for phone in (bob, carol):
        await phone.line.open()
    hosting = asyncio.create_task(alice.group(["bob", "carol"], 10.0))
    staying = asyncio.create_task(bob.answer(9.0))
    doomed = asyncio.create_task(carol.answer(None))
    try:
        await asyncio.wait_for(carol_is_in.wait(), 30)
        # Carol's device dies: no hangup, the socket just goes.
        await carol.line.drop()
        doomed.cancel()
        results = await asyncio.wait_for(asyncio.gather(hosting, staying), 60)
    finally:
        for phone in (alice, bob, carol):
            await phone.close()
    for summary in results:
        assert summary.outcome == "connected", summary.as_event()
        assert summary.participants_received is not None and summary.participants_received >= 1
    for name in ("alice", "bob"):
        seen = rosters[name]
        last_with_carol = max(i for i, roster in enumerate(seen) if "carol" in roster)
        assert ["alice", "bob"] in seen[last_with_carol + 1 :], seen


async def test_a_participant_whose_media_dies_is_told_and_the_rest_go_on(server: Server) -> None:
    """Carol's uplink dies on the SFU while her signaling stays up: she is told ``media_failed``
    (instead of nothing), and the others see her leave and keep talking."""
    rosters: dict[str, list[list[str]]] = {"alice": [], "bob": [], "carol": []}
    everyone = ["alice", "bob", "carol"]
    carol_is_in = asyncio.Event()

    def watch(name: str) -> Callable[[dict[str, Any]], None]:
        def emit(event: dict[str, Any]) -> None:
            if event["event"] == "participants":
                rosters[name].append(event["handles"])
                if name == "carol" and event["handles"] == everyone:
                    carol_is_in.set()

        return emit

    alice, bob, carol = [
        Softphone(await server.signup(name), video=False, emit=watch(name))
        for name in ("alice", "bob", "carol")
    ]
    for phone in (bob, carol):
        await phone.line.open()
    hosting = asyncio.create_task(alice.group(["bob", "carol"], None))
    staying = asyncio.create_task(bob.answer(None))
    failing = asyncio.create_task(carol.answer(None))
    try:
        await asyncio.wait_for(carol_is_in.wait(), 30)
        session = carol.session
        assert session is not None
        await until(
            lambda: session.participants_received(False) == 2, limit_s=30, what="carol hears both"
        )
        await session._uplink.close()  # her media leg dies; her WebSocket stays up
        carol_summary = await asyncio.wait_for(failing, 30)
        assert carol_summary.reason == "media_failed", carol_summary.as_event()
        await until(
            lambda: all(
                rosters[n] and rosters[n][-1] == ["alice", "bob"] for n in ("alice", "bob")
            ),
            what="carol gone from the others' rosters",
        )
        assert not hosting.done() and not staying.done()
    finally:
        for task in (hosting, staying, failing):
            task.cancel()
        await asyncio.gather(hosting, staying, failing, return_exceptions=True)
        for phone in (alice, bob, carol):
            await phone.close()


async def test_a_relayed_call_whose_media_dies_ends_for_both_with_media_failed(
    server: Server,
) -> None:
    """A hide-my-IP 1:1 call through the SFU: when alice's connection to the SFU dies, the call
    has nothing left to carry and both devices are told ``media_failed``."""
    alice = Softphone(await server.signup("alice"))
    bob_client = await server.signup("bob")
    await bob_client.update(AccountUpdate(hide_ip=True))
    bob = Softphone(bob_client)
    await bob.line.open()
    answering = asyncio.create_task(bob.answer(duration_s=None))
    calling = asyncio.create_task(alice.call("bob", duration_s=60.0))
    try:
        await until(
            lambda: all(p.session and p.session.participants_received(False) for p in (alice, bob)),
            limit_s=30,
            what="media both ways",
        )
        assert alice.session is not None
        await alice.session._uplink.close()  # her media leg dies; her WebSocket stays up
        caller, callee = await asyncio.wait_for(asyncio.gather(calling, answering), 30)
    finally:
        for task in (calling, answering):
            task.cancel()
        await asyncio.gather(calling, answering, return_exceptions=True)
        await alice.close()
        await bob.close()
    assert caller.reason == callee.reason == "media_failed", (caller, callee)


async def test_cli_group_call_with_json_summaries(server: Server, tmp_path: Path) -> None:
    profiles = {name: tmp_path / f"{name}.json" for name in ("ann", "ben", "cat")}
    for name, profile in profiles.items():
        signup = await _cli("signup", name, "--server", server.url, "--profile", str(profile))
        assert await signup.wait() == 0
    guests = [
        await _cli("answer", "--profile", str(profiles[n]), "--once", "--video", "--json")
        for n in ("ben", "cat")
    ]
    for guest in guests:
        assert guest.stdout is not None
        assert json.loads(await asyncio.wait_for(guest.stdout.readline(), 30))["event"] == "ready"
    host = await _cli(
        "group", "ben", "cat", "--profile", str(profiles["ann"]), "--video", "--duration", "5",
        "--json",
    )  # fmt: skip
    out, err = await asyncio.wait_for(host.communicate(), 60)
    assert host.returncode == 0, err.decode()
    # Guests leave once the host has gone, and report the same way.
    for guest in guests:
        guest_out, guest_err = await asyncio.wait_for(guest.communicate(), 30)
        assert guest.returncode == 0, guest_err.decode()
        assert _events(guest_out)[-1]["participants_received"] == 2
    summary = _events(out)[-1]
    assert (summary["event"], summary["outcome"], summary["participants_received"]) == (
        "summary",
        "connected",
        2,
    )


async def test_a_mixed_room_one_connection_each_for_bundled_bots_and_the_old_mode_works(
    server: Server, sfu: EmbeddedMedia
) -> None:
    """Alice and bob use one connection each (the default); carol is an old client with a
    connection per publisher. Everyone decodes everyone, and the SFU holds exactly one peer
    connection and one DTLS session for each bundled participant."""
    alice = Softphone(await server.signup("alice"), video=True)
    bob = Softphone(await server.signup("bob"), video=True)
    carol = Softphone(await server.signup("carol"), video=True, bundle=False)
    tasks: list[asyncio.Task[Summary]] = []
    try:
        for phone in (bob, carol):
            await phone.line.open()
        tasks = [
            asyncio.create_task(alice.group(["bob", "carol"], 60.0)),
            asyncio.create_task(bob.answer(60.0)),
            asyncio.create_task(carol.answer(60.0)),
        ]
        phones = (alice, bob, carol)
        await until(
            lambda: all(p.session and p.session.participants_received(True) == 2 for p in phones),
            60.0,
            "everyone decoding both others",
        )
        sessions = {name: p.session for name, p in zip("abc", phones, strict=True)}
        assert sessions["a"] is not None and sessions["c"] is not None
        ids = {name: s.keys.me for name, s in sessions.items() if s is not None}
        async with MediaControl(sfu.url, sfu.secret) as control:
            stats = await control.room_stats(sessions["a"].call_id)
        by_id = {p["participant"]: p for p in stats["participants"]}
        for bundled in ("a", "b"):
            entry = by_id[ids[bundled]]
            assert (entry["peer_connections"], entry["dtls_sessions"]) == (1, 1), entry
        old = by_id[ids["c"]]
        assert old["peer_connections"] == 3, old  # its uplink and one downlink per publisher
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for phone in (alice, bob, carol):
            await phone.close()
