"""The load generator of bench/cluster.py: bot pairs making whole 1:1 call set-ups.

Runs in processes of its own (``spawn``), so the bots' CPU is measured apart from the servers'.
Each pair names the node every one of its devices connects to, which is how the bench puts
callers and callees on the same node or on different ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from bench.signaling import (
    MAX_EXAMPLES,
    Bot,
    CycleFailed,
    RunStats,
    _as_dict,
    _from_dict,
    _new_loop,
    client_session,
)
from signaling.protocol import messages as m

#: One ICE candidate each way is rarely all; two per side is a short trickle on loopback.
ICE_PER_SIDE = 2
#: About the size of a browser's audio+video offer, so each PUBLISH carries a realistic payload.
SDP_BYTES = 1800


def _sdp(kind: str) -> str:
    head = f"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=bench-{kind}\r\nt=0 0\r\n"
    return head + "a=x-pad:" + "0" * (SDP_BYTES - len(head) - 10) + "\r\n"


OFFER, ANSWER = _sdp("offer"), _sdp("answer")


def _candidate(n: int) -> str:
    return f"candidate:{n} 1 udp 2130706431 127.0.0.1 {50000 + n} typ host"


@dataclass(frozen=True)
class Device:
    """Where one bot connects and with what."""

    ws_url: str
    token: str


@dataclass(frozen=True)
class PairSpec:
    """Callers take turns inviting callees (by handle); the turns spread the per-account invite
    limit (1/s) and the per-connection message limit (20/s) over several accounts."""

    index: int
    callers: list[Device]
    callees: list[tuple[str, Device]]  # handle, device


class Pair:
    def __init__(self, spec: PairSpec, callers: list[Bot], callees: list[tuple[str, Bot]]) -> None:
        self.index = spec.index
        self.callers = callers
        self.callees = callees
        self.turn = 0

    async def call_once(self, stats: RunStats) -> None:
        caller = self.callers[self.turn % len(self.callers)]
        handle, callee = self.callees[self.turn % len(self.callees)]
        self.turn += 1
        stats.stray += caller.drain() + callee.drain()
        call_id: str | None = None
        try:
            t0 = time.perf_counter()
            await caller.send(m.Invite(handle=handle))
            _, ringing = await caller.expect(m.Ringing)
            call_id = ringing.call_id
            rang_at, incoming = await callee.expect(m.Incoming)
            if incoming.call_id != call_id:
                raise CycleFailed("wrong_call")
            await _connect(call_id, caller, callee)
            await caller.send(m.Hangup(call_id=call_id))
            await caller.expect(m.Ended)
            await callee.expect(m.Ended)
        except CycleFailed as failed:
            stats.failures[failed.code] += 1
            left = await _recover(caller, callee, call_id)
            if len(stats.examples) < MAX_EXAMPLES:
                stats.examples.append(f"pair {self.index} call {call_id}: {failed.code}; {left}")
            return
        stats.calls += 1
        stats.ring_s.append(rang_at - t0)
        stats.cycle_s.append(time.perf_counter() - t0)

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


async def _connect(call_id: str, caller: Bot, callee: Bot) -> None:
    """accept -> accepted (both) -> offer/answer -> a short ICE trickle each way."""
    await callee.send(m.Accept(call_id=call_id))
    await callee.expect(m.Accepted)  # first: a refused accept answers the callee
    await caller.expect(m.Accepted)
    await caller.send(m.Description(call_id=call_id, kind="offer", sdp=OFFER))
    await callee.expect(m.PeerDescription)
    await callee.send(m.Description(call_id=call_id, kind="answer", sdp=ANSWER))
    await caller.expect(m.PeerDescription)
    for n in range(ICE_PER_SIDE):
        await caller.send(m.Ice(call_id=call_id, candidate=_candidate(n), sdp_mline_index=0))
        await callee.send(m.Ice(call_id=call_id, candidate=_candidate(n), sdp_mline_index=0))
    for _ in range(ICE_PER_SIDE):
        await callee.expect(m.PeerIce)
        await caller.expect(m.PeerIce)


async def _recover(caller: Bot, callee: Bot, call_id: str | None) -> str:
    """End whatever is left of a failed call; returns the messages it leaves behind."""
    if call_id is not None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await caller.send(m.Hangup(call_id=call_id))
    await asyncio.sleep(0.5)
    return f"caller got {caller.left()}, callee got {callee.left()}"


async def _connect_pairs(session: aiohttp.ClientSession, specs: list[PairSpec]) -> list[Pair]:
    pairs = []
    for spec in specs:
        callers = [await Bot.connect(session, d.ws_url, d.token) for d in spec.callers]
        callees = [(h, await Bot.connect(session, d.ws_url, d.token)) for h, d in spec.callees]
        pairs.append(Pair(spec, callers, callees))
    return pairs


async def _timed(pairs: list[Pair], duration_s: float, total: int, rate: float | None) -> RunStats:
    start = time.perf_counter()
    period = total / rate if rate else None
    slot = 1 / rate if rate else 0.0
    results = await asyncio.gather(
        *(p.run(start + duration_s, period, start + p.index * slot) for p in pairs)
    )
    stats = RunStats()
    for result in results:
        stats.merge(result)
    stats.elapsed_s = time.perf_counter() - start
    return stats


async def _worker_main(conn: Connection, specs: list[PairSpec]) -> None:
    loop = asyncio.get_running_loop()
    async with client_session() as session:
        try:
            pairs = await _connect_pairs(session, specs)
        except (CycleFailed, aiohttp.ClientError, OSError) as exc:
            conn.send(("error", f"connecting the bots failed: {exc!r}"))
            return
        bots = [b for p in pairs for b in (*p.callers, *(c for _, c in p.callees))]
        conn.send(("ready", len(bots)))
        while (command := await loop.run_in_executor(None, conn.recv))[0] == "run":
            _, duration_s, total_pairs, rate_per_s = command
            stats = await _timed(pairs, duration_s, total_pairs, rate_per_s)
            conn.send(("done", _as_dict(stats)))
        await asyncio.gather(*(bot.close() for bot in bots), return_exceptions=True)
    conn.send(("closed", len(bots)))


def worker_entry(conn: Connection, specs: list[PairSpec]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        with asyncio.Runner(loop_factory=lambda: _new_loop(True)) as runner:
            runner.run(_worker_main(conn, specs))
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", repr(exc)))
    finally:
        conn.close()


class LoadGenerators:
    """``procs`` worker processes sharing the pairs; the parent only coordinates."""

    def __init__(self, specs: list[PairSpec], procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.total_pairs = len(specs)
        self.workers: list[tuple[Any, Connection]] = []
        for n in range(procs):
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=worker_entry,
                args=(child, specs[n::procs]),
                name=f"bench-cluster-{n}",
                daemon=True,
            )
            process.start()
            child.close()
            self.workers.append((process, parent))

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, _ in self.workers]

    async def _receive(self, conn: Connection, timeout_s: float) -> Any:
        def wait() -> Any:
            if not conn.poll(timeout_s):
                raise RuntimeError(f"a load generator did not answer within {timeout_s:.0f} s")
            return conn.recv()

        try:
            reply = await asyncio.to_thread(wait)
        except EOFError as exc:
            raise RuntimeError("a load generator exited") from exc
        if reply[0] == "error":
            raise RuntimeError(f"load generator: {reply[1]}")
        return reply

    async def ready(self) -> int:
        devices = 0
        for _, conn in self.workers:
            devices += int((await self._receive(conn, 300))[1])
        return devices

    async def run(self, duration_s: float, rate_per_s: float | None) -> RunStats:
        for _, conn in self.workers:
            conn.send(("run", duration_s, self.total_pairs, rate_per_s))
        stats = RunStats()
        for _, conn in self.workers:
            reply = await self._receive(conn, duration_s + 60)
            stats.merge(_from_dict(reply[1]))
        return stats

    async def stop(self) -> None:
        """Close every bot's socket, waiting for it, so the next set of bots starts clean."""
        for process, conn in self.workers:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
            # After an interrupt the pipe may hold half a message: whatever it says, go on.
            with contextlib.suppress(Exception):
                await self._receive(conn, 30)
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
