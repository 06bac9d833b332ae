"""Pure cores of admission: per-source buckets, the rate meter, source digests, puzzle
difficulty and puzzle checking, each driven by a table with time as an argument."""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import ipaddress
import threading
import time

import pytest

from directory.budgets import is_young
from directory.errors import Overloaded
from directory.recovery import HashPool
from signaling import puzzle
from signaling.limits import Budget, RateMeter, SourceBuckets, SourceKeys, client_address
from signaling.protocol import puzzles

A, B, C = b"a", b"b", b"c"


@pytest.mark.parametrize(
    ("steps", "waits"),
    [
        # (source, now) per step; a budget of 2, one token back every 10 s.
        ([(A, 0), (A, 0), (A, 0)], [0, 0, 10]),
        ([(A, 0), (A, 0), (A, 5)], [0, 0, 5]),
        ([(A, 0), (A, 0), (A, 10)], [0, 0, 0]),
        ([(A, 0), (A, 0), (B, 0), (B, 0), (A, 0)], [0, 0, 0, 0, 10]),  # sources apart
        ([(A, 0), (A, 0), (A, 100), (A, 100), (A, 100)], [0, 0, 0, 0, 10]),  # capped at 2
        ([(A, 10), (A, 10), (A, 5)], [0, 0, 10]),  # a clock going back earns nothing
    ],
)
def test_source_buckets_spend_and_refill_per_source(
    steps: list[tuple[bytes, float]], waits: list[float]
) -> None:
    buckets = SourceBuckets(Budget(2, 0.1), max_sources=10)
    assert [buckets.take(source, now) for source, now in steps] == pytest.approx(waits)


def test_source_buckets_forget_the_least_recently_seen_source_first() -> None:
    buckets = SourceBuckets(Budget(1, 0.001), max_sources=2)
    assert buckets.take(A, 0) == 0 and buckets.take(B, 0) == 0
    assert buckets.take(A, 1) > 0  # A is now the most recently seen
    assert buckets.take(C, 1) == 0  # a third source: B is forgotten, not A
    assert len(buckets) == 2
    assert buckets.take(A, 1) > 0
    assert buckets.take(B, 1) == 0  # forgotten: a fresh budget (errs towards letting in)


@pytest.mark.parametrize(
    ("takes", "now", "used"),
    [(0, 0, 0.0), (1, 0, 1.0), (3, 0, 3.0), (3, 10, 2.0), (3, 100, 0.0)],
)
def test_source_buckets_say_how_much_a_source_used(takes: int, now: float, used: float) -> None:
    buckets = SourceBuckets(Budget(5, 0.1), max_sources=10)
    for _ in range(takes):
        buckets.take(A, 0)
    assert buckets.used(A, now) == pytest.approx(used)


def test_rate_meter_settles_at_a_steady_rate_and_forgets_it() -> None:
    meter = RateMeter(half_life_s=10)
    for tick in range(600):  # 2 events a second for 5 minutes
        meter.add(tick / 2)
    assert meter.rate(300) == pytest.approx(2.0, rel=0.1)
    assert meter.rate(310) == pytest.approx(1.0, rel=0.1)  # one half-life later
    assert meter.rate(600) < 0.01


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("2001:db8::1", "2001:db8::ffff:1", True),  # one /64
        ("2001:db8::1", "2001:db8:0:1::1", False),
        ("::ffff:192.0.2.1", "192.0.2.1", True),  # IPv4-mapped is the IPv4 address
        (None, None, True),
    ],
)
def test_source_keys_group_ipv6_by_64_and_never_hold_the_address(
    one: str | None, other: str | None, same: bool
) -> None:
    keys = SourceKeys()
    assert (keys.of(one) == keys.of(other)) is same
    assert b"127.0.0" not in keys.of("127.0.0.1") and len(keys.of("127.0.0.1")) == 12
    assert SourceKeys().of("127.0.0.1") != keys.of("127.0.0.1")  # keyed per process


SETTINGS = puzzle.Settings(base_bits=12, max_bits=18)


@pytest.mark.parametrize(
    ("node_rate", "source_used", "bits"),
    [
        (0.0, 0.0, 0),  # quiet: free
        (1.0, 2.0, 0),  # at the quiet level: still free
        (2.0, 0.0, 14),  # node at twice its quiet rate
        (4.0, 0.0, 16),
        (8.0, 0.0, 18),
        (1000.0, 0.0, 18),  # capped
        (0.0, 4.0, 14),  # one source that used twice its quiet share
        (0.0, 3.0, 14),  # 12 + 2 log2(1.5) = 13.2, rounded up
        (2.0, 8.0, 16),  # the greater pressure counts
    ],
)
def test_difficulty_is_free_when_quiet_and_rises_two_bits_per_doubling(
    node_rate: float, source_used: float, bits: int
) -> None:
    pressure = puzzle.Pressure(
        node_rate=node_rate, node_quiet_rate=1.0, source_used=source_used, source_quiet_used=2.0
    )
    assert puzzle.difficulty(pressure, SETTINGS) == bits


def test_difficulty_is_zero_with_puzzles_turned_off() -> None:
    pressure = puzzle.Pressure(node_rate=99, node_quiet_rate=1, source_used=99, source_quiet_used=1)
    assert puzzle.difficulty(pressure, puzzle.Settings(max_bits=0)) == 0


