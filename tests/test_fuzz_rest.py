"""Fuzzing the REST API's bodies, and the HTTP in front of it.

Whatever the bytes, every JSON endpoint answers a 2xx or a problem+json with a code the table
knows, never a 5xx but the documented ``overloaded``, and the server logs no ERROR (and no
address). The corpus in tests/data/fuzz/rest/ (one body a file, the inputs of issue 11 among
them; the file's extension names its Content-Encoding) is sent to every endpoint on every run,
and tests/data/fuzz/http/ (one raw request a file) on a bare connection; hypothesis adds
``CALLBOOK_FUZZ_EXAMPLES`` generated inputs per property (default 100). A longer run:

    CALLBOOK_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_rest.py
"""

from __future__ import annotations

import asyncio
import gzip
import json
import typing
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from directory import operators
from media.embedded import EmbeddedMedia
from signaling.appkeys import STORE
from signaling.protocol.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPES
from signaling.rest.framework import Endpoint
from signaling.sdk.client import Client
from tests.fuzz_server import ThreadServer, corpus, errors_in, fuzz, serving
from tests.test_problems import VALID_BODIES, WITH_BODY, endpoint_id, path_of

#: The one 5xx a request may get on its own merits: anonymous load shedding (a valid sign-up).
ALLOWED_5XX = {"overloaded"}
CODINGS = {".gz": "gzip", ".deflate": "deflate", ".br": "br", ".json": None, ".bin": None}


@pytest.fixture(scope="module")
def api(redis_url: str, sfu: EmbeddedMedia) -> Iterator[ThreadServer]:
    yield from serving(redis_url, sfu)


@pytest.fixture(scope="module")
def tokens(api: ThreadServer) -> dict[str, str]:
    """A device's token and an operator's, for the endpoints that need one."""

    async def make() -> dict[str, str]:
        client = Client(api.url)
        try:
            await client.signup("fuzzer")
            device = await client.token()
        finally:
            await client.close()
        assert api.app is not None
        operator = await operators.create(api.app[STORE], "fuzz-operator")
        return {"device": device, "operator": operator}

    return api.run(make())


def _headers(endpoint: Endpoint, tokens: dict[str, str], **extra: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", **extra}
    if endpoint.operator:
        headers["Authorization"] = f"Bearer {tokens['operator']}"
    elif endpoint.auth:
        headers["Authorization"] = f"Bearer {tokens['device']}"
    return headers


async def _send(url: str, endpoint: Endpoint, body: bytes, headers: dict[str, str]) -> None:
    async with (
        aiohttp.ClientSession(skip_auto_headers=["Content-Type"], auto_decompress=False) as http,
        http.request(endpoint.method, url + path_of(endpoint), data=body,
                     headers=headers) as response,
    ):  # fmt: skip
        raw = await response.read()
    status = response.status
    if status < 400:
        return
    assert response.content_type == PROBLEM_CONTENT_TYPE, (status, raw[:200])
    problem = json.loads(raw)
    assert problem["code"] in PROBLEM_TYPES, problem
    assert problem["status"] == status
    assert status < 500 or problem["code"] in ALLOWED_5XX, problem


def _check(
    api: ThreadServer,
    tokens: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    endpoint: Endpoint,
    body: bytes,
    **headers: str,
) -> None:
    caplog.clear()
    api.run(_send(api.url, endpoint, body, _headers(endpoint, tokens, **headers)))
    assert not errors_in(caplog.records)


# -- strategies --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=5),
    max_leaves=30,
)  # fmt: skip


def _fields(kind: type) -> list[str]:
    return list(typing.get_type_hints(kind))


@st.composite
def shaped_bodies(draw: st.DrawFn, endpoint: Endpoint) -> bytes:
    """A valid body with some fields replaced by any JSON value: wrong types, huge numbers,
    strings of every kind."""
    assert endpoint.request is not None
    body = dict(VALID_BODIES[endpoint.request])
    for name in draw(st.lists(st.sampled_from(_fields(endpoint.request)), max_size=3)):
        body[name] = draw(json_values)
    return json.dumps(body).encode()


