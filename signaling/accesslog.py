"""Access logs without personal data: no client address, no raw path, no tokens.

The logged path is the route template (``/v1/handles/{handle}``), so a lookup never writes the
handle that was looked up.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class PrivateAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        route = "-"
        match_info = getattr(request, "match_info", None)
        if match_info is not None and match_info.route.resource is not None:
            route = match_info.route.resource.canonical
        self.logger.info("%s %s %d %.1fms", request.method, route, response.status, time * 1000)
