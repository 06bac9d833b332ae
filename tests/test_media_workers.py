"""A media node's worker processes (media/workers.py): rooms spread over them, a worker killed
mid-call ends only its own room (its participants told ``media_failed``) while the other
worker's room goes on, and it is restarted and takes new rooms. Real media node and worker
processes, real signaling, real aiortc participants."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from directory.storage.media_nodes import WorkerLoad
from media import errors
from media.config import SECRET_ENV, MediaConfig, cores, parse_workers
from media.control import MediaControl
from media.registry import load
from media.workers import LostRoom, Worker, choose, lost_room_stats
from signaling.sdk.softphone import Softphone
from tests.conftest import MakeServer
from tests.media_nodes import until, until_stored
from tests.ports import free_port
from tests.test_sfu_support import sfu_process

# --- pure parts ------------------------------------------------------------------------------


def _worker(index: int, rooms: dict[str, set[str]], up: bool = True) -> Worker:
    return Worker(index, f"/nowhere/{index}.sock", up=up, rooms=rooms)


def test_a_new_room_goes_to_the_running_worker_with_fewest_participants_then_rooms() -> None:
    busy = _worker(0, {"a": {"x", "y", "z"}})
    two_rooms = _worker(1, {"b": {"x"}, "c": set()})
    one_room = _worker(2, {"d": {"x"}})
    assert choose([busy, two_rooms, one_room]) is one_room
    assert choose([busy, two_rooms]) is two_rooms
    tie = _worker(3, {"e": {"x"}})
    assert choose([tie, one_room]) is one_room  # the lowest index breaks a tie
    assert choose([_worker(0, {}, up=False), busy]) is busy  # a restarting one gets nothing
    assert choose([_worker(0, {}, up=False)]) is None


def test_a_lost_room_reports_every_participant_media_failed() -> None:
    stats = lost_room_stats("r", LostRoom(4, {"bob", "ann"}, worker=1))
    assert [p["participant"] for p in stats["participants"]] == ["ann", "bob"]
    assert all(p["media_failed"] for p in stats["participants"])
    assert stats["legs_failed"] == 2 and stats["worker"] == 1 and stats["max_participants"] == 4


def test_a_workers_error_is_raised_again_with_its_code() -> None:
    error = errors.from_wire(409, "room_full", "full")
    assert isinstance(error, errors.RoomFull) and error.status == 409
    unknown = errors.from_wire(418, "teapot", "a newer worker")
    assert (unknown.code, unknown.status, unknown.detail) == ("media_error", 418, "a newer worker")


def test_workers_default_to_one_per_core_and_zero_means_in_process() -> None:
    assert parse_workers("auto") == cores() >= 1
    assert parse_workers("0") == 0 and parse_workers("3") == 3
    with pytest.raises(ValueError):
        parse_workers("-1")
    assert MediaConfig(secret="s").workers == 0  # create_app in tests: rooms in-process


def test_the_registry_entry_carries_each_workers_load() -> None:
    stats: dict[str, object] = {
        "rooms": 2,
        "participants": 5,
        "workers": [
            {"index": 0, "up": True, "pid": 7, "rooms": 2, "participants": 5,
             "packets_per_s": 1200.5, "cpu": 0.4, "forwarded": 9, "restarts": 1},
            {"index": 1, "up": False, "pid": None, "rooms": 0, "participants": 0,
             "packets_per_s": 0.0, "cpu": 0.0, "forwarded": 0, "restarts": 0},
        ],
    }  # fmt: skip
    info = load(MediaConfig(secret="s", node_id="m", advertise_url="http://m"), stats, 0.0)
    assert info.workers == [
        WorkerLoad(index=0, up=True, rooms=2, participants=5, packets_per_s=1200.5, cpu=0.4,
                   restarts=1),
        WorkerLoad(index=1, up=False),
    ]  # fmt: skip


# --- processes -------------------------------------------------------------------------------


def _recorder(events: list[dict[str, Any]], name: str) -> Callable[[dict[str, Any]], None]:
    return lambda event: events.append({**event, "who": name})


async def _metrics(url: str, secret: str) -> str:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"}) as session,
        session.get(f"{url}/metrics") as response,
    ):
        return await response.text()


def _sample(text: str, name: str, worker: int) -> float:
    prefix = f'{name}{{worker="{worker}"}} '
    line = next(line for line in text.splitlines() if line.startswith(prefix))
    return float(line[len(prefix) :])


@pytest.mark.slow
async def test_a_killed_worker_ends_only_its_room_and_comes_back(make_server: MakeServer) -> None:
    async with sfu_process("--workers", "2") as node, MediaControl(node.url, node.secret) as sfu:
        server = await make_server(media_url=node.url, media_secret=node.secret)
        events: list[dict[str, Any]] = []
        names = ("alice", "bob", "carol", "dave")
        phones = {n: Softphone(await server.signup(n), emit=_recorder(events, n)) for n in names}
        second: asyncio.Future[list[Any]] | None = None
        try:
            await phones["bob"].line.open()
            await phones["dave"].line.open()
            first = asyncio.gather(phones["alice"].group(["bob"], None), phones["bob"].answer(None))
            second = asyncio.gather(
                phones["carol"].group(["dave"], None), phones["dave"].answer(None)
            )

            def speakers() -> set[str]:
                return {e["who"] for e in events if e["event"] == "active_speaker"}

            await until(lambda: speakers() == set(names), 60, "media flows in both calls")

            def heard() -> bool:  # the SFU hearing everyone is not everyone hearing the other
                return all(
                    p.session is not None and p.session.participants_received(False) == 1
                    for p in phones.values()
                )

            await until(heard, 60, "each hears the other in both calls")
            joined = {e["who"]: e["call_id"] for e in events if e["event"] == "joined"}
            rooms = [joined["alice"], joined["carol"]]
            placed = [(await sfu.room_stats(room))["worker"] for room in rooms]
            assert sorted(placed) == [0, 1]  # one room on each worker

            async def per_worker_figures() -> bool:
                text = await _metrics(node.url, node.secret)
                return all(
                    _sample(text, "callbook_sfu_worker_rooms", i) == 1
                    and _sample(text, "callbook_sfu_worker_participants", i) == 2
                    and _sample(text, "callbook_sfu_worker_forwarded_packets_total", i) > 0
                    and _sample(text, "callbook_sfu_worker_forwarded_packets_per_second", i) > 0
                    and _sample(text, "callbook_sfu_worker_cpu_ratio", i) > 0
                    for i in (0, 1)
                )

            await until_stored(per_worker_figures, 20, "/metrics shows both workers at work")

            victim = placed[0]
            victim_pid = (await sfu.stats())["workers"][victim]["pid"]
            os.kill(victim_pid, signal.SIGKILL)
            ended = await asyncio.wait_for(first, 30)
            assert [r.reason for r in ended] == ["media_failed", "media_failed"]
            assert all(r.participants_received == 1 for r in ended)  # it had flowed before

            # The other worker's room goes on.
            assert not second.done()
            before = (await sfu.room_stats(rooms[1]))["forwarded_packets"]

            async def still_forwarding() -> bool:
                stats = await sfu.room_stats(rooms[1])
                assert not any(p["media_failed"] for p in stats["participants"]), stats
                return bool(stats["forwarded_packets"] > before + 200)

            await until_stored(still_forwarding, 20, "the other room's media flows on")

            async def restarted() -> bool:
                load = (await sfu.stats())["workers"][victim]
                return bool(load["up"] and load["restarts"] == 1 and load["pid"] != victim_pid)

            await until_stored(restarted, 30, "the killed worker restarted")

            # A new call: the restarted worker is the least loaded, so it takes the room.
            await phones["alice"].close()
            phones["alice"] = Softphone(phones["alice"].client)
            again = await asyncio.wait_for(
                asyncio.gather(phones["alice"].group(["bob"], 4.0), phones["bob"].answer(4.0)), 60
            )
            for summary in again:
                assert summary.outcome == "connected" and summary.participants_received == 1
            assert (await sfu.stats())["workers"][victim]["forwarded"] > 0
            assert not second.done()
        finally:
            for phone in phones.values():
                await phone.close()
            if second is not None:
                second.cancel()
                await asyncio.gather(second, return_exceptions=True)


@pytest.mark.slow
async def test_callbook_media_workers_log_the_nodes_redacted_json_lines() -> None:
    port = free_port()
    node = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling.cli", "media", "--port", str(port), "--workers", "1",
        env={**os.environ, SECRET_ENV: "s3cret"}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with MediaControl(f"http://127.0.0.1:{port}", "s3cret") as control:

            async def up() -> bool:
                try:
                    return await control.health()
                except OSError:
                    return False

            await until_stored(up, 60, "the node and its worker answer")
    finally:
        node.terminate()
        _, err = await asyncio.wait_for(node.communicate(), 30)
    entries = [json.loads(line) for line in err.decode().splitlines()]
    assert any(e["logger"] == "callbook.media.worker" for e in entries), entries
    assert "127.0.0.1" not in err.decode()
