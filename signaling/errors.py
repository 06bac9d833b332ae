"""Every error the REST API returns: a stable code, an HTTP status and a title.

Responses are RFC 9457 ``application/problem+json``. The code is the contract; the ``detail``
sentence is for people and may change.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from aiohttp import web

from directory.errors import DirectoryError, Overloaded, RateLimited

PROBLEM_CONTENT_TYPE = "application/problem+json"
#: The ``Server`` header of every answer: no software versions.
SERVER = "Callbook"


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

# RFC 6750 section 3: a 401 names the scheme, and why a presented token failed.
_TOKEN_CODES = {
    "token_missing": 'Bearer realm="callbook"',
    "token_invalid": 'Bearer realm="callbook", error="invalid_token"',
    "token_expired": 'Bearer realm="callbook", error="invalid_token"',
    "device_revoked": 'Bearer realm="callbook", error="invalid_token"',
}


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details, plus the stable ``code``."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    retry_after: int | None = None


class ApiError(Exception):
    def __init__(
        self,
        code: str,
        detail: str,
        retry_after_s: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.problem_type = PROBLEM_TYPES[code]
        self.detail = detail
        self.retry_after_s = retry_after_s
        self.headers = headers or {}

    @classmethod
    def from_directory(cls, error: DirectoryError) -> ApiError:
        retry = error.retry_after_s if isinstance(error, RateLimited | Overloaded) else None
        return cls(error.code, error.detail, retry)

    def response(self, extra_headers: dict[str, str] | None = None) -> web.Response:
        kind = self.problem_type
        body = Problem(
            type=kind.uri,
            title=kind.title,
            status=kind.status,
            code=kind.code,
            detail=self.detail,
            retry_after=self.retry_after_s,
        )
        # Set here too: answers made before routing (bad HTTP) skip the app's response hook.
        headers = {"Cache-Control": "no-store", "Server": SERVER}
        if kind.status == 401 and kind.code in _TOKEN_CODES:
            headers["WWW-Authenticate"] = _TOKEN_CODES[kind.code]
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        headers.update(self.headers)
        headers.update(extra_headers or {})
        return web.Response(
            status=kind.status,
            body=msgspec.json.encode(body),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=headers,
        )
