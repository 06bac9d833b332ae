"""Chaos: under the soak's load, ``kill -9`` a signaling node, then a media node, then the store.

The cluster and the load are bench/soak.py's (two signaling nodes, two media nodes, one Valkey
with its append-only file; groups of four cycling 1:1 and group calls). Beside the load:

* a **ledger** writes all along: sign-ups and contacts, through either node, keeping each one
  the server acknowledged (a 201). At the end every acknowledged account must sign in and every
  acknowledged contact be listed: nothing acknowledged is lost;
* **witnesses**, clients put in a known state before each kill, time how long until they are
  told what happened, against the bounds of docs/scaling.md ("Chaos: what a client is told, and
  when"): ``BOUNDS`` below.

Each killed process is started again (same port, same data, same id) and, once the cluster has
recovered, the load must run clean again: no scenario started ``RECOVERY_S`` after the process
is back (and within the next ``CLEAN_S``) fails.

    .venv/bin/python -m bench.chaos --clients 40          # --json for one JSON line
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
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import soak
from bench.cluster_store import wait_valkey
from bench.directory import log
from directory.storage import keys
from directory.storage.connection import COMMAND_TIMEOUT_S
from signaling.calls.records import decode
from signaling.protocol import messages as m
from signaling.sdk.client import Client, ClientError, Profile
from signaling.sdk.line import LineClosed

#: The resume window of the chaos nodes: short, so that ``peer_lost`` comes within the run.
RESUME_WINDOW_S = 5
#: Seconds from the kill (or, for ``store_back``, from Valkey answering again) within which each
#: witness must be told; docs/scaling.md, "Chaos: what a client is told, and when".
#: A survivor's liveness check runs on a timer and its message then crosses the router: on a
#: loaded machine both run late (6.29 s against 6 s once, in CI with a CPU hog).
LATE_S = 1.0
NOTICED_DEAD_S = keys.NODE_DEAD_AFTER_S + keys.NODE_HEARTBEAT_S + LATE_S
BOUNDS = {
    # The kernel closes a killed process's sockets: its devices' connections drop at once.
    "signaling.own_connection_dropped": 1.0,
    "signaling.peer_reconnecting": NOTICED_DEAD_S,
    "signaling.peer_lost": max(RESUME_WINDOW_S, NOTICED_DEAD_S) + keys.NODE_HEARTBEAT_S,
    "media.media_failed": keys.MEDIA_DEAD_AFTER_S + 2.0,
    "store.rest_unavailable": COMMAND_TIMEOUT_S,
    "store.ws_unavailable": COMMAND_TIMEOUT_S,
    "store.rest_back": 5.0,
}
#: After a killed process is back, the load has this long to settle before it must run clean.
RECOVERY_S = 10.0
#: How long the load must then run without an error.
CLEAN_S = 10.0
STORE_DOWN_S = 3.0
#: Between two writes of the ledger: a steady trickle, not a load of its own.
LEDGER_PAUSE_S = 0.2


# --- the ledger: what the server acknowledged ------------------------------------------------


@dataclass
class Ledger:
    accounts: list[Profile] = field(default_factory=list)
    contacts: list[tuple[Profile, str]] = field(default_factory=list)
    refused: int = 0

    async def write(self, urls: list[str], stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            url = urls[n % len(urls)]
            n += 1
            try:
                async with Client(url, timeout_s=COMMAND_TIMEOUT_S + 2) as client:
                    _, profile = await client.signup(f"ledger{os.urandom(5).hex()}")
                    self.accounts.append(profile)
                    if len(self.accounts) > 1:
                        other = random.choice(self.accounts[:-1])
                        contact = await client.add_contact(other.handle)
                        self.contacts.append((profile, contact.account_id))
            except (ClientError, OSError, TimeoutError):
                self.refused += 1  # not acknowledged: the server may or may not have it
            await asyncio.sleep(LEDGER_PAUSE_S)

    async def lost(self, url: str) -> dict[str, int]:
        """What was acknowledged and is not there now."""
        accounts = contacts = 0
        for profile in self.accounts:
            async with Client(url, profile) as client:
                try:
                    await client.sign_in()
                except ClientError:
                    accounts += 1
        owners: dict[str, set[str]] = {}
        for profile, contact_id in self.contacts:
            if profile.account_id not in owners:
                async with Client(url, profile) as client:
                    owners[profile.account_id] = {c.account_id for c in await client.contacts()}
            contacts += contact_id not in owners[profile.account_id]
        return {"accounts": accounts, "contacts": contacts}


# --- witnesses ---------------------------------------------------------------------------------


async def told(
    person: soak.Person, wanted: Callable[[m.ServerMessage], bool], t0: float, limit: float
) -> float | None:
    """Seconds from ``t0`` until ``person`` gets a ``wanted`` message (or its connection drops,
    when ``wanted`` is None-safe: see ``dropped``); None if not within ``limit``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, t0 + limit - time.monotonic())):
            while True:
                if wanted(await person.line.receive()):
                    return time.monotonic() - t0
    return None


