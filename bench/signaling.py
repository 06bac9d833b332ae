"""Call-signaling benchmark: call set-ups per second, ring latency and memory per idle device.

It starts ``callbook serve`` on a free loopback port with a fresh embedded Valkey, creates the
accounts and devices it needs through the REST API, then:

1. idle memory: the server's RSS before and after opening ``--idle`` authenticated call
   WebSockets (one device each), divided by their number;
2. set-ups: ``--pairs`` bot pairs, in ``--procs`` load-generator processes separate from the
   server, each looping invite (by handle) -> ringing / incoming -> accept -> accepted (both) ->
   hang-up -> ended (both), signaling only, no media, for ``--duration`` seconds. Ring latency is
   the time from the caller sending ``invite`` to the callee's socket delivering ``incoming``;
3. the same pairs paced at half the load (half the peak, or 250/s once the peak reaches the aim of
   500/s) for the ring latency at half load;
4. with py-spy available, the server sampled during one more unpaced run; the heaviest call path
   and the functions with the most samples are summarised.

Run from the repository root::

    .venv/bin/python -m bench.signaling            # table
    .venv/bin/python -m bench.signaling --json     # one JSON line

Limits the benchmark meets, and how it stays under them without changing the server:

* sign-up and sign-in challenges share a node-wide anonymous throttle (50/s, burst 100), so the
  bench paces them at 47/s: 5,000 signed-in devices take about two minutes to set up;
* an account may start 1 call/s (burst 20; ``INVITES_PER_S`` in signaling/calls/service.py), so
  every pair rotates over ``--callers-per-pair`` caller accounts, one connected device each;
* a connection may send 20 messages/s (burst 60; signaling/ws/endpoint.py), so a callee, who
  sends one ``accept`` per call, caps a pair at 20 calls/s: every pair rotates over
  ``--callees-per-pair`` callee accounts too (4: 80 calls/s a pair, 4,000/s for 50 pairs);
* an invite rings every online device of the callee, so each callee account is one pair's.

Everything stays on 127.0.0.1 and the unix socket; the server is stopped at the end, whatever
happens. The load generator shares the machine's cores with the server and Valkey.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file (``python bench/signaling.py``) this folder would come first on sys.path and
# bench/signaling.py would shadow the ``signaling`` package; put the repository root in front.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import aiohttp
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.directory import (
    UNTHROTTLED_ADMISSION,
    cpu_model,
    cpu_seconds,
    free_port,
    log,
    machine_busy_seconds,
    server_command,
    supervised_server,
    wait_ready,
)
from signaling.calls.sfu_calls import INVITE_BURST, INVITES_PER_S
from signaling.limits import Throttle
from signaling.protocol import messages as m
from signaling.protocol.bodies import (
    AccountUpdate,
    Challenge,
    DeviceEnrollment,
    TokenRequest,
    TokenResponse,
)
from signaling.protocol.closes import SUBPROTOCOL
from signaling.protocol.records import Device
from signaling.protocol.signing import signin_message
from signaling.sdk.client import Client, ClientError, _b64, new_device_key
from signaling.ws.endpoint import RATE_PER_S

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 30.0
SETUP_TIMEOUT_S = 600.0
#: What the server's anonymous throttle allows is 50/s with a burst of 100; stay just under.
ANONYMOUS_PACE_PER_S = 47.0
ANONYMOUS_PACE_BURST = 90
MAX_DEVICES = 10  # DirectoryConfig.max_devices
TOKEN_TTL_S = 900  # the longest CALLBOOK_TOKEN_TTL_S allows: set-up takes minutes
LOOKUP_BURST = 100_000
LOOKUPS_PER_MINUTE = 1_000_000
EXPECT_TIMEOUT_S = 10.0
MAX_EXAMPLES = 5
#: The issue's aims on a 2-core machine.
AIM_SETUPS_PER_S = 500.0
AIM_RING_P99_MS = 20.0
AIM_IDLE_BYTES = 20_000
BUSY_MACHINE_PERCENT = 10.0
#: Below this much CPU (in cores) the whole machine counts as quiet before a timed run.
QUIET_CORE_FRACTION = 0.10

_decode = msgspec.json.Decoder(m.ServerMessages).decode
_encode = msgspec.json.Encoder().encode

M = TypeVar("M", bound=m.ServerMessage)


# --- the bots ----------------------------------------------------------------------------------


class CycleFailed(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Bot:
    """One device's call WebSocket: each received message is stamped on arrival.

    Lighter than ``signaling.sdk.line.Line`` (one shared HTTP session for thousands of them)
    and it keeps the arrival time, which the ring latency needs; the messages are the same.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[tuple[float, m.ServerMessage | None]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, url: str, token: str) -> Bot:
        ws = await session.ws_connect(url, protocols=(SUBPROTOCOL, f"bearer.{token}"))
        bot = cls(ws)
        try:
            await bot.expect(m.Welcome)
        except BaseException:
            await bot.close()
            raise
        return bot

    async def _read(self) -> None:
        clock = time.perf_counter
        put = self.inbox.put_nowait
        async for frame in self.ws:
            if frame.type is aiohttp.WSMsgType.TEXT:
                put((clock(), _decode(frame.data)))
        put((clock(), None))

    async def send(self, message: m.ClientMessage) -> None:
        await self.ws.send_str(_encode(message).decode())

    async def expect(self, kind: type[M], within: float = EXPECT_TIMEOUT_S) -> tuple[float, M]:
        try:
            stamp, message = await asyncio.wait_for(self.inbox.get(), within)
        except TimeoutError:
            raise CycleFailed(f"timeout_{kind.__name__.lower()}") from None
        if message is None:
            self.inbox.put_nowait((stamp, None))
            raise CycleFailed(f"closed_{self.ws.close_code}")
        if isinstance(message, m.Error):
            raise CycleFailed(message.code)
        if not isinstance(message, kind):
            raise CycleFailed(f"unexpected_{type(message).__name__.lower()}")
        return stamp, message

    def drain(self) -> int:
        stray = 0
        while not self.inbox.empty():
            _, message = self.inbox.get_nowait()
            if message is None:
                self.inbox.put_nowait((0.0, None))
                raise CycleFailed(f"closed_{self.ws.close_code}")
            stray += 1
        return stray

    def left(self) -> list[str]:
        """Empty the inbox; what was in it, briefly."""
        seen = []
        while not self.inbox.empty():
            _, message = self.inbox.get_nowait()
            if message is None:
                self.inbox.put_nowait((0.0, None))
                seen.append(f"close {self.ws.close_code}")
                break
            seen.append(msgspec.json.encode(message).decode()[:120])
        return seen

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def client_session() -> aiohttp.ClientSession:
    # No pool limit: every bot keeps its connection for the whole run.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


