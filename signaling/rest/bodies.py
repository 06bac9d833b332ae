"""Reading a request body: the one path every JSON endpoint's body takes.

The transport hands over the body as sent (``auto_decompress`` is off, see ``create_app``):
inflating here is bounded by the body limit, so a compression bomb costs at most that much work,
and the bytes left unread after a refusal are discarded without being inflated. Whatever the
bytes are, the answer is a typed problem, never an exception.
"""

from __future__ import annotations

import zlib
from typing import TypeVar

import msgspec
from aiohttp import web

from signaling.errors import ApiError

T = TypeVar("T")

#: Content codings a body may use; ``Accept-Encoding`` names them when another one is refused.
ENCODINGS = ("gzip", "deflate")
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_IDENTITY = ("", "identity")


async def read_json(request: web.Request, kind: type[T]) -> T:
    """The body decoded as ``kind``: 413, 415, 400 or 422 problems for anything else."""
    try:
        raw = await request.read()  # over client_max_size: 413 (the middleware)
    except web.RequestPayloadError as exc:
        raise ApiError("malformed_body", "The body ended early or its framing is broken.") from exc
    if request.content_type != "application/json":
        raise ApiError("unsupported_media_type", "Send the body as application/json.")
    body = inflate(raw, request.headers.get("Content-Encoding", ""), request.client_max_size)
    return decode_body(body, kind)


def inflate(raw: bytes, coding: str, limit: int) -> bytes:
    """``raw`` without its content coding; more than ``limit`` bytes inflated is a 413."""
    coding = coding.strip().lower()
    if coding in _IDENTITY:
        return raw
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise ApiError(
            "unsupported_encoding",
            f"Send the body uncompressed or with Content-Encoding {' or '.join(ENCODINGS)}.",
            headers={"Accept-Encoding": ", ".join(ENCODINGS)},
        )
    if coding == "deflate" and raw[:1] and raw[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # raw deflate without the zlib header, as some clients send
    out = bytearray()
    rest = raw
    try:
        while rest:  # gzip allows several members one after another
            inflater = zlib.decompressobj(wbits)
            out += inflater.decompress(rest, limit + 1 - len(out))
            if len(out) > limit:
                raise ApiError("payload_too_large", "The body inflates beyond the limit.")
            if not inflater.eof:
                raise ApiError("malformed_body", f"The {coding} body is truncated.")
            rest = inflater.unused_data
    except zlib.error as exc:
        raise ApiError("malformed_body", f"The body is not valid {coding} data.") from exc
    return bytes(out)


def decode_body(raw: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError("invalid_request", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ApiError("malformed_json", f"The body is not valid JSON: {exc}.") from exc
    except UnicodeDecodeError as exc:
        raise ApiError("malformed_json", "A string in the body is not valid UTF-8.") from exc
    except RecursionError as exc:
        raise ApiError("malformed_json", "The body is nested too deeply.") from exc
