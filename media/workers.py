"""A media node's worker processes: each runs whole rooms; the node places, forwards, watches
and restarts them (docs/scaling.md, "Worker processes").

The node process keeps the control API and the registry. A worker (``media/worker.py``) is the
in-process node, ``create_app`` with ``workers = 0``, listening on a Unix socket in a private
directory. The node sends each request for a room to that room's worker as the same HTTP request
(``MediaControl`` over the socket), and the worker's problem+json answers come back with their
codes. Control requests come per join and subscription, never per packet, so the local hop costs
nothing that matters, and no second protocol or error mapping is needed.

A worker that exits by itself ends only its rooms: they become *lost*, and their stats say every
participant's ``media_failed``, exactly as a dead leg is reported, so signaling (which polls room
stats every second) ends those calls; the node restarts the worker and stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgspec

from media import errors
from media.bundle import Offer
from media.config import MediaConfig
from media.control import MediaControl, MediaControlError
from media.forwarding import Source
from media.watchdog import Heartbeat, answered, hung, missed, started

log = logging.getLogger("callbook.media.workers")

#: The worker's settings, as JSON in its environment (the secret never goes into argv).
WORKER_ENV = "CALLBOOK_MEDIA_WORKER"
READY_TIMEOUT_S = 60.0  # generous: a loaded machine imports aiortc slowly
STOP_GRACE_S = 5.0
POLL_S = 1.0
STATS_TIMEOUT_S = 2.0
#: Before a restart, by deaths in a row of a worker that died young: no crash loop at full speed.
RESTART_DELAYS_S = (0.0, 0.5, 2.0, 5.0, 10.0)
#: A worker that ran this long before it died is restarted at once.
STABLE_AFTER_S = 30.0
#: How long a lost room is remembered: signaling polls each room's stats every second and ends
#: its call at the first answer; a room nobody deletes (its signaling node gone too) goes then.
LOST_TTL_S = 120.0

#: Node-wide counters: the sum over the workers, plus what workers that died had counted.
COUNTERS = (
    "received_packets",
    "forwarded_packets",
    "forwarded_bytes",
    "retransmitted_packets",
    "keyframe_requests",
    "keyframe_requests_received",
    "keyframe_requests_coalesced",
    "held_for_keyframe",
    "padding_only",
    "legs_failed",
    "layer_switches",
    "probes",
    "padding_probes",
    "probe_padding_packets",
    "probe_padding_bytes",
)
GAUGES = ("subscriptions", "uplinks", "downlinks", "bundles", "peer_connections", "video_paused")

T = TypeVar("T")

#: The command that runs one worker. ``callbook media`` (signaling/cli.py) sets its own, so that
#: workers log through the same redacting JSON handler as the node.
launcher: tuple[str, ...] = (sys.executable, "-m", "media.worker")


class WorkerSpec(msgspec.Struct, frozen=True):
    config: MediaConfig
    index: int
    socket: str
    #: The node's pid: a worker whose parent is gone (before it could ask for PDEATHSIG) exits.
    parent: int


class WorkerStartError(RuntimeError):
    pass


@dataclass
class LostRoom:
    """A room whose worker died: kept until signaling deletes it, so its stats can say so."""

    max_participants: int
    participants: set[str]
    worker: int
    at: float = field(default_factory=time.monotonic)


@dataclass
class Worker:
    index: int
    socket: str
    control: MediaControl | None = None
    process: asyncio.subprocess.Process | None = None
    up: bool = False
    started_at: float = 0.0
    restarts: int = 0
    #: room -> its participants, kept from the requests the node forwarded.
    rooms: dict[str, set[str]] = field(default_factory=dict)
    #: The worker's latest ``/v1/stats``.
    stats: dict[str, Any] = field(default_factory=dict)
    cpu: float = 0.0
    packets_per_s: float = 0.0
    sampled: tuple[float, float, int] | None = None  # (time, CPU seconds, forwarded)
    #: Its answers to the stats poll: a worker alive but not answering is killed (watchdog.py).
    heartbeat: Heartbeat = field(default_factory=lambda: started(0.0))
    hangs: int = 0

    @property
    def participants(self) -> int:
        return sum(len(names) for names in self.rooms.values())

    def load(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "up": self.up,
            "pid": self.process.pid if self.process is not None and self.up else None,
            "rooms": len(self.rooms),
            "participants": self.participants,
            "packets_per_s": round(self.packets_per_s, 1),
            "cpu": round(self.cpu, 3),
            "forwarded": int(self.stats.get("forwarded_packets", 0)),
            "restarts": self.restarts,
            "hangs": self.hangs,
        }


def choose(workers: list[Worker]) -> Worker | None:
    """The least-loaded running worker: fewest participants, then rooms, then the lowest index
    (the same order signaling uses between nodes, signaling/calls/placement.py)."""
    running = [w for w in workers if w.up]
    return min(running, key=lambda w: (w.participants, len(w.rooms), w.index), default=None)


def lost_room_stats(room: str, lost: LostRoom) -> dict[str, Any]:
    """Room stats as a worker would give them, with every participant's media failed."""
    return {
        "room": room,
        "max_participants": lost.max_participants,
        "participants": [
            {
                "participant": name,
                "publishing": {"audio": False, "video": False},
                "ice_state": "failed",
                "packets_in": 0,
                "bytes_in": 0,
                "media_failed": True,
            }
            for name in sorted(lost.participants)
        ],
        "subscriptions": 0,
        "active_speaker": None,
        "worker": lost.worker,
        #: Signaling ends the whole call (every member ``media_failed``), as for a dead node.
        "lost": True,
        **{name: 0 for name in COUNTERS},
        "legs_failed": len(lost.participants),
        "dropped": {},
    }


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WorkerPool:
    """``media.backend.Rooms`` over worker processes."""

    def __init__(self, config: MediaConfig, changed: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self.draining = False
        self._changed = changed  # the registry entry should be written now
        self._dir = tempfile.mkdtemp(prefix="callbook-media-")  # 0700: only we reach the sockets
        self.workers = [
            Worker(i, os.path.join(self._dir, f"worker-{i}.sock")) for i in range(config.workers)
        ]
        self._of: dict[str, Worker] = {}  # room -> its worker
        self._limits: dict[str, int] = {}
        self.lost: dict[str, LostRoom] = {}
        self._retired: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._retired_dropped: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # --- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.gather(*(self._spawn(w) for w in self.workers))
        except BaseException:
            await self.close()
            raise
        self._tasks = [asyncio.create_task(self._supervise(w)) for w in self.workers]
        self._tasks.append(asyncio.create_task(self._poll()))
        log.info("%d worker processes running", len(self.workers))

    async def _spawn(self, worker: Worker) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(worker.socket)
        # Worker i owns UDP port base + i (media/README.md); with base 0 each picks a free one.
        port = self.config.udp_port
        udp_port = port + worker.index if port else port
        own = replace(self.config, workers=0, redis_url=None, udp_port=udp_port, listen_fd=None)
        spec = WorkerSpec(own, worker.index, worker.socket, os.getpid())
        worker.process = await asyncio.create_subprocess_exec(
            *launcher,
            env={**os.environ, WORKER_ENV: msgspec.json.encode(spec).decode()},
            stdin=asyncio.subprocess.DEVNULL,
            # Its own session: a signal to the node's process group (a terminal's ^C, a group
            # kill) reaches the node, which stops its workers itself, after its drain.
            start_new_session=True,
        )  # fmt: skip
        if worker.control is not None:
            await worker.control.close()
        worker.control = MediaControl(
            f"http://worker-{worker.index}", self.config.secret, unix_socket=worker.socket
        )
        worker.started_at = time.monotonic()
        worker.stats, worker.sampled, worker.cpu, worker.packets_per_s = {}, None, 0.0, 0.0
        await self._ready(worker)
        worker.heartbeat = started(time.monotonic())
        worker.up = True

    async def _ready(self, worker: Worker) -> None:
        assert worker.process is not None and worker.control is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if worker.process.returncode is not None:
                raise WorkerStartError(f"worker {worker.index} exited with "
                                       f"{worker.process.returncode} while starting")  # fmt: skip
            with contextlib.suppress(aiohttp.ClientError, OSError):
                if await worker.control.health():
                    return
            await asyncio.sleep(0.05)
        raise WorkerStartError(f"worker {worker.index} did not answer within {READY_TIMEOUT_S} s")

    async def _supervise(self, worker: Worker) -> None:
        """Wait for the worker to exit; end its rooms and start it again."""
        streak = 0  # deaths in a row, each soon after its start: wait longer before the next
        while not self._closing:
            assert worker.process is not None
            code = await worker.process.wait()
            if self._closing:
                return
            young = time.monotonic() - worker.started_at < STABLE_AFTER_S
            streak = streak + 1 if young else 0
            self._lose(worker, code)
            while not self._closing:
                await asyncio.sleep(RESTART_DELAYS_S[min(streak, len(RESTART_DELAYS_S) - 1)])
                try:
                    await self._spawn(worker)
                    break
                except (WorkerStartError, OSError) as exc:
                    log.warning("worker %d did not restart: %s", worker.index, exc)
                    await self._kill(worker)
                    streak += 1
            worker.restarts += 1
            log.info("worker %d restarted", worker.index)
            self._changed()

    def _lose(self, worker: Worker, code: int) -> None:
        """The worker died: its rooms are lost (their participants' media failed)."""
        worker.up = False
        for name in COUNTERS:
            self._retired[name] += int(worker.stats.get(name, 0))
        for reason, count in dict(worker.stats.get("dropped", {})).items():
            self._retired_dropped[reason] = self._retired_dropped.get(reason, 0) + int(count)
        for room, names in worker.rooms.items():
            self._of.pop(room, None)
            self.lost[room] = LostRoom(self._limits.pop(room, 0), set(names), worker.index)
            self._retired["legs_failed"] += len(names)
        log.warning(
            "worker %d exited (%s) with %d rooms: they end, the worker restarts",
            worker.index, code, len(worker.rooms),
        )  # fmt: skip
        worker.rooms = {}
        worker.stats = {}
        self._changed()

    def _kill_hung(self, worker: Worker) -> None:
        """Alive but not answering: kill it; its supervisor then ends its rooms and restarts it,
        as after a crash."""
        worker.hangs += 1
        log.warning(
            "worker %d answered nothing for %.0f s: killing it (its %d rooms end)",
            worker.index, self.config.worker_hang_s, len(worker.rooms),
        )  # fmt: skip
        worker.up = False  # no new rooms or requests while it goes
        if worker.process is not None and worker.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.terminate()
        await asyncio.gather(*(self._stopped(w) for w in self.workers))
        for worker in self.workers:
            if worker.control is not None:
                await worker.control.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def _stopped(self, worker: Worker) -> None:
        if worker.process is None:
            return
        try:
            async with asyncio.timeout(STOP_GRACE_S):
                await worker.process.wait()
        except TimeoutError:
            await self._kill(worker)

    async def _kill(self, worker: Worker) -> None:
        if worker.process is not None and worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()

    # --- rooms ------------------------------------------------------------------------------

    async def open_room(self, room: str, max_participants: int | None = None) -> bool:
        limit = min(max_participants or self.config.max_participants, self.config.max_participants)
        placed = self._of.get(room)
        if placed is not None:
            await self._forward(placed, lambda c: c.create_room(room, limit))
            return False
        if room in self.lost:
            return False  # it exists, with its media gone: joining it answers room_lost
        if self.draining:
            raise errors.Draining("this media node is draining; place the room on another")
        if len(self._of) >= self.config.max_rooms:
            raise errors.TooManyRooms(f"this node holds {self.config.max_rooms} rooms")
        worker = choose(self.workers)
        if worker is None:
            raise errors.WorkerUnavailable("every worker process is restarting")
        # Counted before the request: rooms opened meanwhile see this one.
        self._of[room], self._limits[room], worker.rooms[room] = worker, limit, set()
        try:
            await self._forward(worker, lambda c: c.create_room(room, limit))
        except errors.MediaError:
            if self._of.get(room) is worker:
                self._forget(room)
            raise
        return True

    async def delete_room(self, room: str) -> None:
        if self.lost.pop(room, None) is not None:
            return
        worker = self._worker(room)
        try:
            await self._forward(worker, lambda c: c.delete_room(room))
        finally:
            if self._of.get(room) is worker:
                self._forget(room)

    async def room_stats(self, room: str) -> dict[str, Any]:
        lost = self.lost.get(room)
        if lost is not None:
            return lost_room_stats(room, lost)
        worker = self._worker(room)
        stats = await self._forward(worker, lambda c: c.room_stats(room))
        return {**stats, "worker": worker.index}

    async def join(self, room: str, participant: str, offer_sdp: str, bundle: bool = False) -> str:
        worker = self._worker(room)
        answer = await self._forward(worker, lambda c: c.join(room, participant, offer_sdp, bundle))
        names = worker.rooms.get(room)
        if names is not None:
            names.add(participant)
        return answer

    async def leave(self, room: str, participant: str) -> None:
        lost = self.lost.get(room)
        if lost is not None:
            lost.participants.discard(participant)
            return
        worker = self._worker(room)
        try:
            await self._forward(worker, lambda c: c.leave(room, participant))
        finally:
            worker.rooms.get(room, set()).discard(participant)

    async def publish_screen(self, room: str, participant: str, offer_sdp: str) -> str:
        return await self._forward(
            self._worker(room), lambda c: c.publish_screen(room, participant, offer_sdp)
        )

    async def unpublish_screen(self, room: str, participant: str) -> None:
        await self._forward(self._worker(room), lambda c: c.unpublish_screen(room, participant))

    async def subscribe(
        self, room: str, subscriber: str, publisher: str, source: Source = Source.CAMERA
    ) -> tuple[str, str | None]:
        return await self._forward(
            self._worker(room), lambda c: c.subscribe(room, subscriber, publisher, source.value)
        )

    async def offer(self, room: str, participant: str) -> Offer | None:
        return await self._forward(self._worker(room), lambda c: c.offer(room, participant))

    async def accept_offer_answer(
        self, room: str, participant: str, revision: int, answer_sdp: str
    ) -> Offer | None:
        return await self._forward(
            self._worker(room), lambda c: c.answer_offer(room, participant, revision, answer_sdp)
        )

    async def accept_answer(self, room: str, subscriber: str, sub_id: str, answer_sdp: str) -> None:
        await self._forward(
            self._worker(room), lambda c: c.answer(room, subscriber, sub_id, answer_sdp)
        )

    async def set_view(
        self,
        room: str,
        subscriber: str,
        publisher: str,
        source: Source,
        max_height: int | None,
    ) -> None:
        await self._forward(
            self._worker(room),
            lambda c: c.set_view(room, subscriber, publisher, source.value, max_height),
        )

    def open_rooms(self) -> int:
        return len(self._of)

    def _worker(self, room: str) -> Worker:
        worker = self._of.get(room)
        if worker is not None:
            return worker
        if room in self.lost:
            raise errors.RoomLost(f"the worker process of room {room!r} ended")
        raise errors.RoomNotFound(f"no room {room!r}")

    def _forget(self, room: str) -> None:
        worker = self._of.pop(room)
        worker.rooms.pop(room, None)
        self._limits.pop(room, None)

    async def _forward(self, worker: Worker, request: Callable[[MediaControl], Awaitable[T]]) -> T:
        if not worker.up or worker.control is None:
            raise errors.RoomLost(f"worker {worker.index} is restarting")
        try:
            return await request(worker.control)
        except MediaControlError as exc:
            raise errors.from_wire(exc.status, exc.code, exc.detail) from exc
        except TimeoutError as exc:  # slow, not gone: its rooms are not lost for this
            raise errors.WorkerUnavailable(f"worker {worker.index} did not answer in time") from exc
        except (aiohttp.ClientError, OSError) as exc:
            # It died under this request; its supervisor ends its rooms.
            raise errors.RoomLost(f"worker {worker.index} ended during the request") from exc

    # --- figures ----------------------------------------------------------------------------

    async def refresh(self) -> None:
        await asyncio.gather(*(self._fetch(w) for w in self.workers if w.up))

    async def _fetch(self, worker: Worker) -> None:
        assert worker.control is not None
        try:
            async with asyncio.timeout(STATS_TIMEOUT_S):
                stats = await worker.control.stats()
        except MediaControlError:  # an answer, if not the one wanted: its loop runs
            worker.heartbeat = answered(worker.heartbeat, time.monotonic())
        except (aiohttp.ClientError, OSError, TimeoutError):
            worker.heartbeat = missed(worker.heartbeat)
        else:
            worker.heartbeat = answered(worker.heartbeat, time.monotonic())
            if worker.up:
                worker.stats = stats

    async def _poll(self) -> None:
        """Every second: each worker's counters, packets/s and CPU (the registry's load)."""
        while True:
            await asyncio.sleep(POLL_S)
            await self.refresh()
            now = time.monotonic()
            for worker in self.workers:
                _sample(worker, now)
                if worker.up and hung(worker.heartbeat, now, self.config.worker_hang_s):
                    self._kill_hung(worker)
            for room in [r for r, lost in self.lost.items() if now - lost.at > LOST_TTL_S]:
                del self.lost[room]

    def node_stats(self) -> dict[str, Any]:
        counters = dict(self._retired)
        dropped = dict(self._retired_dropped)
        gauges = dict.fromkeys(GAUGES, 0)
        for worker in self.workers:
            for name in COUNTERS:
                counters[name] += int(worker.stats.get(name, 0))
            for name in GAUGES:
                gauges[name] += int(worker.stats.get(name, 0))
            for reason, count in dict(worker.stats.get("dropped", {})).items():
                dropped[reason] = dropped.get(reason, 0) + int(count)
        estimates = [e for w in self.workers for e in w.stats.get("subscriber_estimates_bps", ())]
        return {
            "draining": self.draining,
            "rooms": len(self._of),
            "participants": sum(w.participants for w in self.workers),
            **gauges,
            "subscriber_estimates_bps": estimates,
            "dropped": dropped,
            **counters,
            "workers": [w.load() for w in self.workers],
        }


def _sample(worker: Worker, now: float) -> None:
    """CPU (in cores) and forwarded packets/s since the last sample."""
    if not worker.up or worker.process is None:
        worker.sampled, worker.cpu, worker.packets_per_s = None, 0.0, 0.0
        return
    cpu = cpu_seconds(worker.process.pid)
    forwarded = int(worker.stats.get("forwarded_packets", 0))
    if cpu is None:
        return
    if worker.sampled is not None:
        then, cpu_then, forwarded_then = worker.sampled
        elapsed = now - then
        if elapsed > 0:
            worker.cpu = max(0.0, cpu - cpu_then) / elapsed
            worker.packets_per_s = max(0, forwarded - forwarded_then) / elapsed
    worker.sampled = (now, cpu, forwarded)