@dataclass
class RunStats:
    """What some pairs did during one timed run."""

    calls: int = 0
    elapsed_s: float = 0.0
    ring_s: list[float] = field(default_factory=list)
    cycle_s: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    stray: int = 0
    late: int = 0
    #: A few failed calls, with what the two devices had received meanwhile.
    examples: list[str] = field(default_factory=list)

    def merge(self, other: RunStats) -> None:
        self.calls += other.calls
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.ring_s += other.ring_s
        self.cycle_s += other.cycle_s
        self.failures.update(other.failures)
        self.stray += other.stray
        self.late += other.late
        self.examples = (self.examples + other.examples)[:MAX_EXAMPLES]


class Pair:
    def __init__(self, index: int, callees: list[tuple[str, Bot]], callers: list[Bot]) -> None:
        self.index = index
        self.callees = callees
        self.callers = callers
        self.turn = 0
        self.handle, self.callee = callees[0]

    async def call_once(self, stats: RunStats) -> None:
        caller = self.callers[self.turn % len(self.callers)]
        self.handle, self.callee = self.callees[self.turn % len(self.callees)]
        self.turn += 1
        stats.stray += caller.drain() + self.callee.drain()
        call_id: str | None = None
        try:
            t0 = time.perf_counter()
            await caller.send(m.Invite(handle=self.handle))
            _, ringing = await caller.expect(m.Ringing)
            call_id = ringing.call_id
            rang_at, incoming = await self.callee.expect(m.Incoming)
            if incoming.call_id != call_id:
                raise CycleFailed("wrong_call")
            await self.callee.send(m.Accept(call_id=call_id))
            # The callee first: a refused accept answers the callee, not the caller.
            await self.callee.expect(m.Accepted)
            await caller.expect(m.Accepted)
            await caller.send(m.Hangup(call_id=call_id))
            await caller.expect(m.Ended)
            await self.callee.expect(m.Ended)
        except CycleFailed as failed:
            stats.failures[failed.code] += 1
            left = await self._recover(caller, call_id)
            if len(stats.examples) < MAX_EXAMPLES:
                stats.examples.append(f"pair {self.index} call {call_id}: {failed.code}; {left}")
            return
        stats.calls += 1
        stats.ring_s.append(rang_at - t0)
        stats.cycle_s.append(time.perf_counter() - t0)

    async def _recover(self, caller: Bot, call_id: str | None) -> str:
        """End whatever is left of a failed call; returns the messages it leaves behind."""
        if call_id is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await caller.send(m.Hangup(call_id=call_id))
        await asyncio.sleep(0.5)
        return f"caller got {caller.left()}, callee got {self.callee.left()}"

    async def run(self, deadline: float, period_s: float | None, first_at: float) -> RunStats:
        stats = RunStats()
        next_at = first_at
        while (now := time.perf_counter()) < deadline:
            if period_s is not None:
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                    if time.perf_counter() >= deadline:
                        break
                elif now - next_at > period_s:
                    stats.late += 1
                next_at += period_s
            await self.call_once(stats)
        return stats


PairSpec = tuple[int, list[tuple[str, str]], list[str]]  # index, callees (handle, token), callers


