"""Where a new room goes: the least-loaded healthy media node (pure; docs/scaling.md).

Load is participants first (forwarding work grows with them), then rooms, then the node id so
that ties break the same way on every signaling node. A room lives on one node for its life.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from directory.storage.media_nodes import MediaNodeInfo


def usable(node: MediaNodeInfo, now: float, dead_at: Mapping[str, float]) -> bool:
    """Heart-beating, not shutting down, not full, and not seen dead since its last beat."""
    if not node.healthy(now) or node.draining:
        return False
    if node.max_rooms and node.rooms >= node.max_rooms:
        return False
    return node.seen_at > dead_at.get(node.id, float("-inf"))


def place(
    nodes: Iterable[MediaNodeInfo],
    now: float,
    dead_at: Mapping[str, float] | None = None,
    avoid: frozenset[str] = frozenset(),
) -> MediaNodeInfo | None:
    """The node for a new room, or None when no node can take one."""
    dead = dead_at or {}
    candidates = [n for n in nodes if n.id not in avoid and usable(n, now, dead)]
    return min(candidates, key=lambda n: (n.participants, n.rooms, n.id), default=None)
