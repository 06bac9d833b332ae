"""Which other nodes are alive, from the heartbeats in the registry: a pure judgement.

A node is dead when its heartbeat is older than ``dead_after_s``, but only a node whose own
access to the store is *steady* may say so. After a store outage every heartbeat is stale, its
own included: judging then would declare every node dead, take over calls that are fine and
tell their devices ``peer_lost``. So until this node's heartbeats have been getting through for
``dead_after_s`` (long enough for every live node to have written one too), the nodes it last
saw alive stay alive and nobody is reported dead.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec


class Judgement(msgspec.Struct, frozen=True):
    #: Node -> when it counts as last seen (its heartbeat; ``now`` for one kept on trust).
    alive: dict[str, float]
    #: Nodes newly dead, with their last heartbeat, to report once.
    dead: list[tuple[str, float]]


def judge(
    beats: Iterable[tuple[str, float]],
    *,
    me: str,
    now: float,
    dead_after_s: float,
    steady: bool,
    previous: dict[str, float],
    reported: set[str],
) -> Judgement:
    alive: dict[str, float] = {}
    dead: list[tuple[str, float]] = []
    for node, beat in beats:
        if node == me:
            continue
        if now - beat <= dead_after_s:
            alive[node] = beat
        elif not steady:
            if node in previous:
                alive[node] = now  # seen alive before the outage: trusted until judged
        elif node not in reported:
            dead.append((node, beat))
    return Judgement(alive, dead)


def successors(
    beats: Iterable[tuple[str, float]],
    draining: Iterable[str],
    *,
    me: str,
    now: float,
    fresh_s: float,
) -> list[str]:
    """The nodes a draining node may hand its calls to, in a fixed order: others that beat
    within ``fresh_s`` and are not draining themselves (a call given to one would move again,
    or be lost with it)."""
    leaving = set(draining)
    return sorted(
        node for node, beat in beats if node != me and node not in leaving and now - beat <= fresh_s
    )
