"""Where a new room goes: the least-loaded healthy media node (a pure function, table-tested)."""

from __future__ import annotations

import pytest

from directory.storage import keys
from directory.storage.media_nodes import MediaNodeInfo
from signaling.calls.placement import place

NOW = 1_000.0
STALE = NOW - keys.MEDIA_DEAD_AFTER_S - 0.5


def node(
    name: str,
    participants: int = 0,
    rooms: int = 0,
    *,
    seen_at: float = NOW - 0.5,
    max_rooms: int = 100,
    draining: bool = False,
) -> MediaNodeInfo:
    return MediaNodeInfo(
        id=name, url=f"http://{name}", participants=participants, rooms=rooms,
        seen_at=seen_at, max_rooms=max_rooms, draining=draining,
    )  # fmt: skip


NONE: frozenset[str] = frozenset()
CASES = [
    ("no node at all", [], {}, NONE, None),
    ("the only healthy node", [node("a")], {}, NONE, "a"),
    ("fewer participants wins", [node("a", 9, 1), node("b", 3, 5)], {}, NONE, "b"),
    ("then fewer rooms", [node("a", 4, 3), node("b", 4, 2)], {}, NONE, "b"),
    ("then the smaller id, on every node alike", [node("b"), node("a")], {}, NONE, "a"),
    ("a stale heartbeat is dead", [node("a", seen_at=STALE), node("b", 50)], {}, NONE, "b"),
    ("only stale nodes: none", [node("a", seen_at=STALE)], {}, NONE, None),
    ("a draining node gets no room", [node("a", draining=True), node("b", 8)], {}, NONE, "b"),
    ("a full node gets no room", [node("a", rooms=100), node("b", 8, 3)], {}, NONE, "b"),
    ("no room limit", [node("a", rooms=500, max_rooms=0)], {}, NONE, "a"),
    ("seen dead after its beat", [node("a"), node("b", 5)], {"a": NOW}, NONE, "b"),
    ("beat again after being seen dead", [node("a"), node("b", 5)], {"a": NOW - 2}, NONE, "a"),
    ("a node that just refused is skipped", [node("a"), node("b", 5)], {}, frozenset({"a"}), "b"),
    ("every node refused", [node("a")], {}, frozenset({"a"}), None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("nodes", "dead_at", "avoid", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_place(
    nodes: list[MediaNodeInfo],
    dead_at: dict[str, float],
    avoid: frozenset[str],
    expected: str | None,
) -> None:
    chosen = place(nodes, NOW, dead_at, avoid)
    assert (chosen.id if chosen else None) == expected