async def dropped(person: soak.Person, t0: float, limit: float) -> float | None:
    try:
        await told(person, lambda _: False, t0, limit)
    except LineClosed:
        return time.monotonic() - t0
    return None


async def connected_call(a: soak.Person, b: soak.Person) -> str:
    call_id = await soak._ring(a, b)
    await b.line.send(m.Accept(call_id=call_id))
    await asyncio.gather(
        soak.until(a, soak._of(m.Accepted, call_id)), soak.until(b, soak._of(m.Accepted, call_id))
    )
    return call_id


def _ended(call_id: str, reason: str) -> Callable[[m.ServerMessage], bool]:
    return lambda msg: isinstance(msg, m.Ended) and msg.call_id == call_id and msg.reason == reason


def _is(kind: type[m.ServerMessage], call_id: str) -> Callable[[m.ServerMessage], bool]:
    return lambda msg: isinstance(msg, kind) and getattr(msg, "call_id", None) == call_id


# --- the three kills ----------------------------------------------------------------------------


async def kill_signaling(cluster: soak.Cluster, w: list[soak.Person]) -> dict[str, list[Any]]:
    """Witness pairs: x on the surviving node, y on the killed one, in a connected call (half
    owned by each node, so that takeover is exercised too)."""
    victim = cluster.nodes[1]
    pairs = [(w[i], w[i + 1]) for i in range(0, len(w), 2)]
    calls = [await connected_call(*((x, y) if i % 2 else (y, x))) for i, (x, y) in enumerate(pairs)]
    t0 = time.monotonic()
    victim.kill()
    limit = max(BOUNDS.values()) + 2

    async def watch(x: soak.Person, y: soak.Person, call_id: str) -> tuple[Any, Any, Any]:
        drop = asyncio.create_task(dropped(y, t0, limit))
        reconnecting = await told(x, _is(m.PeerReconnecting, call_id), t0, limit)
        lost = await told(x, _ended(call_id, "peer_lost"), t0, limit)
        return await drop, reconnecting, lost

    seen = await asyncio.gather(*(watch(x, y, c) for (x, y), c in zip(pairs, calls, strict=True)))
    victim.start()
    await cluster.ready(victim)
    for _, y in pairs:
        await y.line.open()
    return {
        "signaling.own_connection_dropped": [s[0] for s in seen],
        "signaling.peer_reconnecting": [s[1] for s in seen],
        "signaling.peer_lost": [s[2] for s in seen],
    }


