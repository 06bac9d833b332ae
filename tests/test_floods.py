"""One client must not starve the rest (issue 11, findings 5 and 6), on a real server, with
clients connecting from different loopback addresses (127.0.0.x) as different sources."""

from __future__ import annotations

import asyncio
import ipaddress
import threading

import aiohttp
import msgspec
import pytest

from signaling.appkeys import STORE
from signaling.limits import Budget
from signaling.protocol.bodies import (
    DeviceEnrollment,
    Puzzle,
    PuzzleProof,
    PuzzleRequest,
    SignupRequest,
)
from signaling.puzzle import Settings
from signaling.sdk.client import Client, ClientError, new_device_key
from tests.conftest import MakeServer, Server

WRONG_CODE = "aaaa-bbbb-cccc-dddd-eeee-ffff-gggg-hhhh"
#: Cheap puzzles, so the tests solve them in milliseconds.
CHEAP = Settings(base_bits=4, max_bits=8)


async def _codes(attempts: list) -> list[str]:  # type: ignore[type-arg]
    codes = []
    for attempt in attempts:
        try:
            await attempt
            codes.append("ok")
        except ClientError as error:
            codes.append(error.code)
    return codes


async def test_one_source_flooding_sign_ups_leaves_room_for_everyone_else(
    make_server: MakeServer,
) -> None:
    # The node-wide budget (10) is larger than one source's (4): the flood spends its own.
    server = await make_server(
        source_signups=Budget(4, 0.001), enroll_burst=10, enroll_rate_per_s=0.001
    )
    flood = await _codes([server.client().signup(f"flood{i}") for i in range(14)])
    assert flood == ["ok"] * 4 + ["rate_limited"] * 10
    legit = await _codes([server.client(f"127.0.0.{2 + i}").signup(f"person{i}") for i in range(5)])
    assert legit == ["ok"] * 5


async def test_one_source_flooding_sign_in_challenges_leaves_room_for_everyone_else(
    make_server: MakeServer,
) -> None:
    server = await make_server(
        source_challenges=Budget(5, 0.001), signin_burst=8, signin_rate_per_s=0.001
    )
    alice = await server.signup("alice", local_address="127.0.0.2")
    flooder = server.client()
    flood = await _codes(
        [flooder.request("POST", "/v1/auth/challenge", auth=False) for _ in range(12)]
    )
    assert flood == ["ok"] * 5 + ["rate_limited"] * 7
    assert (await alice.sign_in()).access_token


async def test_a_strangers_guesses_never_lock_the_owner_out(make_server: MakeServer) -> None:
    server = await make_server(
        recovery_burst=3, recovery_refill_per_s=0.001, puzzle=CHEAP,
        source_recoveries=Budget(20, 0.001),
    )  # fmt: skip
    alice = await server.signup("alice", local_address="127.0.0.2")
    assert alice.profile is not None and alice.profile.recovery_code
    stranger = server.client("127.0.0.3")
    guesses = await _codes([stranger.recover("alice", WRONG_CODE) for _ in range(8)])
    assert guesses == ["bad_recovery_code"] * 8
    # The handle's budget is spent: the owner pays the heaviest puzzle, and gets in.
    owner = server.client("127.0.0.4")
    done, _ = await owner.recover("alice", alice.profile.recovery_code)
    assert done.account.handle == "alice"


async def test_a_spent_handle_budget_asks_for_the_heaviest_puzzle(
    make_server: MakeServer,
) -> None:
    server = await make_server(recovery_burst=2, recovery_refill_per_s=0.001, puzzle=CHEAP)
    await server.signup("alice")
    guesser = server.client("127.0.0.2")
    asked = []
    for _ in range(4):
        given = await guesser.request(
            "POST", "/v1/puzzles", Puzzle, PuzzleRequest(purpose="recovery", handle="alice"),
            auth=False,
        )  # fmt: skip
        asked.append(given.bits)
        with pytest.raises(ClientError):
            await guesser.recover("alice", WRONG_CODE)
    assert asked == [0, 0, CHEAP.max_bits, CHEAP.max_bits]


async def test_recovery_guesses_spend_the_sources_budget_whatever_the_handle(
    make_server: MakeServer,
) -> None:
    server = await make_server(source_recoveries=Budget(4, 0.001))
    await server.signup("alice")
    guesser = server.client("127.0.0.2")
    handles = ["alice", "nobody1", "x", "nobody2", "nobody3", "alice"]
    codes = await _codes([guesser.recover(h, WRONG_CODE) for h in handles])
    assert codes == ["bad_recovery_code"] * 4 + ["rate_limited"] * 2
    # Another source is not affected.
    other = await _codes([server.client("127.0.0.3").recover("nobody4", WRONG_CODE)])
    assert other == ["bad_recovery_code"]