KEY = b"k" * 32
SCOPE = puzzle.scope_of("alice")


def _solves(challenge: str, solution: str) -> bool:
    return puzzles.zero_bits(hashlib.sha256(f"{challenge}:{solution}".encode()).digest()) >= 8


def _tampered(challenge: str, field: int, value: str) -> str:
    parts = challenge.split(".")
    parts[field] = value
    return ".".join(parts)


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("good", None),
        ("wrong_solution", "The puzzle's solution is wrong."),
        ("other_purpose", "The puzzle was issued for another request."),
        ("other_scope", "The puzzle was issued for another request."),
        ("expired", "The puzzle has expired."),
        ("other_key", "The puzzle is not one this server issued."),
        ("easier_bits", "The puzzle is not one this server issued."),
        ("garbage", "The puzzle is not one this server issued."),
        ("long_solution", "The puzzle's solution is wrong."),
    ],
)
def test_puzzle_check(case: str, problem: str | None) -> None:
    challenge = puzzle.issue(KEY, "recovery", 8, SCOPE, expires_at=1000)
    solution = puzzles.solve(challenge, 8)
    args: dict[str, object] = {
        "key": KEY, "challenge": challenge, "solution": solution, "purpose": "recovery",
        "scope": SCOPE, "now": 999.0,
    }  # fmt: skip
    if case == "wrong_solution":
        args["solution"] = next(s for s in map(str, range(10_000)) if not _solves(challenge, s))
    elif case == "other_purpose":
        args["purpose"] = "signup"
    elif case == "other_scope":
        args["scope"] = puzzle.scope_of("bob")
    elif case == "expired":
        args["now"] = 1001.0
    elif case == "other_key":
        args["key"] = b"x" * 32
    elif case == "easier_bits":
        args["challenge"] = _tampered(challenge, 2, "0")
    elif case == "garbage":
        args["challenge"] = "p1.recovery.x"
    elif case == "long_solution":
        args["solution"] = "0" * 33
    verdict = puzzle.check(**args)  # type: ignore[arg-type]
    assert verdict.problem == problem
    if problem is None:
        assert verdict.bits == 8 and verdict.expires_at == 1000 and verdict.nonce


@pytest.mark.parametrize("bits", [0, 1, 8, 12])
def test_solve_finds_enough_zero_bits(bits: int) -> None:
    challenge = puzzle.issue(KEY, "signup", bits, puzzle.scope_of(None), expires_at=10)
    assert (
        puzzle.check(KEY, challenge, puzzles.solve(challenge, bits), "signup", "-", 0).problem
        is None
    )


@pytest.mark.parametrize(
    ("created_day", "now_day", "young"),
    [
        ("2026-03-10", "2026-03-10", True),
        ("2026-03-09", "2026-03-10", True),
        ("2026-03-08", "2026-03-10", False),
        ("2025-12-31", "2026-01-01", True),
        (None, "2026-01-01", False),
        ("", "2026-01-01", False),
    ],
)
def test_young_means_created_today_or_yesterday(
    created_day: str | None, now_day: str, young: bool
) -> None:
    now = calendar.timegm(time.strptime(now_day, "%Y-%m-%d")) + 3600
    assert is_young(created_day, now) is young


async def test_the_argon2_pool_refuses_work_beyond_its_queue() -> None:
    pool = HashPool(workers=1, queue=1)
    release = threading.Event()
    running = [asyncio.ensure_future(pool.run(release.wait)) for _ in range(2)]
    await asyncio.sleep(0)  # one turn: both tasks have entered the pool (no waiting on time)
    assert pool.pending == 2
    with pytest.raises(Overloaded) as refused:
        await pool.run(release.wait)
    assert refused.value.retry_after_s >= 1
    release.set()
    assert await asyncio.gather(*running) == [True, True]
    assert pool.pending == 0
    pool.close()


PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "client"),
    [
        ("192.0.2.7", None, PROXIES, "192.0.2.7"),
        ("192.0.2.7", "198.51.100.1", PROXIES, "192.0.2.7"),  # not a proxy: header ignored
        ("10.1.2.3", "198.51.100.1", PROXIES, "198.51.100.1"),
        ("10.1.2.3", "6.6.6.6, 198.51.100.1", PROXIES, "198.51.100.1"),  # forged first entry
        ("::1", "2001:db8::5", PROXIES, "2001:db8::5"),
        ("10.1.2.3", "not-an-address", PROXIES, "10.1.2.3"),
        ("10.1.2.3", "198.51.100.1,", PROXIES, "10.1.2.3"),
        ("10.1.2.3", "x" * 10_000 + ",198.51.100.1", PROXIES, "198.51.100.1"),
        ("10.1.2.3", "198.51.100.1", (), "10.1.2.3"),  # no trusted proxies configured
        (None, "198.51.100.1", PROXIES, None),
    ],
)
def test_the_client_address_comes_from_trusted_proxies_only(
    peer: str | None,
    forwarded_for: str | None,
    trusted: tuple,
    client: str | None,  # type: ignore[type-arg]
) -> None:
    assert client_address(peer, forwarded_for, trusted) == client
