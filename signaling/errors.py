"""The REST API's errors as the server raises them: ``ApiError`` carries a problem code from
``signaling.protocol.problems`` and answers as ``application/problem+json``."""

from __future__ import annotations

import msgspec
from aiohttp import web

from directory.errors import DirectoryError, Overloaded, RateLimited
from signaling.protocol.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPES, Problem

#: The ``Server`` header of every answer: no software versions.
SERVER = "Callbook"

# RFC 6750 section 3: a 401 names the scheme, and why a presented token failed.
_TOKEN_CODES = {
    "token_missing": 'Bearer realm="callbook"',
    "token_invalid": 'Bearer realm="callbook", error="invalid_token"',
    "token_expired": 'Bearer realm="callbook", error="invalid_token"',
    "device_revoked": 'Bearer realm="callbook", error="invalid_token"',
}


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
