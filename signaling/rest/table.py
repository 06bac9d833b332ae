"""The one endpoint table of the REST API, and helpers every area shares."""

from __future__ import annotations

from directory.store import Store
from signaling.appkeys import ANONYMOUS_THROTTLE, STORE
from signaling.errors import ApiError
from signaling.rest.framework import Api, Call, Param

API = Api()

ID_PARAM = Param("[0-9a-f]{32}", "Opaque id (32 hex characters)")

AUTH_ERRORS = ("token_missing", "token_invalid", "token_expired", "device_revoked")
BODY_ERRORS = ("malformed_json", "invalid_request", "unsupported_media_type", "payload_too_large")


def store(call: Call) -> Store:
    return call.request.app[STORE]


def throttle_anonymous(call: Call) -> None:
    throttle = call.request.app[ANONYMOUS_THROTTLE]
    wait = throttle.try_take()
    if wait:
        retry = throttle.retry_after_s(wait)
        raise ApiError("overloaded", "Too many sign-ins on this server right now.", retry)