async def kill_media(cluster: soak.Cluster, w: list[soak.Person]) -> dict[str, list[Any]]:
    """Witness group calls (host x invites y, who joins); the media node of the first one's room
    is killed: the members of every witness room there must hear ``media_failed``."""
    pairs = [(w[i], w[i + 1]) for i in range(0, len(w), 2)]
    calls = []
    for x, y in pairs:
        await x.line.send(m.GroupInvite(handles=[y.handle]))
        call_id = str((await soak.until(x, soak._of(m.Joined))).call_id)
        await soak.until(y, soak._of(m.Incoming, call_id))
        await y.line.send(m.Accept(call_id=call_id))
        await soak.until(y, soak._of(m.Joined, call_id))
        calls.append(call_id)
    rooms = [await _media_of(cluster, c) for c in calls]
    victim = next(p for p in cluster.media if p.name == rooms[0])
    t0 = time.monotonic()
    victim.kill()
    limit = BOUNDS["media.media_failed"] + 2
    on_victim = [
        (p, c) for p, c, room in zip(pairs, calls, rooms, strict=True) if room == victim.name
    ]
    seen = await asyncio.gather(
        *(
            told(who, _ended(c, "media_failed"), t0, limit)
            for (x, y), c in on_victim
            for who in (x, y)
        )
    )
    for (x, y), call_id, room in zip(pairs, calls, rooms, strict=True):
        if room != victim.name:
            for who in (x, y):
                await who.line.send(m.Hangup(call_id=call_id))
    victim.start()
    await soak.media_registered(cluster.store, {victim.name})
    return {"media.media_failed": list(seen), "media.rooms_on_killed_node": [len(on_victim)]}


async def _media_of(cluster: soak.Cluster, call_id: str) -> str:
    """The media node of a group call's room, from its call record (written once it opened)."""
    async with asyncio.timeout(10):
        while True:
            state = await cluster.store.hget(keys.call_record(call_id), "state")
            if state is not None:
                media = decode(state.decode()).media
                if media is not None:
                    return media
            await asyncio.sleep(0.05)  # written by a node, another process: polled


async def kill_store(cluster: soak.Cluster, w: list[soak.Person]) -> dict[str, list[Any]]:
    """Witnesses: x asks over REST, y invites over its WebSocket, while the store is down; then
    x asks until it is answered again once Valkey is back."""
    x, y = w[0], w[1]
    t0 = time.monotonic()
    cluster.valkey.kill()

    async def rest_unavailable() -> float | None:
        try:
            await x.client.whois(y.handle)
        except ClientError as exc:
            return time.monotonic() - t0 if exc.code == "unavailable" else None
        return None

    rest = await rest_unavailable()
    await y.line.send(m.Invite(handle=x.handle))
    ws = await told(y, lambda msg: isinstance(msg, m.Error) and msg.code == "unavailable", t0,
                    BOUNDS["store.ws_unavailable"] + 2)  # fmt: skip
    await asyncio.sleep(max(0.0, t0 + STORE_DOWN_S - time.monotonic()))
    cluster.valkey.start()
    await wait_valkey(cluster.valkey.url)
    back_at = time.monotonic()
    back = None
    while back is None and time.monotonic() - back_at < BOUNDS["store.rest_back"] + 5:
        with contextlib.suppress(ClientError):
            await x.client.whois(y.handle)
            back = time.monotonic() - back_at
        await asyncio.sleep(0.1)
    return {
        "store.rest_unavailable": [rest],
        "store.ws_unavailable": [ws],
        "store.rest_back": [back],
    }


KILLS = {"signaling": kill_signaling, "media": kill_media, "store": kill_store}


# --- the run -----------------------------------------------------------------------------------


def verdict(report: dict[str, Any]) -> list[str]:
    """Everything that broke the rules: a witness not told in time, a lost write, a load that
    did not run clean again."""
    out = []
    for name, delays in report["told_s"].items():
        bound = BOUNDS.get(name)
        if bound is None:
            continue
        for delay in delays:
            if delay is None or delay > bound:
                out.append(f"{name}: {delay} s (bound {bound:g} s)")
    if not report["told_s"].get("media.rooms_on_killed_node", [1])[0]:
        out.append("media: no witness room was on the killed node")
    out += [f"lost {kind}: {n}" for kind, n in report["lost"].items() if n]
    out += [f"after {phase}: {errors}" for phase, errors in report["errors_when_clean"].items()
            if errors]  # fmt: skip
    return out


