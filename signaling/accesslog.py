"""Access logs without personal data: no client address, no raw path, no tokens.

The logged path is the route template (``/v1/handles/{handle}``), so a lookup never writes the
handle that was looked up; a method outside HTTP's usual ones is logged as ``OTHER`` (any token is
a valid method, an address or a token included).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from signaling.logs import CLEAN

_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class PrivateAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        route = "-"
        try:
            resource = request.match_info.route.resource  # type: ignore[attr-defined]
        except (AttributeError, AssertionError):
            # A request rejected before routing (bad HTTP) has no route to name.
            resource = None
        if resource is not None:
            route = resource.canonical
        duration_ms = round(time * 1000, 1)
        method = request.method if request.method in _METHODS else "OTHER"
        self.logger.info(
            "%s %s %d %.1fms",
            method,
            route,
            response.status,
            duration_ms,
            extra={
                "method": method,
                "route": route,
                "status": response.status,
                "duration_ms": duration_ms,
                CLEAN: True,  # none of these can carry an address, a token or a handle
            },
        )
