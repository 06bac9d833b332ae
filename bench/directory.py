"""Address-book benchmark: sign-ups/s and lookups/s through the REST API, against bare redis-py.

It starts ``callbook serve`` on a free loopback port with a fresh embedded Valkey (unix socket in
a temporary directory) and signs up N accounts. Then a few signed-in clients look up random
existing handles (``GET /v1/handles/{handle}``) for a fixed time, and, with the same concurrency
and time, bare redis-py issues the Redis commands one such lookup costs the server against the
same Valkey, through the same client the server builds
(``directory.storage.connection.connect``); the two alternate over a few rounds. It prints both
rates and the ratio server/bare.

Run from the repository root::

    .venv/bin/python -m bench.directory            # table
    .venv/bin/python -m bench.directory --json     # one JSON line

The per-account lookup limit is raised (CALLBOOK_LOOKUP_BURST, CALLBOOK_LOOKUPS_PER_MINUTE) so it
does not throttle the benchmark. Everything stays on 127.0.0.1 and the unix socket; the server is
stopped with SIGTERM at the end, whatever happens.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file (``python bench/directory.py``) this folder would come first on sys.path and this
# module would shadow the ``directory`` package; put the repository root in front of it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis
from redis.exceptions import RedisError

from directory.lookup import queue_card_reads
from directory.ratelimit import _TOKEN_BUCKET
from directory.secret import embedded as embedded_secret
from directory.storage import keys
from directory.storage.connection import connect
from directory.storage.embedded import _die_with_parent
from directory.store import Store
from signaling.sdk.client import Client, ClientError, Profile
from signaling.server import _new_loop as server_loop

# The highest values signaling.config accepts: the per-account lookup bucket never runs dry.
LOOKUP_BURST = 100_000
LOOKUPS_PER_MINUTE = 1_000_000
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
SIGNUP_TIMEOUT_S = 300.0
#: The load generators sign up thousands of accounts from one loopback address and look up
#: from brand-new accounts: the per-source, puzzle and young-account limits (bench/flood.py
#: measures those) are lifted, and argon2 gets the threads it had before its bounded pool, so
#: these benchmarks measure the same work as before them.
UNTHROTTLED_ADMISSION = {
    "CALLBOOK_SOURCE_SIGNUPS_PER_HOUR": "1000000",
    "CALLBOOK_SOURCE_RECOVERIES_PER_HOUR": "1000000",
    "CALLBOOK_SOURCE_CHALLENGES_PER_MINUTE": "1000000",
    "CALLBOOK_PUZZLE_MAX_BITS": "0",
    "CALLBOOK_YOUNG_LOOKUPS_PER_MINUTE": "100000",
    "CALLBOOK_YOUNG_LOOKUPS_STORE_PER_MINUTE": "10000000",
    "CALLBOOK_ARGON2_WORKERS": "4",
    "CALLBOOK_ARGON2_QUEUE": "10000",
}
# Above this much CPU used by other processes (percent of one core) the report warns.
BUSY_MACHINE_PERCENT = 10.0


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """CPU time all processes of the machine spent (user, nice, system, irq, softirq)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in first[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """What one kind of work did, over one or more timed runs: successes, failures by code,
    latencies and CPU use (seconds per process, turned into percent of one core at the end)."""

    name: str
    concurrency: int
    ok: int = 0
    elapsed_s: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    cpu_s: Counter[str] = field(default_factory=Counter)
    cpu_wall_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        wall = self.cpu_wall_s or 1.0
        return {
            "name": self.name,
            "ok": self.ok,
            "failed": sum(self.failures.values()),
            "failures": dict(self.failures),
            "elapsed_s": round(self.elapsed_s, 3),
            "per_s": round(self.rate, 1),
            "concurrency": self.concurrency,
            "p50_ms": round(self.percentile_ms(0.50), 2),
            "p99_ms": round(self.percentile_ms(0.99), 2),
            "cpu_percent": {k: round(100 * v / wall, 1) for k, v in self.cpu_s.items()},
        }


class LookupFailed(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class CpuMeter:
    """CPU seconds used by named processes between start() and stop(), added to a Phase.

    ``others`` is what the rest of the machine used meanwhile: a benchmark run next to other
    work is not comparable, and this shows it.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float | None] = {}
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._start["machine"] = machine_busy_seconds()

    def stop(self, phase: Phase) -> None:
        phase.cpu_wall_s += time.perf_counter() - self._t0
        used: dict[str, float] = {}
        for name, pid in self.pids.items():
            before, after = self._start.get(name), cpu_seconds(pid)
            if before is not None and after is not None:
                used[name] = after - before
        before, after = self._start.get("machine"), machine_busy_seconds()
        if before is not None and after is not None and len(used) == len(self.pids):
            used["others"] = max(0.0, after - before - sum(used.values()))
        phase.cpu_s.update(used)


Op = Callable[[int], Awaitable[None]]


async def run_for(phase: Phase, duration_s: float, op: Op, meter: CpuMeter | None = None) -> float:
    """Run ``op(worker)`` in ``phase.concurrency`` loops for a while; adds to ``phase`` and
    returns this run's successes per second."""
    deadline = time.perf_counter() + duration_s
    ok_before = phase.ok

    async def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                await op(index)
            except (ClientError, LookupFailed) as exc:
                phase.failures[exc.code] += 1
            except (RedisError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                phase.failures[type(exc).__name__] += 1
            else:
                phase.ok += 1
                phase.latencies.append(time.perf_counter() - t0)

    if meter is not None:
        meter.start()
    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(phase.concurrency)))
    elapsed = time.perf_counter() - start
    if meter is not None:
        meter.stop(phase)
    phase.elapsed_s += elapsed
    return (phase.ok - ok_before) / elapsed


# --- the server -----------------------------------------------------------------------------


def server_command(port: int, data_dir: Path, profile_to: Path | None) -> list[str]:
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    if profile_to is not None:
        profiler = [sys.executable, "-m", "cProfile", "-o", str(profile_to)]
        return [*profiler, "-m", "signaling.cli", *serve]
    script = Path(sys.executable).with_name("callbook")
    if script.exists():
        return [str(script), *serve]
    return [sys.executable, "-m", "signaling.cli", *serve]


@contextlib.contextmanager
def running_server(
    port: int, data_dir: Path, profile_to: Path | None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``callbook serve`` with the lookup limit lifted."""
    env = {
        "CALLBOOK_LOOKUP_BURST": str(LOOKUP_BURST),
        "CALLBOOK_LOOKUPS_PER_MINUTE": str(LOOKUPS_PER_MINUTE),
        **UNTHROTTLED_ADMISSION,
    }
    with supervised_server(server_command(port, data_dir, profile_to), data_dir, env) as process:
        yield process


@contextlib.contextmanager
def supervised_server(
    command: list[str], data_dir: Path, settings: dict[str, str], cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server command with only ``settings`` as CALLBOOK_* configuration; SIGTERM it on
    the way out, whatever happened, and show the end of its log if it did not stop cleanly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBOOK_")}
    env.pop("REDIS_URL", None)
    # Every bench client is on loopback: one source, which the per-source cap would refuse.
    env["CALLBOOK_MAX_CONNECTIONS_PER_SOURCE"] = "0"
    env.update(settings)
    server_log = data_dir.parent / "server.log"
    with server_log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the benchmark, which then stops the server
            preexec_fn=_die_with_parent,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log("the server did not stop within 15 s; killing it")
                process.kill()
                process.wait()
        if process.returncode not in (0, -signal.SIGTERM):
            tail = server_log.read_text(errors="replace").splitlines()[-15:]
            log(f"the server exited with {process.returncode}; last lines of its log:")
            for line in tail:
                print("  " + line, file=sys.stderr)


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    timeout = aiohttp.ClientTimeout(total=1)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("the server exited during start-up")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the server was not ready within {STARTUP_TIMEOUT_S:.0f} s")


# --- the phases -----------------------------------------------------------------------------


async def signups(url: str, count: int, concurrency: int) -> tuple[Phase, list[Profile], int]:
    """Sign up ``count`` accounts; a 503 overloaded (anonymous throttle) is retried, counted."""
    phase = Phase("signups", concurrency)
    profiles: list[Profile] = []
    pending = iter(range(count))
    throttled = 0

    async def worker() -> None:
        nonlocal throttled
        for i in pending:
            t0 = time.perf_counter()
            while True:
                try:
                    async with Client(url) as client:
                        _, profile = await client.signup(f"bench_{i:06d}")
                except ClientError as exc:
                    if exc.code == "overloaded":
                        throttled += 1
                        await asyncio.sleep(exc.retry_after or 1)
                        continue
                    phase.failures[exc.code] += 1
                else:
                    phase.ok += 1
                    phase.latencies.append(time.perf_counter() - t0)
                    profiles.append(profile)
                break

    start = time.perf_counter()
    async with asyncio.timeout(SIGNUP_TIMEOUT_S):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.elapsed_s = time.perf_counter() - start
    return phase, profiles, throttled


@dataclass
class Lookups:
    server: Phase
    bare: Phase
    round_ratios: list[float]

    @property
    def ratio(self) -> float:
        return self.server.rate / self.bare.rate if self.bare.rate else 0.0


async def lookups(
    url: str, redis_url: str, viewers: list[Profile], handles: list[str],
    args: argparse.Namespace, meter: CpuMeter, data_dir: Path,
) -> Lookups:  # fmt: skip
    """Lookups through the API, then the same Redis commands from bare redis-py, in rounds.

    The two alternate (A B, B A, A B, ...) so that a drift of the machine's speed during the run
    touches both alike; the ratio is taken over all rounds.
    """
    clients = [Client(url, profile) for profile in viewers]
    bare = connect(redis_url)  # the very client (pool, RESP3, decoding) the server builds
    # The server's keyed handle digests, under the secret it generated in the data directory.
    store = Store(bare, secret=embedded_secret(data_dir))
    bucket = bare.register_script(_TOKEN_BUCKET)
    await bare.script_load(_TOKEN_BUCKET)  # the pipelines below send EVALSHA alone
    refill_per_s = LOOKUPS_PER_MINUTE / 60

    async def api_lookup(worker: int) -> None:
        handle = random.choice(handles)
        card = await clients[worker % len(clients)].whois(handle)
        if card.handle != handle:
            raise LookupFailed("wrong_card")

    async def bare_lookup(worker: int) -> None:
        """What one GET /v1/handles/{handle} asks of the store, in the same order:

        signaling.app.authenticate: HEXISTS on the device hash; directory.lookup.find: a pipeline
        of EVALSHA (the token bucket) and GET (the handle key), then directory.lookup.visible_card:
        a pipeline of HMGET, HEXISTS, HEXISTS. Three round trips, as the server makes.
        Key names, the script and the card reads come from those modules, not copies.
        """
        viewer = viewers[worker % len(viewers)]
        viewer_id = viewer.account_id
        if not await bare.hexists(keys.devices(viewer_id), viewer.device_id):
            raise LookupFailed("device_revoked")
        async with bare.pipeline(transaction=False) as pipe:
            pipe.evalsha(
                bucket.sha, 1, keys.lookup_bucket(viewer_id),
                LOOKUP_BURST, refill_per_s, keys.RATE_LIMIT_IDLE_TTL_S,
            )  # fmt: skip
            pipe.get(keys.handle_key(store.handle_digest(random.choice(handles))))
            wait_ms, owner = await pipe.execute()
        if int(wait_ms) > 0:
            raise LookupFailed("rate_limited")
        if not isinstance(owner, str) or owner == keys.QUARANTINED:
            raise LookupFailed("not_found")
        async with bare.pipeline(transaction=False) as pipe:
            queue_card_reads(pipe, viewer_id, owner)
            (handle, _name, _discoverable, _suspended), _blocked, _contact = await pipe.execute()
        if handle is None:
            raise LookupFailed("not_found")

    result = Lookups(
        Phase("lookups (HTTP API)", args.concurrency),
        Phase("lookups (bare redis-py)", args.concurrency),
        [],
    )
    runs = ((result.server, api_lookup), (result.bare, bare_lookup))
    try:
        for client in clients:
            await client.sign_in()
        for _, op in runs:
            await run_for(Phase("warm-up", args.concurrency), args.warmup, op)
        for number in range(args.rounds):
            log(f"round {number + 1}/{args.rounds}: {args.duration:g} s each")
            rates = {}
            for phase, op in runs if number % 2 == 0 else runs[::-1]:
                rates[phase.name] = await run_for(phase, args.duration, op, meter)
            server_rate, bare_rate = rates[result.server.name], rates[result.bare.name]
            result.round_ratios.append(server_rate / bare_rate if bare_rate else 0.0)
        return result
    finally:
        for client in clients:
            await client.close()
        await bare.aclose()


async def valkey_version(redis_url: str) -> str:
    client = connect(redis_url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return str(info.get("valkey_version") or info.get("redis_version") or "?")


# --- the report -----------------------------------------------------------------------------


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "Callbook address book: bench/directory.py",
        f"machine  {m['nproc']} cores ({m['cpu']}), {m['os']}, Python {m['python']}, "
        f"Valkey {m['valkey']}, aiohttp {m['aiohttp']}, redis-py {m['redis_py']}, "
        f"bench loop {m['bench_loop']}",
        "",
        f"{'phase':<26}{'ok':>8}{'failed':>8}{'secs':>7}{'per s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        "  cpu % (one core = 100)",
    ]
    for key in ("signups", "lookups_server", "lookups_bare"):
        p = result[key]
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in p["cpu_percent"].items())
        lines.append(
            f"{p['name']:<26}{p['ok']:>8}{p['failed']:>8}{p['elapsed_s']:>7.1f}"
            f"{p['per_s']:>9.1f}{p['p50_ms']:>8.1f}{p['p99_ms']:>8.1f}  {cpu}"
        )
    lines.append("")
    s = result["signups"]
    lines.append(
        f"sign-ups: concurrency {s['concurrency']}, {result['signup_throttled']} retries after "
        "503 overloaded (each includes an argon2id hash of the recovery code)"
    )
    ratio = result["ratio"]
    verdict = "met" if ratio >= 0.5 else "NOT met"
    lines.append(
        f"lookups: {result['lookup_clients']} signed-in clients, concurrency "
        f"{result['lookups_server']['concurrency']}, {result['rounds']} alternating rounds of "
        f"{result['duration_s']:g} s per kind"
    )
    rounds = ", ".join(f"{r:.2f}" for r in result["round_ratios"])
    lines.append(
        f"ratio server/bare redis-py: {ratio:.2f} (rounds: {rounds})  aim >= 0.50: {verdict}"
    )
    others = max(
        result[k]["cpu_percent"].get("others", 0) for k in ("lookups_server", "lookups_bare")
    )
    if others > BUSY_MACHINE_PERCENT:
        lines.append(
            f"WARNING: other processes used up to {others:.0f} % of a core during the lookups; "
            "these figures are not comparable, run again on a quiet machine"
        )
    for key in ("signups", "lookups_server", "lookups_bare"):
        if result[key]["failures"]:
            lines.append(f"FAILURES in {result[key]['name']}: {result[key]['failures']}")
    return "\n".join(lines)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def loop_description(loop: asyncio.AbstractEventLoop) -> str:
    package = type(loop).__module__.split(".")[0]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return f"{package} {importlib.metadata.version(package)}"
    return package


async def run(args: argparse.Namespace) -> dict[str, Any]:
    random.seed(args.seed)
    loop_name = loop_description(asyncio.get_running_loop())
    with tempfile.TemporaryDirectory(prefix="cbbench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        port = args.port or free_port()
        url = f"http://127.0.0.1:{port}"
        with running_server(port, data_dir, args.profile_server) as server:
            pid = server.pid
            log(f"server pid {pid} on {url}, data in {data_dir}")
            await wait_ready(url, server)
            sock = data_dir / "valkey.sock"
            if not sock.exists():
                raise RuntimeError(f"no embedded Valkey socket at {sock}")
            redis_url = f"unix://{sock}"
            valkey_pid = int((data_dir / "valkey.pid").read_text().strip())
            pids = {"server": pid, "valkey": valkey_pid, "bench": os.getpid()}

            log(f"{args.signups} sign-ups, concurrency {args.signup_concurrency}")
            meter = CpuMeter(pids)
            meter.start()
            signup_phase, profiles, throttled = await signups(
                url, args.signups, args.signup_concurrency
            )
            meter.stop(signup_phase)
            if len(profiles) < max(1, args.lookup_clients):
                raise RuntimeError(f"only {len(profiles)} sign-ups succeeded")
            handles = [p.handle for p in profiles]
            viewers = profiles[: args.lookup_clients]
            found = await lookups(url, redis_url, viewers, handles, args, meter, data_dir)
            version = await valkey_version(redis_url)

    phases = {"signups": signup_phase, "lookups_server": found.server, "lookups_bare": found.bare}
    result: dict[str, Any] = {
        "bench": "directory",
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu_model(),
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "valkey": version,
            "aiohttp": aiohttp.__version__,
            "redis_py": redis.__version__,
            "bench_loop": loop_name,
        },
        "rounds": args.rounds,
        "duration_s": args.duration,
        "lookup_clients": len(viewers),
        "signup_throttled": throttled,
    }
    for key, phase in phases.items():
        result[key] = phase.summary()
    result["ratio"] = round(found.ratio, 3)
    result["round_ratios"] = [round(r, 3) for r in found.round_ratios]
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.directory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--signups", type=int, default=200, help="accounts to sign up (200)")
    parser.add_argument("--signup-concurrency", type=int, default=8, help="sign-ups in flight (8)")
    parser.add_argument(
        "--lookup-clients", type=int, default=4, help="signed-in accounts doing lookups (4)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="lookups in flight, both phases (16)"
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds of each lookup run (5)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="API and bare runs, alternating, per kind (3)"
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds before (1)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the handle choice")
    parser.add_argument(
        "--loop",
        choices=("server", "asyncio"),
        default="server",
        help="event loop of this process: the server's (uvloop if installed) or asyncio's",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line instead")
    parser.add_argument(
        "--profile-server",
        metavar="FILE",
        help="run the server under cProfile (slower), stats to FILE",
    )
    args = parser.parse_args(argv)
    if args.profile_server:
        args.profile_server = Path(args.profile_server).resolve()
    limits = {
        "--signups": (args.signups, 1, 100_000),
        "--signup-concurrency": (args.signup_concurrency, 1, 256),
        "--lookup-clients": (args.lookup_clients, 1, 1000),
        "--concurrency": (args.concurrency, 1, 1024),
        "--duration": (args.duration, 0.1, 600),
        "--rounds": (args.rounds, 1, 20),
        "--warmup": (args.warmup, 0, 60),
    }
    for flag, (value, low, high) in limits.items():
        if not low <= value <= high:
            parser.error(f"{flag} must be between {low} and {high}")
    if args.lookup_clients > args.signups:
        parser.error("--lookup-clients cannot exceed --signups")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the server is stopped and the temporary directory removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        # By default the same event loop as `callbook serve` (uvloop when installed), so that the
        # bare loop runs redis-py exactly as the server does.
        factory = server_loop if args.loop == "server" else asyncio.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            result = runner.run(run(args))
    except (RuntimeError, ClientError, RedisError, OSError) as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result) if args.json else report(result))
    failed = any(result[k]["failed"] for k in ("signups", "lookups_server", "lookups_bare"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