async def _worker_main(conn: Connection, url: str, specs: list[PairSpec]) -> None:
    loop = asyncio.get_running_loop()
    ws_url = url.replace("http", "ws", 1) + "/v1/ws"
    async with client_session() as session:
        pairs: list[Pair] = []
        bots: list[Bot] = []
        try:
            for index, callee_specs, caller_tokens in specs:
                callees = []
                for handle, token in callee_specs:
                    callees.append((handle, await Bot.connect(session, ws_url, token)))
                    bots.append(callees[-1][1])
                callers = []
                for token in caller_tokens:
                    callers.append(await Bot.connect(session, ws_url, token))
                    bots.append(callers[-1])
                pairs.append(Pair(index, callees, callers))
        except (CycleFailed, aiohttp.ClientError, OSError) as exc:
            conn.send(("error", f"connecting the bots failed: {exc!r}"))
            return
        conn.send(("ready", len(bots)))
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command[0] != "run":
                break
            _, duration_s, total_pairs, rate_per_s = command
            start = time.perf_counter()
            deadline = start + duration_s
            period = total_pairs / rate_per_s if rate_per_s else None
            slot = 1 / rate_per_s if rate_per_s else 0.0
            results = await asyncio.gather(
                *(p.run(deadline, period, start + p.index * slot) for p in pairs)
            )
            stats = RunStats()
            for result in results:
                stats.merge(result)
            stats.elapsed_s = time.perf_counter() - start
            conn.send(("done", msgspec.to_builtins(_as_dict(stats))))
        for bot in bots:
            with contextlib.suppress(Exception):
                await bot.close()


def _as_dict(stats: RunStats) -> dict[str, Any]:
    return {
        "calls": stats.calls,
        "elapsed_s": stats.elapsed_s,
        "ring_s": stats.ring_s,
        "cycle_s": stats.cycle_s,
        "failures": dict(stats.failures),
        "stray": stats.stray,
        "late": stats.late,
        "examples": stats.examples,
    }


def _from_dict(raw: dict[str, Any]) -> RunStats:
    return RunStats(
        calls=raw["calls"],
        elapsed_s=raw["elapsed_s"],
        ring_s=raw["ring_s"],
        cycle_s=raw["cycle_s"],
        failures=Counter(raw["failures"]),
        stray=raw["stray"],
        late=raw["late"],
        examples=raw["examples"],
    )


def _new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def worker_entry(conn: Connection, url: str, specs: list[PairSpec], use_uvloop: bool) -> None:
    """A load-generator process: connects its pairs, then runs what the parent asks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        with asyncio.Runner(loop_factory=lambda: _new_loop(use_uvloop)) as runner:
            runner.run(_worker_main(conn, url, specs))
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", repr(exc)))
    finally:
        conn.close()


class LoadGenerators:
    """``procs`` worker processes sharing the pairs; the parent only coordinates."""

    def __init__(self, url: str, specs: list[PairSpec], procs: int, use_uvloop: bool) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.total_pairs = len(specs)
        self.workers: list[tuple[Any, Connection]] = []
        for n in range(procs):
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=worker_entry,
                args=(child, url, specs[n::procs], use_uvloop),
                name=f"bench-signaling-{n}",
                daemon=True,
            )
            process.start()
            child.close()
            self.workers.append((process, parent))

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, _ in self.workers]

    async def _receive(self, conn: Connection, timeout_s: float) -> Any:
        loop = asyncio.get_running_loop()

        def wait() -> Any:
            if not conn.poll(timeout_s):
                raise RuntimeError(f"a load generator did not answer within {timeout_s:.0f} s")
            return conn.recv()

        try:
            reply = await loop.run_in_executor(None, wait)
        except EOFError as exc:
            raise RuntimeError("a load generator exited") from exc
        if reply[0] == "error":
            raise RuntimeError(f"load generator: {reply[1]}")
        return reply

    async def ready(self) -> int:
        replies = [await self._receive(conn, 300) for _, conn in self.workers]
        return sum(reply[1] for reply in replies)

    async def run(self, duration_s: float, rate_per_s: float | None) -> RunStats:
        for _, conn in self.workers:
            conn.send(("run", duration_s, self.total_pairs, rate_per_s))
        stats = RunStats()
        for _, conn in self.workers:
            reply = await self._receive(conn, duration_s + 60)
            stats.merge(_from_dict(reply[1]))
        return stats

    def stop(self) -> None:
        for process, conn in self.workers:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()


# --- the server --------------------------------------------------------------------------------


#: ``callbook serve`` with uvloop made unimportable: the server falls back to asyncio's loop.
_WITHOUT_UVLOOP = (
    "import sys; sys.modules['uvloop'] = None; from signaling.cli import main; sys.exit(main())"
)


def serve_command(port: int, data_dir: Path, loop: str) -> list[str]:
    command = server_command(port, data_dir, None)
    if loop == "asyncio":
        command = [sys.executable, "-c", _WITHOUT_UVLOOP, *command[command.index("serve") :]]
    return command


@contextlib.contextmanager
def running_server(port: int, data_dir: Path, loop: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``callbook serve`` with the lookup limit lifted and long-lived tokens."""
    settings = {
        "CALLBOOK_LOOKUP_BURST": str(LOOKUP_BURST),
        "CALLBOOK_LOOKUPS_PER_MINUTE": str(LOOKUPS_PER_MINUTE),
        "CALLBOOK_TOKEN_TTL_S": str(TOKEN_TTL_S),
        **UNTHROTTLED_ADMISSION,
    }
    command = serve_command(port, data_dir, loop)
    with supervised_server(command, data_dir, settings, cwd=REPO) as process:
        yield process


