"""Flood benchmark: can one client starve sign-ups and sign-ins for everyone? (issue 11, 5)

For each flood (``signup``, ``recovery``, ``challenge``, ``lookup``) it starts a fresh
``callbook serve`` (embedded Valkey and SFU, the default limits) on a free loopback port, and:

1. signs up a resident account from 127.0.0.200 and measures ``GET /v1/me`` with its token,
   paced (``--pace-ms``), for ``--quiet`` seconds, while a person signs up every 0.5 s (as in
   2): the quiet latency;
2. starts the flood from 127.0.0.1 in a process of its own, ``--concurrency`` requests in
   flight, for ``--duration`` seconds, while the resident goes on measuring ``GET /v1/me`` and
   a legitimate person signs up every 0.5 s, each from an address of their own (127.0.0.10,
   127.0.0.11, ...), as a client does it: ask for a puzzle, solve it, sign up;
3. reports the legitimate sign-ups that succeeded, the ``GET /v1/me`` p95 during the flood over
   the quiet one, and what the flood got through (accounts, recoveries, challenges, lookups).

The flooders do what a careless flood does: sign-ups without solving puzzles, recovery guesses
at random handles, challenges, and lookups from as many accounts as one source could sign up
in ``--signup-window`` seconds (round-robin over their tokens), reported as lookups a minute.

``--server-repo PATH`` runs the server from another checkout (e.g. an older commit) for a
before/after comparison; the clients here cope with a server without puzzles.

Run from the repository root::

    .venv/bin/python -m bench.flood                 # table, all four floods
    .venv/bin/python -m bench.flood --json --floods signup,lookup

Everything stays on 127.0.0.0/8; counts and time are bounded; each server is stopped at the
end of its flood, whatever happens.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from bench.directory import cpu_model, free_port, log, supervised_server, wait_ready
from signaling.protocol import puzzles
from signaling.protocol.signing import signin_message
from signaling.sdk.client import _b64, new_device_key

REPO = Path(__file__).resolve().parents[1]
FLOODS = ("signup", "recovery", "challenge", "lookup")
FLOODER = "127.0.0.1"
RESIDENT = "127.0.0.200"
LEGIT_EVERY_S = 0.5
REQUEST_TIMEOUT_S = 10.0
MAX_DURATION_S = 120.0
MAX_CONCURRENCY = 256
WRONG_CODE = "aaaa-bbbb-cccc-dddd-eeee-ffff-gggg-hhhh"


def session(source: str) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def post(http: aiohttp.ClientSession, url: str, body: Any = None) -> tuple[int, Any]:
    async with http.post(url, json=body) as response:
        answer = await response.json(content_type=None) if response.content_length else None
        return response.status, answer


def device() -> tuple[Any, dict[str, str]]:
    key, public = new_device_key()
    return key, {"name": "bench", "public_key": public}


async def enroll(http: aiohttp.ClientSession, url: str, handle: str) -> tuple[int, Any, Any]:
    """Sign up as a client does: a puzzle first (when the server has them), solved off-loop."""
    key, dev = device()
    body: dict[str, Any] = {"handle": handle, "device": dev}
    for _ in range(3):
        status, given = await post(http, url + "/v1/puzzles", {"purpose": "signup"})
        if status == 200:
            solution = await asyncio.to_thread(puzzles.solve, given["challenge"], given["bits"])
            body["puzzle"] = {"challenge": given["challenge"], "solution": solution}
        elif status != 404:  # 404: a server from before puzzles
            return status, given, key
        status, answer = await post(http, url + "/v1/accounts", body)
        if status != 428:
            return status, answer, key
    return status, answer, key


async def sign_in(http: aiohttp.ClientSession, url: str, key: Any, done: Any) -> str | None:
    status, challenge = await post(http, url + "/v1/auth/challenge")
    if status != 200:
        return None
    account, dev = done["account"]["id"], done["device"]["id"]
    signature = _b64(key.sign(signin_message(account, dev, challenge["nonce"])))
    body = {"account_id": account, "device_id": dev, "nonce": challenge["nonce"]}
    status, token = await post(http, url + "/v1/auth/token", {**body, "signature": signature})
    return token["access_token"] if status == 200 else None


# --- the flooder (a process of its own, so its bookkeeping does not skew the measurements) ---


async def _flood(kind: str, url: str, args: dict[str, Any], start_at: float) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    extra: dict[str, Any] = {}
    tokens: list[str] = []
    async with session(FLOODER) as http:
        if kind == "lookup":
            tokens = await _sybils(http, url, args["signup_window"], extra)
            if not tokens:
                return {"statuses": {}, **extra}
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.monotonic() + args["duration"]
        counter = iter(range(10**9))

        async def one() -> None:
            i = next(counter)
            if kind == "signup":
                body = {"handle": f"fl{secrets.token_hex(6)}", "device": device()[1]}
                status, _ = await post(http, url + "/v1/accounts", body)
            elif kind == "recovery":
                guess = "resident" if i % 4 == 0 else f"nobody{i}"
                body = {"handle": guess, "recovery_code": WRONG_CODE, "device": device()[1]}
                status, _ = await post(http, url + "/v1/recovery", body)
            elif kind == "challenge":
                status, _ = await post(http, url + "/v1/auth/challenge")
            else:
                headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
                target = "resident" if i % 2 else f"nobody{i}"
                async with http.get(f"{url}/v1/handles/{target}", headers=headers) as response:
                    await response.read()
                    status = response.status
            statuses[status] += 1

        async def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    await one()
                except (aiohttp.ClientError, TimeoutError):
                    statuses[0] += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(args["concurrency"])))
        extra["elapsed_s"] = time.monotonic() - started
    return {"statuses": dict(statuses), **extra}


async def _sybils(
    http: aiohttp.ClientSession, url: str, window_s: float, extra: dict[str, Any]
) -> list[str]:
    """As many signed-in accounts as this one source gets in ``window_s`` seconds."""
    tokens: list[str] = []
    deadline = time.monotonic() + window_s
    refused = 0
    while time.monotonic() < deadline and refused < 50:
        status, done, key = await enroll(http, url, f"sy{secrets.token_hex(6)}")
        if status != 201:
            refused += 1
            continue
        token = await sign_in(http, url, key, done)
        if token:
            tokens.append(token)
    extra["sybil_accounts"] = len(tokens)
    return tokens


def _flood_process(kind: str, url: str, args: dict[str, Any], start_at: float, out: Any) -> None:
    out.send(asyncio.run(_flood(kind, url, args, start_at)))


# --- the measurements ---------------------------------------------------------------------


@dataclass
class Outcome:
    flood: str
    legit_ok: int = 0
    legit_total: int = 0
    legit_failures: dict[str, int] = field(default_factory=dict)
    quiet_legit: str = ""
    me_quiet_p50_ms: float = 0.0
    me_quiet_p95_ms: float = 0.0
    me_flood_p50_ms: float = 0.0
    me_flood_p95_ms: float = 0.0
    flood_statuses: dict[str, int] = field(default_factory=dict)
    flood_rate_per_s: float = 0.0
    flood_successes: int = 0
    lookups_per_minute: float | None = None
    sybil_accounts: int | None = None

    @property
    def latency_ratio(self) -> float:
        return self.me_flood_p95_ms / self.me_quiet_p95_ms if self.me_quiet_p95_ms else 0.0


def percentile_ms(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure_me(url: str, token: str, seconds: float, pace_s: float) -> list[float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with session(RESIDENT) as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url + "/v1/me", headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(max(0.0, pace_s - (time.perf_counter() - t0)))
    return latencies


async def legit_signups(url: str, seconds: float, first: int) -> Counter[str]:
    """A person every 0.5 s, each from an address of their own."""
    results: Counter[str] = Counter()

    async def person(i: int) -> None:
        address = f"127.0.{1 + (first + i) // 200}.{10 + (first + i) % 200}"
        try:
            async with session(address) as http:
                status, answer, _ = await enroll(http, url, f"person{first + i}")
            code = "ok" if status == 201 else (answer or {}).get("code", str(status))
        except (aiohttp.ClientError, TimeoutError) as exc:
            code = type(exc).__name__
        results[code] += 1

    tasks = []
    for i in range(int(seconds / LEGIT_EVERY_S)):
        tasks.append(asyncio.create_task(person(i)))
        await asyncio.sleep(LEGIT_EVERY_S)
    await asyncio.gather(*tasks)
    return results


@contextlib.contextmanager
def running_server(repo: Path) -> Iterator[str]:
    """``callbook serve`` from ``repo`` with the default limits, on a free loopback port."""
    with tempfile.TemporaryDirectory(prefix="cb-flood-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        port = free_port()
        command = [
            sys.executable, "-m", "signaling.cli", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--data-dir", str(data_dir),
        ]  # fmt: skip
        settings = {"PYTHONPATH": str(repo)}
        with supervised_server(command, data_dir, settings, cwd=repo) as process:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(wait_ready(url, process))
            yield url


async def run_flood(kind: str, url: str, args: argparse.Namespace) -> Outcome:
    outcome = Outcome(kind)
    async with session(RESIDENT) as http:
        status, done, key = await enroll(http, url, "resident")
        if status != 201:
            raise RuntimeError(f"the resident could not sign up: {status} {done}")
        token = await sign_in(http, url, key, done)
    assert token is not None
    # The quiet baseline has the same legitimate sign-ups, so the ratio is the flood's doing.
    quiet, quiet_legit = await asyncio.gather(
        measure_me(url, token, args.quiet, args.pace_ms / 1000),
        legit_signups(url, args.quiet, 1000),
    )
    outcome.quiet_legit = f"{quiet_legit.get('ok', 0)}/{sum(quiet_legit.values())}"

    flood_args = {
        "duration": args.duration,
        "concurrency": args.concurrency,
        "signup_window": args.signup_window,
    }
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    lead = 2.0 + (args.signup_window if kind == "lookup" else 0.0)
    start_at = time.time() + lead
    flooder = context.Process(target=_flood_process, args=(kind, url, flood_args, start_at, send))
    flooder.start()
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        during, legit = await asyncio.gather(
            measure_me(url, token, args.duration, args.pace_ms / 1000),
            legit_signups(url, args.duration, 0),
        )
        report = await asyncio.to_thread(receive.recv)
    finally:
        flooder.join(timeout=args.duration + 30)
        if flooder.is_alive():
            flooder.kill()
    outcome.me_quiet_p50_ms = percentile_ms(quiet, 0.5)
    outcome.me_quiet_p95_ms = percentile_ms(quiet, 0.95)
    outcome.me_flood_p50_ms = percentile_ms(during, 0.5)
    outcome.me_flood_p95_ms = percentile_ms(during, 0.95)
    outcome.legit_ok = legit.get("ok", 0)
    outcome.legit_total = sum(legit.values())
    outcome.legit_failures = {k: v for k, v in legit.items() if k != "ok"}
    statuses = {str(k): v for k, v in sorted(report["statuses"].items())}
    outcome.flood_statuses = statuses
    elapsed = report.get("elapsed_s") or args.duration
    outcome.flood_rate_per_s = sum(report["statuses"].values()) / elapsed
    good = {"signup": ("201",), "recovery": ("201",), "challenge": ("200",)}
    outcome.flood_successes = sum(
        v for k, v in statuses.items() if k in good.get(kind, ("200", "404"))
    )
    if kind == "lookup":
        outcome.lookups_per_minute = outcome.flood_successes / elapsed * 60
        outcome.sybil_accounts = report.get("sybil_accounts")
    return outcome


def print_table(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    print(f"# bench/flood.py: {args.duration:g} s floods, {args.concurrency} in flight; "
          f"{cpu_model()}")  # fmt: skip
    header = ("flood", "flood req/s", "flood got", "legit sign-ups (quiet)", "/v1/me p95 quiet",
              "p95 flood", "ratio")  # fmt: skip
    print(" | ".join(header))
    for o in outcomes:
        got = f"{o.flood_successes}"
        if o.lookups_per_minute is not None:
            got += f" ({o.lookups_per_minute:,.0f}/min from {o.sybil_accounts} accounts)"
        print(" | ".join((
            o.flood, f"{o.flood_rate_per_s:,.0f}", got,
            f"{o.legit_ok}/{o.legit_total} ({o.quiet_legit})",
            f"{o.me_quiet_p95_ms:.1f} ms", f"{o.me_flood_p95_ms:.1f} ms",
            f"{o.latency_ratio:.2f}x",
        )))  # fmt: skip
        if o.legit_failures:
            print(f"  legit failures: {o.legit_failures}; flood answers: {o.flood_statuses}")
        else:
            print(f"  flood answers: {o.flood_statuses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--floods", default=",".join(FLOODS))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of flood")
    parser.add_argument("--quiet", type=float, default=5.0, help="seconds of quiet baseline")
    parser.add_argument("--concurrency", type=int, default=32, help="flood requests in flight")
    parser.add_argument("--pace-ms", type=float, default=20.0, help="GET /v1/me every N ms")
    parser.add_argument("--signup-window", type=float, default=5.0,
                        help="lookup flood: seconds to sign up accounts first")  # fmt: skip
    parser.add_argument("--server-repo", type=Path, default=REPO)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    kinds = [k for k in args.floods.split(",") if k]
    if not set(kinds) <= set(FLOODS):
        parser.error(f"--floods takes {', '.join(FLOODS)}")
    if not (0 < args.duration <= MAX_DURATION_S and 0 < args.quiet <= MAX_DURATION_S):
        parser.error(f"durations are between 0 and {MAX_DURATION_S:g} s")
    if not 0 < args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency is between 1 and {MAX_CONCURRENCY}")
    outcomes = []
    for kind in kinds:
        log(f"{kind} flood against {args.server_repo}")
        with running_server(args.server_repo) as url:
            outcomes.append(asyncio.run(run_flood(kind, url, args)))
    if args.json:
        print(json.dumps([{**asdict(o), "latency_ratio": o.latency_ratio} for o in outcomes]))
    else:
        print_table(outcomes, args)


if __name__ == "__main__":
    main()