@st.composite
def spoiled_utf8(draw: st.DrawFn, endpoint: Endpoint) -> bytes:
    """A valid body with bytes that are not UTF-8 inside one of its strings."""
    assert endpoint.request is not None
    name = draw(st.sampled_from(_fields(endpoint.request)))
    body = {**VALID_BODIES[endpoint.request], name: "@@SPOT@@"}
    bad = draw(st.binary(min_size=1, max_size=8).filter(_not_utf8))
    return json.dumps(body).encode().replace(b"@@SPOT@@", bad)


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return True
    return False


nested = st.builds(
    lambda depth, opener: (opener * depth).encode() + b"1" + (
        {"[": "]", '{"a":': "}"}[opener] * depth).encode(),
    st.integers(1, 3000),
    st.sampled_from(["[", '{"a":']),
)  # fmt: skip

endpoints = st.sampled_from(WITH_BODY)


# -- properties --------------------------------------------------------------------------------


@fuzz
@given(endpoint=endpoints, body=st.binary(max_size=2048))
def test_random_bytes(
    api: ThreadServer, tokens: dict[str, str], caplog: pytest.LogCaptureFixture,
    endpoint: Endpoint, body: bytes,
) -> None:  # fmt: skip
    _check(api, tokens, caplog, endpoint, body)


@fuzz
@given(endpoint=endpoints, value=json_values)
def test_random_json(
    api: ThreadServer, tokens: dict[str, str], caplog: pytest.LogCaptureFixture,
    endpoint: Endpoint, value: Any,
) -> None:  # fmt: skip
    _check(api, tokens, caplog, endpoint, json.dumps(value).encode())


@fuzz
@given(data=st.data())
def test_valid_bodies_spoiled(
    api: ThreadServer, tokens: dict[str, str], caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    endpoint = data.draw(endpoints)
    body = data.draw(shaped_bodies(endpoint) | spoiled_utf8(endpoint) | nested)
    _check(api, tokens, caplog, endpoint, body)


@fuzz
@given(
    endpoint=endpoints,
    plain=st.binary(max_size=4096) | nested,
    coding=st.sampled_from(["gzip", "deflate", "br", "zstd", "gzip, deflate", "x-unknown"]),
    cut=st.integers(0, 64),
)
def test_encoded_bodies(
    api: ThreadServer, tokens: dict[str, str], caplog: pytest.LogCaptureFixture,
    endpoint: Endpoint, plain: bytes, coding: str, cut: int,
) -> None:  # fmt: skip
    """Compressed, truncated compressed and wrongly labelled bodies."""
    packed = {"gzip": gzip.compress, "deflate": zlib.compress}.get(coding, lambda b: b)(plain)
    body = packed[: len(packed) - cut] if cut else packed
    _check(api, tokens, caplog, endpoint, body, **{"Content-Encoding": coding})


# -- the corpus --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", corpus("rest"))
def test_rest_corpus(
    api: ThreadServer, tokens: dict[str, str], caplog: pytest.LogCaptureFixture, path: Path
) -> None:
    coding = CODINGS[path.suffix]
    headers = {"Content-Encoding": coding} if coding else {}
    for endpoint in WITH_BODY:
        try:
            _check(api, tokens, caplog, endpoint, path.read_bytes(), **headers)
        except AssertionError as failure:
            raise AssertionError(f"{endpoint_id(endpoint)}: {failure}") from failure


async def _exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("path", corpus("http"))
def test_http_corpus(api: ThreadServer, caplog: pytest.LogCaptureFixture, path: Path) -> None:
    """Raw requests on a bare connection: a 4xx problem, and the connection closed."""
    caplog.clear()
    answer = api.run(_exchange(api.url, path.read_bytes()))
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert 400 <= status < 500, head
    assert b"application/problem+json" in head.lower()
    assert json.loads(body)["code"] in PROBLEM_TYPES
    assert not errors_in(caplog.records)