def source_version() -> str:
    """The commit benchmarked, marked ``+changes`` when the server's code differs from it."""
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "signaling", "directory", "pyproject.toml"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" +changes" if changed else "")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def event_loop_of(pid: int) -> str:
    """uvloop when the process has its extension mapped, else asyncio's own loop."""
    with contextlib.suppress(OSError):
        if "uvloop" in Path(f"/proc/{pid}/maps").read_text():
            return "uvloop"
    return "asyncio"


def raise_open_files(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class CpuMeter:
    """CPU seconds of named processes between start() and stop(), and of everything else."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def _sample(self) -> dict[str, float]:
        sample = {}
        for name, pids in self.pids.items():
            sample[name] = sum(cpu_seconds(pid) or 0.0 for pid in pids)
        sample["machine"] = machine_busy_seconds() or 0.0
        return sample

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = self._sample()

    def stop(self) -> tuple[float, dict[str, float]]:
        wall = time.perf_counter() - self._t0
        end = self._sample()
        used = {name: end[name] - self._start[name] for name in self.pids}
        used["others"] = max(0.0, end["machine"] - self._start["machine"] - sum(used.values()))
        return wall, used


# --- set-up through the API --------------------------------------------------------------------


@dataclass
class Member:
    """A signed-in device of an account, ready to open the call WebSocket."""

    account_id: str
    handle: str
    device_id: str
    token: str


class Pacer:
    """Keeps the bench's anonymous requests just under the server's node-wide throttle."""

    def __init__(self) -> None:
        self._throttle = Throttle(ANONYMOUS_PACE_PER_S, ANONYMOUS_PACE_BURST)
        self.retries = 0

    async def call(self, request: Callable[[], Awaitable[Any]]) -> Any:
        while True:
            wait = self._throttle.try_take()
            if wait:
                await asyncio.sleep(wait)
                continue
            try:
                return await request()
            except ClientError as exc:
                # The per-source budgets refill fast under UNTHROTTLED_ADMISSION, but their
                # burst stays small: a burst of sign-ups meets it before the pace does.
                if exc.code not in ("overloaded", "rate_limited"):
                    raise
                self.retries += 1
                await asyncio.sleep(exc.retry_after or 1)


async def sign_in(
    client: Client, pacer: Pacer, account_id: str, device_id: str, key: Ed25519PrivateKey
) -> str:
    challenge: Challenge = await pacer.call(
        lambda: client.request("POST", "/v1/auth/challenge", Challenge, auth=False)
    )
    body = TokenRequest(
        account_id=account_id,
        device_id=device_id,
        nonce=challenge.nonce,
        signature=_b64(key.sign(signin_message(account_id, device_id, challenge.nonce))),
    )
    done: TokenResponse = await client.request(
        "POST", "/v1/auth/token", TokenResponse, body, auth=False
    )
    return done.access_token


async def make_account(url: str, pacer: Pacer, number: int, devices: int) -> list[Member]:
    """Sign up ``bs_<number>`` and enroll and sign in ``devices`` devices (the first included)."""
    async with Client(url) as client:
        _, profile = await pacer.call(lambda: client.signup(f"bs_{number:05d}", device_name="b0"))
        await pacer.call(client.sign_in)
        # The bench measures peer-to-peer set-ups: strangers' calls are relayed by default.
        await client.update(AccountUpdate(relay_calls="never"))
        token = await client.token()
        members = [Member(profile.account_id, profile.handle, profile.device_id, token)]
        for n in range(1, devices):
            key, public = new_device_key()
            enrolled: Device = await client.request(
                "POST", "/v1/devices", Device, DeviceEnrollment(name=f"b{n}", public_key=public)
            )
            token = await sign_in(client, pacer, profile.account_id, enrolled.id, key)
            members.append(Member(profile.account_id, profile.handle, enrolled.id, token))
        return members


async def make_accounts(
    url: str, devices_per_account: list[int], concurrency: int
) -> tuple[list[list[Member]], int, float]:
    pacer = Pacer()
    accounts: list[list[Member]] = [[] for _ in devices_per_account]
    pending = iter(enumerate(devices_per_account))
    done = 0
    start = time.perf_counter()

    async def worker() -> None:
        nonlocal done
        for number, devices in pending:
            accounts[number] = await make_account(url, pacer, number, devices)
            done += 1
            if done % 100 == 0:
                log(f"  {done}/{len(devices_per_account)} accounts ready")

    async with asyncio.timeout(SETUP_TIMEOUT_S):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accounts, pacer.retries, time.perf_counter() - start


# --- the phases --------------------------------------------------------------------------------


async def idle_memory(url: str, pid: int, members: list[Member]) -> dict[str, Any]:
    """Server RSS before and after ``len(members)`` idle signed-in call WebSockets."""
    ws_url = url.replace("http", "ws", 1) + "/v1/ws"
    await asyncio.sleep(1.0)
    before = rss_bytes(pid)
    bots: list[Bot] = []
    semaphore = asyncio.Semaphore(64)
    failures: Counter[str] = Counter()
    async with client_session() as session:

        async def open_one(member: Member) -> None:
            async with semaphore:
                try:
                    bots.append(await Bot.connect(session, ws_url, member.token))
                except CycleFailed as exc:
                    failures[exc.code] += 1
                except (aiohttp.ClientError, OSError) as exc:
                    failures[type(exc).__name__] += 1

        t0 = time.perf_counter()
        cpu0 = cpu_seconds(pid) or 0.0
        await asyncio.gather(*(open_one(member) for member in members))
        open_s = time.perf_counter() - t0
        open_cpu_s = (cpu_seconds(pid) or 0.0) - cpu0
        await asyncio.sleep(3.0)  # let the server settle
        samples = []
        for _ in range(3):
            samples.append(rss_bytes(pid))
            await asyncio.sleep(0.5)
        after = max(samples)
        alive = sum(1 for bot in bots if not bot.ws.closed)
        await asyncio.gather(*(bot.close() for bot in bots), return_exceptions=True)
    await asyncio.sleep(1.0)
    per_device = (after - before) / len(bots) if bots else 0.0
    return {
        "connections": len(bots),
        "still_open": alive,
        "failures": dict(failures),
        "open_s": round(open_s, 2),
        "opens_per_s": round(len(bots) / open_s, 1) if open_s else 0.0,
        "server_cpu_ms_per_open": round(1000 * open_cpu_s / len(bots), 3) if bots else 0.0,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_device": round(per_device),
    }


def percentile_ms(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def run_summary(
    name: str, stats: RunStats, wall_s: float, cpu: dict[str, float], target: float | None
) -> dict[str, Any]:
    calls = stats.calls or 1
    return {
        "name": name,
        "target_per_s": round(target, 1) if target else None,
        "calls": stats.calls,
        "failed": sum(stats.failures.values()),
        "failures": dict(stats.failures),
        "elapsed_s": round(stats.elapsed_s, 2),
        "setups_per_s": round(stats.calls / stats.elapsed_s, 1) if stats.elapsed_s else 0.0,
        "ring_p50_ms": percentile_ms(stats.ring_s, 0.50),
        "ring_p99_ms": percentile_ms(stats.ring_s, 0.99),
        "ring_max_ms": percentile_ms(stats.ring_s, 1.0),
        "cycle_p50_ms": percentile_ms(stats.cycle_s, 0.50),
        "cycle_p99_ms": percentile_ms(stats.cycle_s, 0.99),
        "server_cpu_ms_per_setup": round(1000 * cpu["server"] / calls, 3),
        "valkey_cpu_ms_per_setup": round(1000 * cpu["valkey"] / calls, 3),
        "cpu_percent": {k: round(100 * v / wall_s, 1) for k, v in cpu.items()},
        "stray_messages": stats.stray,
        "late_starts": stats.late,
        "failure_examples": stats.examples,
    }


async def wait_quiet(max_wait_s: float) -> bool:
    """Wait until the machine as a whole is nearly idle for a second (other work disturbs the
    figures): True once it is, False after ``max_wait_s``."""
    deadline = time.monotonic() + max_wait_s
    waited = False
    while True:
        before = machine_busy_seconds()
        await asyncio.sleep(1.0)
        after = machine_busy_seconds()
        if before is None or after is None or after - before < QUIET_CORE_FRACTION:
            if waited:
                log("  the machine is quiet again")
            return True
        if time.monotonic() >= deadline:
            log(f"  the machine is still busy after {max_wait_s:g} s; running anyway")
            return False
        if not waited:
            log(f"  other processes use {100 * (after - before):.0f} % of a core; waiting")
            waited = True


async def timed_run(
    load: LoadGenerators,
    meter: CpuMeter,
    name: str,
    duration_s: float,
    rate: float | None,
    quiet_s: float = 0.0,
) -> dict[str, Any]:
    if quiet_s:
        await wait_quiet(quiet_s)
    meter.start()
    stats = await load.run(duration_s, rate)
    wall, cpu = meter.stop()
    summary = run_summary(name, stats, wall, cpu, rate)
    log(
        f"  {name}: {summary['setups_per_s']} set-ups/s, ring p50 {summary['ring_p50_ms']} ms "
        f"p99 {summary['ring_p99_ms']} ms, {summary['failed']} failed"
    )
    return summary


# --- py-spy ------------------------------------------------------------------------------------


def find_py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_py_spy(binary: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    command = [binary, "record", "--pid", str(pid), "--duration", str(math.ceil(seconds))]
    # Blocking mode (the default) pauses the server for each sample: slower, but the stacks are
    # whole; --nonblocking left half of them cut short under this load.
    command += ["--rate", "100", "--format", "raw", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _function(frame: str) -> str:
    """``name (path/file.py:123)`` -> ``name (path/file.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def _package(function: str) -> str:
    """``name (aiohttp/_websocket/writer.py)`` -> ``aiohttp``."""
    where = function.rpartition(" (")[2].rstrip(")")
    return where.split("/", 1)[0] if "/" in where else where


def summarise_profile(raw: str, top: int = 12) -> dict[str, Any]:
    """The heaviest call path, the functions with most samples (self, and inclusive for this
    project's own), and self samples by package."""
    stacks: list[tuple[list[str], int]] = []
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            stacks.append(([_function(f) for f in stack.split(";")], int(number)))
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    ours = Counter(
        {
            name: count
            for name, count in inclusive.items()
            if _package(name) in ("signaling", "directory") and "cli.py" not in name
            and "server.py" not in name
        }
    )  # fmt: skip

    # The heaviest path: from the root, follow the child frame with the most samples.
    path: list[dict[str, Any]] = []
    selected = stacks
    depth = 0
    while True:
        children: Counter[str] = Counter()
        for frames, count in selected:
            if len(frames) > depth:
                children[frames[depth]] += count
        if not children:
            break
        frame, count = children.most_common(1)[0]
        path.append({"function": frame, "percent": round(100 * count / total, 1)})
        selected = [(f, c) for f, c in selected if len(f) > depth and f[depth] == frame]
        depth += 1

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "percent": round(100 * count / total, 1)}
            for name, count in counter.most_common(top)
        ]

    return {
        "samples": total,
        "heaviest_path": path,
        "top_self": table(own),
        "top_project_inclusive": table(ours),
        "self_by_package": table(packages),
    }


