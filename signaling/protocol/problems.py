"""Every error the REST API returns: a stable code, an HTTP status and a title.

Responses are RFC 9457 ``application/problem+json``. The code is the contract; the ``detail``
sentence is for people and may change.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True, slots=True)
class ProblemType:
    code: str
    status: int
    title: str

    @property
    def uri(self) -> str:
        return f"urn:callbook:problem:{self.code}"


_TYPES = (
    ProblemType("malformed_json", 400, "The body is not valid JSON"),
    ProblemType("malformed_body", 400, "The body could not be read"),
    ProblemType("malformed_http", 400, "The request is not valid HTTP"),
    ProblemType("subprotocol_required", 400, "The WebSocket upgrade must offer callbook.v1"),
    ProblemType("invalid_request", 422, "The request does not match the schema"),
    ProblemType("unsupported_media_type", 415, "The body must be application/json"),
    ProblemType("unsupported_encoding", 415, "The body's Content-Encoding is not supported"),
    ProblemType("headers_too_large", 431, "The request line or a header is too long"),
    ProblemType("payload_too_large", 413, "The body is too large"),
    ProblemType("token_missing", 401, "No access token"),
    ProblemType("token_invalid", 401, "The access token is not valid"),
    ProblemType("token_expired", 401, "The access token has expired"),
    ProblemType("device_revoked", 401, "This device was revoked"),
    ProblemType("bad_challenge", 401, "The sign-in challenge is unknown, expired or used"),
    ProblemType("bad_signature", 401, "The signature does not verify"),
    ProblemType("unknown_device", 401, "The device is not enrolled"),
    ProblemType("bad_recovery_code", 401, "The recovery code does not match"),
    ProblemType("forbidden_origin", 403, "This origin is not allowed"),
    ProblemType("not_operator", 403, "This endpoint is for operators"),
    ProblemType("not_this_device", 403, "Only the device itself may do this"),
    ProblemType("not_found", 404, "Not found"),
    ProblemType("no_route", 404, "No such endpoint"),
    ProblemType("method_not_allowed", 405, "Method not allowed"),
    ProblemType("handle_taken", 409, "The handle is taken"),
    ProblemType("too_many_devices", 409, "The account has the maximum number of devices"),
    ProblemType("already_decided", 409, "The report was decided already"),
    ProblemType("invalid_handle", 422, "The handle is not valid"),
    ProblemType("handle_reserved", 422, "The handle is reserved"),
    ProblemType("invalid_public_key", 422, "The public key is not valid"),
    ProblemType("invalid_value", 422, "A value is not valid"),
    ProblemType("invalid_media_key", 422, "The media key or its signature is not valid"),
    ProblemType("puzzle_required", 428, "Solve a fresh puzzle and send the request again"),
    ProblemType("rate_limited", 429, "Too many requests"),
    ProblemType("too_many_connections", 429, "Too many connections from this address"),
    ProblemType("overloaded", 503, "The server is shedding load"),
    ProblemType("unavailable", 503, "The store is unavailable"),
    ProblemType("draining", 503, "This server is shutting down"),
    ProblemType("internal", 500, "Internal error"),
)
PROBLEM_TYPES: dict[str, ProblemType] = {t.code: t for t in _TYPES}


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details, plus the stable ``code``."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    retry_after: int | None = None
