"""Which shared screens ended on the SFU without an ``unpublish`` (pure: no I/O).

A sharer's screen has its own connection. When that connection dies by itself (the tab closed,
the network went, its ICE or DTLS failed) the SFU stops forwarding the screen, and its room
stats no longer list the participant as publishing one; nobody sends ``unpublish``. Signaling
compares what it believes is shared with those stats, each poll.

A node that adopts a room (a call taken over from another signaling node) learns from the same
stats who shares a screen there.

A stats answer may have been computed before a share started, or between one share's end and
the next: each share therefore carries a serial, and only a share that was already known
before the stats were asked for, and is still the same share afterwards, can be declared gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def screens_gone(
    before: Mapping[str, int], now: Mapping[str, int], stats: Mapping[str, Any]
) -> list[str]:
    """The participants whose share ``before`` (participant -> share serial, as known when the
    stats were asked for) is still ``now``'s share but which ``stats`` (the SFU's room stats)
    lists as not publishing a screen. A participant the stats do not list, or whose media
    failed, is left to the leave and ``media_failed`` paths."""
    gone = []
    for entry in stats.get("participants", ()):
        name = str(entry.get("participant"))
        if name not in before or now.get(name) != before[name] or entry.get("media_failed"):
            continue
        publishing = entry.get("publishing")
        if isinstance(publishing, Mapping) and publishing.get("screen") is False:
            gone.append(name)
    return sorted(gone)


def screens_shared(stats: Mapping[str, Any]) -> list[str]:
    """The participants ``stats`` (the SFU's room stats) lists as publishing a screen: what a
    node that adopts a room learns, since the call's record does not keep it."""
    shared = []
    for entry in stats.get("participants", ()):
        publishing = entry.get("publishing")
        if isinstance(publishing, Mapping) and publishing.get("screen") is True:
            shared.append(str(entry.get("participant")))
    return sorted(shared)