# --- the report --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(result: dict[str, Any]) -> str:
    mc = result["machine"]
    s = result["setup"]
    lines = [
        f"Callbook call signaling: bench/signaling.py at {result['source']}",
        f"machine  {mc['nproc']} cores ({mc['cpu']}), {mc['os']}, Python {mc['python']}, "
        f"aiohttp {mc['aiohttp']}; server loop {mc['server_loop']}, bots {mc['client_loop']} "
        f"in {result['procs']} process(es) sharing the cores",
        f"set-up   {s['accounts']} accounts, {s['devices']} signed-in devices in "
        f"{s['seconds']:.0f} s (anonymous throttle: paced at {ANONYMOUS_PACE_PER_S:g}/s, "
        f"{s['throttled_retries']} retries)",
        "",
    ]
    idle = result["idle"]
    if idle is not None:
        per = idle["bytes_per_device"]
        lines += [
            f"idle     {idle['connections']} signed-in WebSockets ({idle['still_open']} still open "
            f"at the end), opened at {idle['opens_per_s']:.0f}/s, "
            f"{idle['server_cpu_ms_per_open']:.2f} ms server CPU each",
            f"         server RSS {idle['rss_before_bytes'] / 2**20:.1f} MiB -> "
            f"{idle['rss_after_bytes'] / 2**20:.1f} MiB: {per / 1000:.1f} kB per idle device"
            f"   aim <= {AIM_IDLE_BYTES // 1000} kB: {verdict(per <= AIM_IDLE_BYTES)}",
            "",
        ]
    lines.append(
        f"{'run':<12}{'target/s':>9}{'calls':>8}{'failed':>7}{'set-ups/s':>10}{'ring p50':>9}"
        f"{'p99':>7}{'max':>7}{'cycle p50':>10}{'p99':>7}{'srv ms':>8}{'vk ms':>7}  cpu %"
    )
    for run in result["runs"]:
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in run["cpu_percent"].items())
        target = f"{run['target_per_s']:.0f}" if run["target_per_s"] else "-"
        lines.append(
            f"{run['name']:<12}{target:>9}{run['calls']:>8}{run['failed']:>7}"
            f"{run['setups_per_s']:>10.1f}{run['ring_p50_ms']:>9.1f}{run['ring_p99_ms']:>7.1f}"
            f"{run['ring_max_ms']:>7.1f}{run['cycle_p50_ms']:>10.1f}{run['cycle_p99_ms']:>7.1f}"
            f"{run['server_cpu_ms_per_setup']:>8.2f}{run['valkey_cpu_ms_per_setup']:>7.2f}  {cpu}"
        )
    lines.append(
        "(ring = invite sent -> callee receives incoming; cycle = invite -> both ended; "
        "srv/vk ms = CPU ms of the server/Valkey per set-up; cpu % of one core)"
    )
    peak, half = result["peak"], result["half"]
    lines += [
        "",
        f"set-ups/s (peak, {result['pairs']} pairs): {peak['setups_per_s']:.1f}"
        f"   aim >= {AIM_SETUPS_PER_S:.0f}: {verdict(peak['setups_per_s'] >= AIM_SETUPS_PER_S)}",
    ]
    if half is not None:
        lines.append(
            f"ring p99 at {half['setups_per_s']:.0f}/s (target {half['target_per_s']:.0f}/s): "
            f"{half['ring_p99_ms']:.1f} ms   aim < {AIM_RING_P99_MS:.0f} ms at 250/s: "
            f"{verdict(half['ring_p99_ms'] < AIM_RING_P99_MS and half['target_per_s'] >= 250)}"
        )
    profile = result.get("profile")
    if profile and profile.get("summary"):
        summary = profile["summary"]
        lines += ["", f"py-spy: {summary['samples']} samples of the server during an unpaced run"]
        lines.append("heaviest path:")
        for depth, step in enumerate(summary["heaviest_path"]):
            lines.append(f"  {'  ' * min(depth, 12)}{step['percent']:5.1f}%  {step['function']}")
        lines.append("most samples in the function itself:")
        for row in summary["top_self"]:
            lines.append(f"  {row['percent']:5.1f}%  {row['function']}")
        lines.append("this project's functions, with what they call:")
        for row in summary["top_project_inclusive"]:
            lines.append(f"  {row['percent']:5.1f}%  {row['function']}")
        by_package = summary["self_by_package"]
        packages = ", ".join(f"{r['function']} {r['percent']:.0f}%" for r in by_package)
        lines.append(f"own samples by package: {packages}")
    elif profile:
        lines += ["", f"py-spy: {profile.get('error', 'no profile')}"]
    others = max(run["cpu_percent"].get("others", 0) for run in result["runs"])
    if others > BUSY_MACHINE_PERCENT:
        lines.append(
            f"WARNING: other processes used up to {others:.0f} % of a core during the runs; "
            "these figures are not comparable, run again on a quiet machine"
        )
    for run in result["runs"]:
        if run["failures"]:
            lines.append(f"FAILURES in {run['name']}: {run['failures']}")
            lines += [f"  e.g. {example}" for example in run["failure_examples"]]
    if any("rate_limited" in run["failures"] for run in result["runs"]):
        lines.append(
            "rate_limited: an account may invite 1/s (burst 20) and a connection send 20 "
            "messages/s; use more --pairs, --callers-per-pair or --callees-per-pair"
        )
    if idle is not None and idle["failures"]:
        lines.append(f"FAILURES opening idle connections: {idle['failures']}")
    return "\n".join(lines)


