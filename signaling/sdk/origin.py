"""The ``o=`` line of the descriptions a device sends: one session id per peer connection.

Protocol 11.5.10: an offer whose session id differs from the one the other device answered
comes from a new connection. aiortc writes the current NTP second as the session id of every
description, so two connections made within one second look like one, and the other device
applies the second one's offer to the connection it made for the first (Chromium: "RTP
extension ID reassignment not supported"). ``Origins`` gives each connection a random id and
versions its descriptions; a copy sent again keeps its version, so it can be told for a copy.
"""

from __future__ import annotations

import re
import secrets
import weakref
from dataclasses import dataclass

from aiortc import RTCPeerConnection

_ORIGIN = re.compile(r"^(o=\S+ )\S+ \S+ ", re.MULTILINE)


@dataclass(slots=True)
class _Origin:
    session_id: int
    version: int = 0
    sdp: str = ""


class Origins:
    """Each peer connection's session id and the version of its latest description."""

    def __init__(self) -> None:
        self._by_connection: weakref.WeakKeyDictionary[RTCPeerConnection, _Origin] = (
            weakref.WeakKeyDictionary()
        )

    def stamp(self, pc: RTCPeerConnection, sdp: str) -> str:
        """``sdp``, a description of ``pc``, with ``pc``'s own ``o=`` session id and version."""
        origin = self._by_connection.setdefault(pc, _Origin(secrets.randbits(62)))
        if sdp != origin.sdp:
            origin.sdp, origin.version = sdp, origin.version + 1
        return with_origin(sdp, origin.session_id, origin.version)


def with_origin(sdp: str, session_id: int, version: int) -> str:
    """``sdp`` with its ``o=`` line's session id and version replaced."""

    def replace(match: re.Match[str]) -> str:
        return f"{match[1]}{session_id} {version} "

    return _ORIGIN.sub(replace, sdp, count=1)


def session_of(sdp: str) -> str | None:
    """The session id of a description's ``o=`` line: a new one means a new connection."""
    for line in sdp.splitlines():
        if line.startswith("o="):
            fields = line.split()
            return fields[1] if len(fields) > 1 else None
    return None