async def _raw_signup(
    server: Server, handle: str, source: str, proof: PuzzleProof | None = None
) -> tuple[int, str]:
    body = SignupRequest(
        handle=handle,
        device=DeviceEnrollment(name="raw", public_key=new_device_key()[1]),
        puzzle=proof,
    )
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(
            f"{server.url}/v1/accounts",
            data=msgspec.json.encode(body),
            headers={"Content-Type": "application/json"},
        ) as response,
    ):
        answer = await response.json(content_type=None)
        return response.status, answer.get("code", "ok")


async def test_a_source_signing_up_again_and_again_must_solve_puzzles(
    make_server: MakeServer,
) -> None:
    server = await make_server(
        source_signups=Budget(100, 0.001), puzzle_source_quiet=1.0, puzzle=CHEAP
    )
    # A person's first sign-up is free; the next ones from the same source cost work.
    assert await _raw_signup(server, "first", "127.0.0.2") == (201, "ok")
    assert await _raw_signup(server, "second", "127.0.0.2") == (428, "puzzle_required")
    client = Client(server.url, local_address="127.0.0.2")
    proof = await client.solve_puzzle("signup", None)
    assert await _raw_signup(server, "third", "127.0.0.2", proof) == (201, "ok")
    # A solution counts once.
    assert await _raw_signup(server, "fourth", "127.0.0.2", proof) == (428, "puzzle_required")
    # The client solves them by itself; other sources still sign up for free.
    await client.signup("fifth")
    await client.close()
    assert await _raw_signup(server, "elsewhere", "127.0.0.3") == (201, "ok")


async def test_many_sign_ups_on_the_node_raise_the_price_for_every_source(
    make_server: MakeServer,
) -> None:
    server = await make_server(puzzle_quiet_per_s=0.05, puzzle=CHEAP)
    newcomer = server.client("127.0.0.9")
    ask = PuzzleRequest(purpose="signup")
    quiet = await newcomer.request("POST", "/v1/puzzles", Puzzle, ask, auth=False)
    for i in range(6):
        await server.signup(f"person{i}", local_address=f"127.0.0.{2 + i}")
    busy = await newcomer.request("POST", "/v1/puzzles", Puzzle, ask, auth=False)
    assert (quiet.bits, busy.bits) == (0, CHEAP.max_bits)


async def _challenge(server: Server, source: str, forwarded_for: str) -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    headers = {"X-Forwarded-For": forwarded_for}
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(f"{server.url}/v1/auth/challenge", headers=headers) as response,
    ):
        return response.status


async def test_behind_a_trusted_proxy_each_forwarded_client_is_a_source(
    make_server: MakeServer,
) -> None:
    server = await make_server(
        source_challenges=Budget(2, 0.001),
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
    )
    first = [await _challenge(server, "127.0.0.1", "198.51.100.1") for _ in range(3)]
    assert first == [200, 200, 429]
    assert await _challenge(server, "127.0.0.1", "198.51.100.2") == 200
    # From a peer that is not a trusted proxy the header is the client's word: ignored.
    untrusted = [await _challenge(server, "127.0.0.2", f"203.0.113.{i}") for i in range(3)]
    assert untrusted == [200, 200, 429]


async def test_impossible_handles_draw_on_a_handle_budget_like_any_other(
    make_server: MakeServer,
) -> None:
    # With puzzles off a spent handle budget refuses, which makes the budget visible.
    server = await make_server(recovery_burst=2, puzzle=Settings(max_bits=0))
    guesser = server.client("127.0.0.2")
    for handle in ("x", "nobody_here"):  # breaks the handle rules; follows them, unheld
        codes = await _codes([guesser.recover(handle, WRONG_CODE) for _ in range(3)])
        assert codes == ["bad_recovery_code", "bad_recovery_code", "rate_limited"], handle


async def test_argon2_work_beyond_the_queue_is_refused_at_once(make_server: MakeServer) -> None:
    server = await make_server(argon2_workers=1, argon2_queue=0)
    pool = server.app[STORE].hashing
    release = threading.Event()
    busy = asyncio.ensure_future(pool.run(release.wait))  # the one worker is taken
    await asyncio.sleep(0)
    try:
        status, code = await _raw_signup(server, "alice", "127.0.0.2")
        assert (status, code) == (503, "overloaded")
    finally:
        release.set()
        await busy
    assert await _raw_signup(server, "alice", "127.0.0.2") == (201, "ok")
