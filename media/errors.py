"""Every error the SFU reports, each with one stable wire ``code`` and HTTP status."""

from __future__ import annotations


class MediaError(Exception):
    code = "media_error"
    status = 500
    title = "Media server error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(MediaError):
    code = "invalid_request"
    status = 400
    title = "Invalid request body"


class InvalidSdp(MediaError):
    code = "invalid_sdp"
    status = 400
    title = "The session description cannot be used"


class Unauthorized(MediaError):
    code = "unauthorized"
    status = 401
    title = "Missing or wrong bearer secret"


class RoomNotFound(MediaError):
    code = "room_not_found"
    status = 404
    title = "No such room"


class ParticipantNotFound(MediaError):
    code = "participant_not_found"
    status = 404
    title = "No such participant in this room"


class SubscriptionNotFound(MediaError):
    code = "subscription_not_found"
    status = 404
    title = "No such subscription"


class ParticipantExists(MediaError):
    code = "participant_exists"
    status = 409
    title = "The participant is already in the room"


class InvalidState(MediaError):
    code = "invalid_state"
    status = 409
    title = "The request does not fit the current state"


class NotPublished(MediaError):
    """A subscription to a source (a shared screen) its publisher does not send now."""

    code = "not_published"
    status = 409
    title = "The publisher does not send that source"


class StaleOffer(MediaError):
    """An answer for an offer that is not the connection's outstanding one (11.15)."""

    code = "stale_offer"
    status = 409
    title = "That offer is no longer outstanding"


class NotBundled(MediaError):
    """Offers and answers by revision are for a participant that joined with ``bundle``."""

    code = "not_bundled"
    status = 409
    title = "This participant has no bundled connection"


class RoomFull(MediaError):
    code = "room_full"
    status = 409
    title = "The room has reached its participant limit"


class TooManyRooms(MediaError):
    code = "too_many_rooms"
    status = 429
    title = "This media node has reached its room limit"


class Draining(MediaError):
    code = "draining"
    status = 503
    title = "This media node is shutting down and takes no new rooms"


class NotFound(MediaError):
    code = "not_found"
    status = 404
    title = "No such resource"


class MethodNotAllowed(MediaError):
    code = "method_not_allowed"
    status = 405
    title = "Method not allowed on this resource"


class RoomLost(MediaError):
    code = "room_lost"
    status = 410
    title = "The room's worker process ended; its media is gone"


class WorkerUnavailable(MediaError):
    code = "unavailable"
    status = 503
    title = "No worker process of this media node can take a room now"


def from_wire(status: int, code: str, detail: str) -> MediaError:
    """The error a worker process answered (media/workers.py), raised again by the node."""
    for kind in _all(MediaError):
        if kind.code == code:
            return kind(detail)
    error = MediaError(detail)
    error.status = status  # a code this version does not know: keep what the worker said
    return error


def _all(kind: type[MediaError]) -> list[type[MediaError]]:
    found = [kind]
    for sub in kind.__subclasses__():
        found += _all(sub)
    return found
