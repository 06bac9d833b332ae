"""The web pages (``/``, ``/operator``), their static files, and the headers every answer carries.

The pages may not be framed (the operator dashboard's "end call", "suspend" and "reveal" must not
be clickable through someone else's page), load only this origin's own files, and send no
referrer. Static files are served from a fixed list of kinds, so nothing else in the package
(its Python modules) is ever served, and a missing one is a problem like any other 404.
The JavaScript SDK (``web/sdk/``: its modules and TypeScript declarations) is served under
``/static/sdk/`` for developers to import or copy.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aiohttp import web

from signaling.errors import ApiError

_WEB = Path(str(resources.files("signaling.web")))

#: What the pages load: their own scripts, styles and icons, media and data from this origin.
#: ``frame-ancestors`` works only as a header, not in the page's ``<meta>`` policy.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: On every answer, problems and static files included.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}

#: The kinds of file the pages load; the package's other files are not for browsers.
_STATIC_KINDS = frozenset({".js", ".css", ".svg"})
#: The SDK's folder also hands out its TypeScript declarations (``*.d.ts``), as plain text.
_SDK_KINDS = {".js": None, ".ts": "text/plain"}


def _page(name: str) -> web.Response:
    body = _WEB.joinpath(name).read_bytes()
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)


async def index(_request: web.Request) -> web.Response:
    return _page("index.html")


async def operator_page(_request: web.Request) -> web.Response:
    return _page("operator.html")


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = _WEB / name
    if path.suffix not in _STATIC_KINDS or not path.is_file():
        raise ApiError("not_found", "No such file.")
    return web.FileResponse(path)  # with ETag and Last-Modified, for revalidation


async def sdk_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = _WEB / "sdk" / name
    if path.suffix not in _SDK_KINDS or not path.is_file():
        raise ApiError("not_found", "No such file.")
    response = web.FileResponse(path)
    content_type = _SDK_KINDS[path.suffix]
    if content_type:  # ".ts" would pass for an MPEG transport stream
        response.content_type = content_type
        response.charset = "utf-8"
    return response


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    if isinstance(response, web.WebSocketResponse):
        return  # no content to sniff or cache; the headers would live as long as the socket
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # The page and its modules must come from one release: revalidate rather than mix versions.
    if request.path == "/" or request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-cache")


def install(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/operator", operator_page)
    # One path segment of name characters: no directories, no "..", nothing hidden.
    app.router.add_get(r"/static/{name:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}}", static)
    app.router.add_get(r"/static/sdk/{name:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}}", sdk_file)
    app.on_response_prepare.append(add_headers)