# --- putting it together -----------------------------------------------------------------------


def plan_devices(args: argparse.Namespace) -> list[int]:
    """Devices per account: enough accounts for the pairs, enough devices for the idle test."""
    per_pair = args.callees_per_pair + args.callers_per_pair
    accounts = max(args.pairs * per_pair, math.ceil(args.idle / MAX_DEVICES))
    extra = max(0, args.idle - accounts)
    plan = []
    for _ in range(accounts):
        more = min(MAX_DEVICES - 1, extra)
        extra -= more
        plan.append(1 + more)
    return plan


def pair_specs(
    accounts: list[list[Member]], pairs: int, callers_per_pair: int, callees_per_pair: int
) -> list[PairSpec]:
    """Pair i: the first devices of accounts i, i + pairs, ... answer; the accounts after the
    callees call."""
    first = [members[0] for members in accounts]
    callees, callers = first[: pairs * callees_per_pair], first[pairs * callees_per_pair :]
    specs: list[PairSpec] = []
    for i in range(pairs):
        answering = [(c.handle, c.token) for c in callees[i::pairs]]
        mine = callers[i::pairs][:callers_per_pair]
        specs.append((i, answering, [c.token for c in mine]))
    return specs


async def run(args: argparse.Namespace) -> dict[str, Any]:
    version = source_version()
    per_pair = args.callees_per_pair + args.callers_per_pair
    limit = raise_open_files(2 * args.idle + 4 * args.pairs * per_pair + 1024)
    log(f"open-files limit {limit} (the server inherits it)")
    with tempfile.TemporaryDirectory(prefix="cbbench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        port = args.port or free_port()
        url = f"http://127.0.0.1:{port}"
        with running_server(port, data_dir, args.server_loop) as server:
            pid = server.pid
            log(f"server pid {pid} on {url}, data in {data_dir}")
            await wait_ready(url, server)
            valkey_pid = int((data_dir / "valkey.pid").read_text().strip())

            plan = plan_devices(args)
            log(f"creating {len(plan)} accounts with {sum(plan)} devices (paced sign-ups/ins)")
            accounts, retries, setup_s = await make_accounts(url, plan, args.setup_concurrency)
            setup = {
                "accounts": len(accounts),
                "devices": sum(len(a) for a in accounts),
                "seconds": round(setup_s, 1),
                "throttled_retries": retries,
            }

            idle = None
            if args.idle:
                if args.wait_quiet:
                    await wait_quiet(args.wait_quiet)
                members = [member for account in accounts for member in account][: args.idle]
                log(f"idle memory: opening {len(members)} call WebSockets")
                idle = await idle_memory(url, pid, members)
                log(f"  {idle['bytes_per_device'] / 1000:.1f} kB per idle device")

            specs = pair_specs(accounts, args.pairs, args.callers_per_pair, args.callees_per_pair)
            log(f"starting {args.procs} load generator(s) for {len(specs)} pairs")
            load = LoadGenerators(url, specs, args.procs, not args.asyncio_bots)
            try:
                connected = await load.ready()
                log(f"  {connected} bots connected")
                pids = {"server": [pid], "valkey": [valkey_pid], "bots": load.pids}
                pids["bench"] = [os.getpid()]
                meter = CpuMeter(pids)
                runs = []
                quiet = args.wait_quiet
                if quiet:
                    await wait_quiet(quiet)
                if args.warmup:
                    log(f"warm-up: {args.warmup:g} s")
                    await load.run(args.warmup, None)
                log(f"peak: {args.duration:g} s unpaced")
                peak = await timed_run(load, meter, "peak", args.duration, None)
                runs.append(peak)
                half = None
                if args.half and peak["setups_per_s"] > 0:
                    rate = min(peak["setups_per_s"], AIM_SETUPS_PER_S) / 2
                    log(f"half load: {args.duration:g} s paced at {rate:.0f}/s")
                    half = await timed_run(load, meter, "half", args.duration, rate, quiet)
                    runs.append(half)
                profile = None
                if args.py_spy:
                    profile = await profile_run(load, meter, pid, Path(tmp), args, runs)
            finally:
                load.stop()
            server_loop = event_loop_of(pid)

    return {
        "bench": "signaling",
        "source": version,
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu_model(),
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "server_loop": server_loop,
            "client_loop": "asyncio" if args.asyncio_bots else _client_loop_name(),
        },
        "pairs": args.pairs,
        "callers_per_pair": args.callers_per_pair,
        "callees_per_pair": args.callees_per_pair,
        "procs": args.procs,
        "duration_s": args.duration,
        "limits": {
            "invite_burst": INVITE_BURST,
            "invites_per_s": INVITES_PER_S,
            "ws_messages_per_s": RATE_PER_S,
        },
        "setup": setup,
        "idle": idle,
        "runs": runs,
        "peak": peak,
        "half": half,
        "profile": profile,
    }


