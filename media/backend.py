"""What the control API drives: one in-process ``MediaNode``, or a ``WorkerPool`` that runs the
rooms in worker processes and forwards each request to the room's worker (media/workers.py)."""

from __future__ import annotations

from typing import Any, Protocol

from media.bundle import Offer
from media.forwarding import Source


class Rooms(Protocol):
    #: Shutting down (media/drain.py): live rooms run on, no new one opens.
    draining: bool

    async def open_room(self, room: str, max_participants: int | None = None) -> bool:
        """True when the room was created, False when it existed."""

    async def delete_room(self, room: str) -> None: ...

    async def room_stats(self, room: str) -> dict[str, Any]: ...

    async def join(
        self, room: str, participant: str, offer_sdp: str, bundle: bool = False
    ) -> str: ...

    async def leave(self, room: str, participant: str) -> None: ...

    async def publish_screen(self, room: str, participant: str, offer_sdp: str) -> str: ...

    async def unpublish_screen(self, room: str, participant: str) -> None: ...

    async def subscribe(
        self, room: str, subscriber: str, publisher: str, source: Source = Source.CAMERA
    ) -> tuple[str, str | None]:
        """(subscription id, offer); no offer for a bundled subscriber (see ``offer``)."""

    async def offer(self, room: str, participant: str) -> Offer | None:
        """A bundled participant's outstanding offer (made now if anything changed)."""

    async def accept_offer_answer(
        self, room: str, participant: str, revision: int, answer_sdp: str
    ) -> Offer | None:
        """Apply the answer to offer ``revision``; the next offer, if one is due."""

    async def accept_answer(
        self, room: str, subscriber: str, sub_id: str, answer_sdp: str
    ) -> None: ...

    async def set_view(
        self,
        room: str,
        subscriber: str,
        publisher: str,
        source: Source,
        max_height: int | None,
    ) -> None:
        """The largest height ``subscriber`` wants of ``publisher``'s ``source`` (simulcast)."""

    def node_stats(self) -> dict[str, Any]:
        """Node-wide figures (the registry and ``/metrics`` read them; cheap, no I/O)."""

    async def refresh(self) -> None:
        """Bring ``node_stats`` up to date now (a worker pool asks its workers)."""

    def open_rooms(self) -> int: ...