async def chaos(args: argparse.Namespace, cluster: soak.Cluster) -> dict[str, Any]:
    people = await soak._people(cluster, args.clients + 2 * args.witnesses)
    load, witnesses = people[: args.clients], people[args.clients :]
    # Witness i is on node i % 2 (people alternate): order them (survivor's, victim's) pairs.
    w = [p for pair in zip(witnesses[0::2], witnesses[1::2], strict=True) for p in pair]
    stop = asyncio.Event()
    tally = soak.Tally()
    groups = [load[i : i + 4] for i in range(0, len(load) - 3, 4)]
    players = [asyncio.create_task(soak.play(g, None, stop, tally, args.pause)) for g in groups]
    ledger = Ledger()
    writer = asyncio.create_task(ledger.write([n.url for n in cluster.nodes], stop))
    told_s: dict[str, list[Any]] = {}
    clean: dict[str, dict[str, int]] = {}
    ran_again: dict[str, int] = {}
    await asyncio.sleep(args.warmup)
    for phase in args.kills:
        log(f"kill -9: {phase}")
        told_s |= await KILLS[phase](cluster, w)
        await asyncio.sleep(RECOVERY_S)
        recovered = time.monotonic()
        done = sum(tally.done.values())
        await asyncio.sleep(CLEAN_S)
        # Scenarios that started before may still fail within (a step waits up to 15 s).
        clean[phase] = tally.failed_since(recovered)
        ran_again[phase] = sum(tally.done.values()) - done
    stop.set()
    await asyncio.gather(*players, writer)
    lost = await ledger.lost(cluster.nodes[0].url)
    for person in people:
        await person.line.close()
        await person.client.close()
    report = {
        "bench": "chaos",
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "bounds_s": BOUNDS,
        "told_s": {k: [None if v is None else round(v, 2) for v in vs] for k, vs in told_s.items()},
        "acknowledged": {"accounts": len(ledger.accounts), "contacts": len(ledger.contacts)},
        "lost": lost,
        "unacknowledged_writes": ledger.refused,
        "scenarios": dict(tally.done),
        "errors_when_clean": clean,
        "scenarios_when_clean": ran_again,
        "errors": dict(tally.errors),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    report["broken"] = verdict(report)
    return report


async def run(args: argparse.Namespace) -> dict[str, Any]:
    soak.raise_open_files(8 * args.clients + 1024)
    settings = {"CALLBOOK_RESUME_WINDOW_S": str(RESUME_WINDOW_S)}
    with tempfile.TemporaryDirectory(prefix="cbchaos-") as tmp:
        async with soak.running_cluster(Path(tmp), settings) as cluster:
            return await chaos(args, cluster)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    add = parser.add_argument
    add("--clients", type=int, default=40, help="clients of the load, a multiple of 4 (40)")
    add("--witnesses", type=int, default=4, help="witness pairs for each kill (4)")
    add("--pause", type=float, default=1.0, help="mean seconds a group waits between calls (1)")
    add("--warmup", type=float, default=5.0, help="seconds of load before the first kill (5)")
    add("--kills", default="signaling,media,store", help="in this order (signaling,media,store)")
    add("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    args.kills = [k for k in args.kills.split(",") if k]
    if args.clients < 4 or args.clients % 4 or any(k not in KILLS for k in args.kills):
        parser.error("--clients must be a multiple of 4; --kills takes signaling, media, store")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    report = asyncio.run(run(args))
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 1 if report["broken"] else 0


if __name__ == "__main__":
    sys.exit(main())