def _client_loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


async def profile_run(
    load: LoadGenerators,
    meter: CpuMeter,
    pid: int,
    tmp: Path,
    args: argparse.Namespace,
    runs: list[dict[str, Any]],
) -> dict[str, Any]:
    binary = find_py_spy()
    if binary is None:
        return {"error": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    out = tmp / "py-spy.txt"
    log(f"profile: {args.duration:g} s unpaced with py-spy sampling the server")
    if args.wait_quiet:
        await wait_quiet(args.wait_quiet)
    spy = start_py_spy(binary, pid, args.duration, out)
    await asyncio.sleep(0.5)  # py-spy attaches
    # py-spy's own CPU is its own column, not "others".
    spied = CpuMeter({**meter.pids, "py-spy": [spy.pid]})
    runs.append(await timed_run(load, spied, "py-spy", args.duration, None))
    try:
        output, _ = await asyncio.to_thread(spy.communicate, timeout=args.duration + 30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()
        return {"error": "py-spy did not finish"}
    return await asyncio.to_thread(read_profile, spy.returncode, output, out, args.py_spy_out)


def read_profile(code: int, output: bytes, out: Path, keep: str | None) -> dict[str, Any]:
    if code != 0 or not out.exists():
        text = output.decode(errors="replace").strip().splitlines()
        return {"error": f"py-spy could not profile the server: {text[-1] if text else '?'}"}
    raw = out.read_text()
    if keep:
        Path(keep).write_text(raw)
    return {"summary": summarise_profile(raw)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.signaling", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--pairs", type=int, default=50, help="bot pairs calling (50)")
    parser.add_argument(
        "--callers-per-pair",
        type=int,
        default=20,
        help="caller accounts each pair rotates over, for the 1 invite/s limit (20)",
    )
    parser.add_argument(
        "--callees-per-pair",
        type=int,
        default=4,
        help="callee accounts each pair rotates over, for the 20 messages/s limit (4)",
    )
    parser.add_argument("--procs", type=int, default=1, help="load-generator processes (1)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds first (2)")
    parser.add_argument(
        "--idle", type=int, default=5000, help="idle WebSockets for the memory figure (5000; 0 off)"
    )
    parser.add_argument("--no-half", dest="half", action="store_false", help="skip the half run")
    parser.add_argument(
        "--no-py-spy", dest="py_spy", action="store_false", help="skip the profiled run"
    )
    parser.add_argument("--py-spy-out", metavar="FILE", help="keep py-spy's raw stacks in FILE")
    parser.add_argument(
        "--asyncio-bots", action="store_true", help="bots on asyncio's loop, not uvloop"
    )
    parser.add_argument(
        "--server-loop",
        choices=("default", "asyncio"),
        default="default",
        help="asyncio: run the server with uvloop blocked, for comparison (default: as shipped)",
    )
    parser.add_argument(
        "--setup-concurrency", type=int, default=16, help="accounts set up at once (16)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        metavar="S",
        help="before each measurement wait up to S s for other processes to go idle (60; 0 off)",
    )
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead")
    args = parser.parse_args(argv)
    limits = {
        "--pairs": (args.pairs, 1, 1000),
        "--callers-per-pair": (args.callers_per_pair, 1, 100),
        "--callees-per-pair": (args.callees_per_pair, 1, 100),
        "--procs": (args.procs, 1, 16),
        "--duration": (args.duration, 1, 600),
        "--warmup": (args.warmup, 0, 60),
        "--idle": (args.idle, 0, 50_000),
        "--setup-concurrency": (args.setup_concurrency, 1, 256),
        "--wait-quiet": (args.wait_quiet, 0, 3600),
    }
    for flag, (value, low, high) in limits.items():
        if not low <= value <= high:
            parser.error(f"{flag} must be between {low} and {high}")
    if args.pairs < args.procs:
        parser.error("--pairs cannot be fewer than --procs")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = asyncio.run(run(args))
    except (RuntimeError, ClientError, OSError, TimeoutError) as exc:
        log(f"failed: {exc!r}")
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result) if args.json else report(result))
    failed = any(run["failed"] for run in result["runs"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
