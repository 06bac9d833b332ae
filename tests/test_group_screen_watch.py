"""The pure core that tells which shared screens ended on the SFU without ``unpublish``
(signaling/calls/screen_watch.py): only a share known before the stats were asked for, still
the same share after, and listed by the SFU as not publishing a screen."""

from __future__ import annotations

from typing import Any

import pytest

from signaling.calls.screen_watch import screens_gone, screens_shared


def stats(*entries: tuple[str, bool | None, bool]) -> dict[str, Any]:
    """Room stats with (participant, publishing a screen (None: not said), media failed)."""
    participants = []
    for name, screen, failed in entries:
        publishing: dict[str, bool] = {"audio": True, "video": True}
        if screen is not None:
            publishing["screen"] = screen
        participants.append({"participant": name, "publishing": publishing, "media_failed": failed})
    return {"participants": participants}


@pytest.mark.parametrize(
    ("before", "now", "room", "gone"),
    [
        # the SFU no longer has the screen: gone
        ({"a": 1}, {"a": 1}, stats(("a", False, False), ("b", False, False)), ["a"]),
        # still shared
        ({"a": 1}, {"a": 1}, stats(("a", True, False)), []),
        # a share that started after the stats were asked for (they may predate it)
        ({}, {"a": 1}, stats(("a", False, False)), []),
        # the share was unpublished and shared again meanwhile: another share, left alone
        ({"a": 1}, {"a": 2}, stats(("a", False, False)), []),
        # already ended here (unpublish, leave) while the stats were on their way
        ({"a": 1}, {}, stats(("a", False, False)), []),
        # the participant's media failed: the media_failed path removes it with its screen
        ({"a": 1}, {"a": 1}, stats(("a", False, True)), []),
        # not listed by the SFU (leaving), or stats that say nothing of screens (a lost room)
        ({"a": 1}, {"a": 1}, stats(("b", False, False)), []),
        ({"a": 1}, {"a": 1}, stats(("a", None, False)), []),
        ({"a": 1, "b": 3}, {"a": 1, "b": 3}, stats(("b", False, False), ("a", False, False)),
         ["a", "b"]),
    ],
)  # fmt: skip
def test_screens_gone(
    before: dict[str, int], now: dict[str, int], room: dict[str, Any], gone: list[str]
) -> None:
    assert screens_gone(before, now, room) == gone


def test_hostile_stats_end_nothing() -> None:
    hostile: list[dict[str, Any]] = [
        {}, {"participants": []}, {"participants": [{"publishing": None}]},
        {"participants": [{"participant": "a", "publishing": "screen"}]},
    ]  # fmt: skip
    for room in hostile:
        assert screens_gone({"a": 1}, {"a": 1}, room) == []


def test_an_adopting_node_learns_who_shares() -> None:
    room = stats(("b", True, False), ("a", True, True), ("c", False, False), ("d", None, False))
    assert screens_shared(room) == ["a", "b"]
    assert screens_shared({}) == []
    assert screens_shared({"participants": [{"participant": "a", "publishing": 1}]}) == []
