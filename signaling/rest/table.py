"""The one endpoint table of the REST API, and helpers every area shares."""

from __future__ import annotations

from directory.store import Store
from signaling.appkeys import ENROLL_THROTTLE, GATE, SIGNIN_THROTTLE, STORE
from signaling.errors import ApiError
from signaling.gate import Gate
from signaling.limits import retry_after_s
from signaling.rest.framework import Api, Call, Param

API = Api()

ID_PARAM = Param("[0-9a-f]{32}", "Opaque id (32 hex characters)")

AUTH_ERRORS = ("token_missing", "token_invalid", "token_expired", "device_revoked")
BODY_ERRORS = (
    "malformed_json",
    "malformed_body",
    "invalid_request",
    "unsupported_media_type",
    "unsupported_encoding",
    "payload_too_large",
)


def store(call: Call) -> Store:
    return call.request.app[STORE]


def gate(call: Call) -> Gate:
    return call.request.app[GATE]


def throttle_anonymous(call: Call, *, enroll: bool) -> None:
    """Node-wide limits for requests no account pays for; enrolment (argon2) costs the most."""
    throttle = call.request.app[ENROLL_THROTTLE if enroll else SIGNIN_THROTTLE]
    wait = throttle.try_take()
    if wait:
        retry = retry_after_s(wait)
        raise ApiError("overloaded", "Too many sign-ins on this server right now.", retry)
