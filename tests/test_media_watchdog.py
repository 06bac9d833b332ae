"""Hung worker processes (media/watchdog.py): a worker alive but not answering is killed and
restarted, its rooms lost as after a crash, while the other worker's room goes on. The decision
core with a stepped clock; then a real node with two real workers, one stopped with SIGSTOP, and
real aiortc participants."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from media.config import parse_args
from media.control import MediaControl, MediaControlError
from media.watchdog import MIN_MISSES, Heartbeat, answered, hung, missed, started
from tests.media_nodes import until_stored
from tests.test_sfu_support import Peer, sfu_process, until

# --- the decision ----------------------------------------------------------------------------


def _after(misses: int, start: float = 100.0) -> Heartbeat:
    beat = started(start)
    for _ in range(misses):
        beat = missed(beat)
    return beat


@pytest.mark.parametrize(
    ("misses", "elapsed", "expected"),
    [
        (0, 0.0, False),
        (0, 60.0, False),  # never polled (the node's own loop was stuck): no verdict
        (MIN_MISSES - 1, 60.0, False),  # a long pause, few polls: the node paused, not it
        (MIN_MISSES, 9.9, False),  # missed enough, but not yet for the bound
        (MIN_MISSES, 10.0, True),
        (MIN_MISSES + 5, 30.0, True),
    ],
)
def test_a_worker_is_hung_after_the_bound_and_enough_missed_polls(
    misses: int, elapsed: float, expected: bool
) -> None:
    assert hung(_after(misses), 100.0 + elapsed, bound_s=10.0) is expected


def test_one_answer_clears_the_misses_and_restarts_the_bound() -> None:
    beat = answered(_after(MIN_MISSES + 2), 108.0)
    assert beat == Heartbeat(answered_at=108.0, misses=0)
    assert not hung(beat, 115.0, bound_s=10.0)
    for _ in range(MIN_MISSES):
        beat = missed(beat)
    assert not hung(beat, 117.9, bound_s=10.0)
    assert hung(beat, 118.0, bound_s=10.0)


def test_the_bound_is_a_flag_with_an_environment_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_args(["--secret", "s"]).worker_hang_s == 10.0
    assert parse_args(["--secret", "s", "--worker-hang-s", "4"]).worker_hang_s == 4.0
    monkeypatch.setenv("CALLBOOK_MEDIA_WORKER_HANG_S", "30")
    assert parse_args(["--secret", "s"]).worker_hang_s == 30.0
    with pytest.raises(SystemExit):
        parse_args(["--secret", "s", "--worker-hang-s", "0.5"])


# --- a stopped worker process ----------------------------------------------------------------


def _flowing(peers: list[Peer]) -> bool:
    for peer in peers:
        for other in peers:
            if other is not peer:
                audio, video = peer.decoded(other.name)
                if audio < 25 or video < 5:
                    return False
    return True


@pytest.mark.slow
async def test_a_stopped_worker_is_killed_and_restarted_and_only_its_room_ends() -> None:
    async with (
        sfu_process("--workers", "2") as node,
        MediaControl(node.url, node.secret) as control,
    ):
        rooms = [f"room-{os.urandom(4).hex()}" for _ in range(2)]
        calls: list[list[Peer]] = []
        stopped_pid = None
        try:
            for room in rooms:
                await control.create_room(room)
                peers = [Peer(f"p{i}", control, room) for i in range(2)]
                calls.append(peers)
                for peer in peers:
                    await peer.publish()
                for peer in peers:
                    await peer.subscribe(next(p.name for p in peers if p is not peer))
            await until(lambda: all(_flowing(c) for c in calls), 60, "media in both rooms")
            placed = [(await control.room_stats(room))["worker"] for room in rooms]
            assert sorted(placed) == [0, 1]  # one room on each worker

            victim = placed[0]
            stopped_pid = (await control.stats())["workers"][victim]["pid"]
            os.kill(stopped_pid, signal.SIGSTOP)  # alive, holding its sockets, answering nothing

            async def lost() -> bool:
                try:
                    stats = await control.room_stats(rooms[0])
                except MediaControlError as exc:  # the worker was killed under this request
                    assert exc.code == "room_lost", exc
                    return False
                return bool(stats.get("lost"))

            await until_stored(lost, 90, "the stopped worker's room is lost")
            stats = await control.room_stats(rooms[0])
            assert stats["worker"] == victim
            assert sorted(p["participant"] for p in stats["participants"]) == ["p0", "p1"]
            assert all(p["media_failed"] for p in stats["participants"])

            # The other worker's room goes on.
            before = (await control.room_stats(rooms[1]))["forwarded_packets"]

            async def still_forwarding() -> bool:
                stats = await control.room_stats(rooms[1])
                assert not any(p["media_failed"] for p in stats["participants"]), stats
                return bool(stats["forwarded_packets"] > before + 200)

            await until_stored(still_forwarding, 30, "the other room's media flows on")

            async def replaced() -> bool:
                load: dict[str, Any] = (await control.stats())["workers"][victim]
                return bool(
                    load["up"] and load["hangs"] == 1 and load["restarts"] == 1
                    and load["pid"] != stopped_pid
                )  # fmt: skip

            await until_stored(replaced, 60, "the hung worker was killed and restarted")
            assert not _alive(stopped_pid)  # killed, and reaped by the node
            other = (await control.stats())["workers"][1 - victim]
            assert other["hangs"] == 0 and other["restarts"] == 0
        finally:
            if stopped_pid is not None and _alive(stopped_pid):
                os.kill(stopped_pid, signal.SIGKILL)
            for peers in calls:
                for peer in peers:
                    await peer.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
