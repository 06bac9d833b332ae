"""Every rejected input gets an RFC 9457 problem+json with a stable code, never a 500.

Table-driven over the endpoint table itself (``signaling.rest.endpoints()``), so an endpoint
added tomorrow is covered by every case here without anyone remembering to add it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import gzip
import json
import logging
import re
import time
import typing
import zlib
from collections.abc import Iterator
from typing import Any

import aiohttp
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from directory import keyring, operators
from directory.store import Store
from signaling.appkeys import STORE
from signaling.config import Config
from signaling.protocol.bodies import (
    AccountUpdate,
    BlockAdd,
    ContactAdd,
    ContactUpdate,
    DeviceEnrollment,
    DeviceRename,
    MediaKeyPublish,
    PushRegister,
    PuzzleRequest,
    RecoveryRequest,
    SignupRequest,
    TokenRequest,
)
from signaling.protocol.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPES
from signaling.rest import endpoints
from signaling.rest.framework import Endpoint
from signaling.rest.operator import DecisionRequest, OperatorReason
from signaling.rest.reports import ReportRequest
from signaling.rest.table import BODY_ERRORS, ID_PARAM
from signaling.sdk.client import new_device_key
from tests.conftest import Server

ENDPOINTS = endpoints()
WITH_BODY = [e for e in ENDPOINTS if e.request is not None]
WITH_AUTH = [e for e in ENDPOINTS if e.auth]
WITH_PARAMS = [e for e in ENDPOINTS if e.params]
PATHS = sorted({e.path for e in ENDPOINTS})
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

HEX_ID = "0123456789abcdef" * 2
_KEY, PUBLIC_KEY = new_device_key()

# A valid-shaped value for every path-parameter pattern the table uses.
SAMPLE_PARAMS = {ID_PARAM.pattern: HEX_ID, "[^/]{1,128}": "nobody_here"}
# Values each pattern must refuse: the route does not match, whatever the method.
BAD_PARAMS = {
    ID_PARAM.pattern: ["not-hex", HEX_ID[:-1], HEX_ID + "0", HEX_ID.upper()],
    "[^/]{1,128}": ["x" * 129],
}

# A body each request schema accepts. The control test proves each one passes validation, so
# a case that spoils one field of it fails because of that field and nothing else.
VALID_BODIES: dict[type, dict[str, Any]] = {
    PuzzleRequest: {"purpose": "recovery", "handle": "newcomer"},
    SignupRequest: {
        "handle": "newcomer",
        "display_name": "New Comer",
        "device": {"name": "phone", "public_key": PUBLIC_KEY},
    },
    TokenRequest: {
        "account_id": HEX_ID,
        "device_id": HEX_ID,
        "nonce": "n" * 16,
        "signature": "s" * 86,
    },
    RecoveryRequest: {
        "handle": "nobody_here",
        "recovery_code": "abcd-efgh-ijkl-mnop",
        "device": {"name": "phone", "public_key": PUBLIC_KEY},
        "revoke_other_devices": False,
    },
    AccountUpdate: {
        "handle": "alice",
        "display_name": "Alice",
        "discoverable": "everyone",
        "who_can_call": "contacts",
        "hide_ip": True,
    },
    PushRegister: {"provider": "fcm", "token": "a-push-token"},
    DeviceEnrollment: {"name": "laptop", "public_key": PUBLIC_KEY},
    DeviceRename: {"name": "laptop"},
    MediaKeyPublish: {"media_key": "A" * 43, "media_key_signature": "A" * 86},
    ContactAdd: {"handle": "nobody_here", "nickname": "N"},
    ContactUpdate: {"nickname": "N"},
    BlockAdd: {"handle": "nobody_here"},
    ReportRequest: {"handle": "nobody_here", "category": "spam", "text": "Sells things."},
    OperatorReason: {"reason": "A reason long enough."},
    DecisionRequest: {"decision": "dismiss", "statement": "Nothing against the rules."},
}

BODY_CODES = set(BODY_ERRORS)


@pytest.fixture(autouse=True)
def no_error_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing a client sends is a bug of ours: no ERROR line, and no address in any line."""
    caplog.set_level(logging.DEBUG)
    yield
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors
    assert not [r for r in caplog.records if "127.0.0.1" in r.getMessage()]


def endpoint_id(endpoint: Endpoint) -> str:
    return f"{endpoint.method} {endpoint.path}"


def path_of(endpoint: Endpoint, **values: str) -> str:
    path = endpoint.path
    for name, param in endpoint.params.items():
        value = values.get(name, SAMPLE_PARAMS[param.pattern])
        path = path.replace("{" + name + "}", value)
    return path


def _wrong_value(hint: Any) -> Any:
    """A JSON value the field's type refuses: the first candidate msgspec rejects."""
    for candidate in (12345, "text", True, None, [1], {"zzz": 1}):
        try:
            msgspec.convert(candidate, hint)
        except msgspec.ValidationError:
            return candidate
    raise AssertionError(f"no wrong value found for {hint!r}")


def wrong_fields(kind: type) -> dict[str, Any]:
    hints = typing.get_type_hints(kind, include_extras=True)
    return {name: _wrong_value(hints[name]) for name in kind.__struct_fields__}  # type: ignore[attr-defined]


def body_fields() -> Iterator[Any]:
    for endpoint in WITH_BODY:
        assert endpoint.request is not None
        for name in endpoint.request.__struct_fields__:
            yield pytest.param(endpoint, name, id=f"{endpoint_id(endpoint)} .{name}")


async def problem_of(response: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    """Assert the response is the RFC 9457 problem ``code`` with ``status``; return its body."""
    raw = await response.read()
    assert response.status == status, raw
    assert response.content_type == PROBLEM_CONTENT_TYPE, raw
    problem = json.loads(raw)
    assert problem["type"] == f"urn:callbook:problem:{code}"
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["title"] == PROBLEM_TYPES[code].title
    assert isinstance(problem["detail"], str) and problem["detail"]
    assert response.headers.get("Cache-Control") == "no-store"
    return problem


async def auth_headers(server: Server, endpoint: Endpoint) -> dict[str, str]:
    """A valid bearer token when the endpoint needs one (signs up a fresh account), or an
    operator token for the operator API."""
    if endpoint.operator:
        token = await operators.create(
            server.app[STORE], f"op{len(await operators.list_all(server.app[STORE]))}"
        )
        return {"Authorization": f"Bearer {token}"}
    if not endpoint.auth:
        return {}
    client = await server.signup("alice")
    return {"Authorization": f"Bearer {await client.token()}"}


async def expect_problem(
    server: Server,
    endpoint: Endpoint,
    data: bytes,
    status: int,
    code: str,
    *,
    content_type: str | None = "application/json",
) -> dict[str, Any]:
    """Send ``data`` (with a valid token when needed) and assert the problem that comes back."""
    headers = await auth_headers(server, endpoint)
    url = server.url + path_of(endpoint)
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with (
        aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as http,
        http.request(endpoint.method, url, data=data, headers=headers) as response,
    ):
        problem = await problem_of(response, status, code)
    # What the server answers, the OpenAPI document declares.
    assert code in endpoint.errors, f"{endpoint_id(endpoint)} does not declare {code}"
    return problem


# -- The tables themselves ------------------------------------------------------------------


def test_every_request_schema_has_a_valid_example() -> None:
    missing = {e.request for e in WITH_BODY} - VALID_BODIES.keys()
    assert not missing, f"add a valid example body for {missing} to VALID_BODIES"


def test_every_path_parameter_pattern_has_samples() -> None:
    for endpoint in WITH_PARAMS:
        for param in endpoint.params.values():
            assert re.fullmatch(param.pattern, SAMPLE_PARAMS[param.pattern])
            assert BAD_PARAMS[param.pattern]
            for bad in BAD_PARAMS[param.pattern]:
                assert not re.fullmatch(param.pattern, bad)


def test_the_tables_cover_the_api() -> None:
    assert len(WITH_BODY) >= 9
    assert len(WITH_AUTH) >= 15
    assert {"POST /v1/accounts", "PATCH /v1/me", "POST /v1/blocks"} <= {
        endpoint_id(e) for e in WITH_BODY
    }


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=endpoint_id)
async def test_the_valid_example_passes_validation(server: Server, endpoint: Endpoint) -> None:
    """Control: the example bodies are valid, so the cases below test what they spoil."""
    headers = await auth_headers(server, endpoint)
    headers["Content-Type"] = "application/json"
    body = json.dumps(VALID_BODIES[endpoint.request]).encode()  # type: ignore[index]
    async with (
        aiohttp.ClientSession() as http,
        http.request(endpoint.method, server.url + path_of(endpoint), data=body,
                     headers=headers) as response,
    ):  # fmt: skip
        raw = await response.read()
    assert response.status < 500, raw
    if response.status >= 400:
        problem = json.loads(raw)
        assert problem["code"] not in BODY_CODES, problem
        assert problem["code"] in endpoint.errors
    else:
        assert response.status == endpoint.status


# -- Bodies ------------------------------------------------------------------------------------

BAD_BODIES = [
    pytest.param(b"{", 400, "malformed_json", id="truncated"),
    pytest.param(b'{"zz', 400, "malformed_json", id="truncated_key"),
    pytest.param(b"{'handle': 'alice'}", 400, "malformed_json", id="single_quotes"),
    pytest.param(b"", 400, "malformed_json", id="empty"),
    pytest.param(b'\xff\xfe{"a": 1}', 400, "malformed_json", id="not_utf8"),
    pytest.param(b'{"\xc0\x80": 1}', 400, "malformed_json", id="not_utf8_key"),
    pytest.param(b'{"\xed\xa0\x80": 1}', 400, "malformed_json", id="utf8_surrogate_key"),
    pytest.param(b'{"zzz_unknown": 1}', 422, "invalid_request", id="unknown_field"),
    pytest.param(b"[]", 422, "invalid_request", id="array"),
    pytest.param(b"[1, 2, 3]", 422, "invalid_request", id="array_of_numbers"),
    pytest.param(b'"a string"', 422, "invalid_request", id="string"),
    pytest.param(b"42", 422, "invalid_request", id="number"),
    pytest.param(b"null", 422, "invalid_request", id="null"),
    pytest.param(b"[" * 5000 + b"]" * 5000, 422, "invalid_request", id="deeply_nested"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
@pytest.mark.parametrize("endpoint", WITH_BODY, ids=endpoint_id)
async def test_bad_body_is_a_problem(
    server: Server, endpoint: Endpoint, body: bytes, status: int, code: str
) -> None:
    await expect_problem(server, endpoint, body, status, code)


@pytest.mark.parametrize(
    "bad",
    [b"\xff\xfe\xc0\x80", b"ok\xed\xa0\x80", b"\xc3"],
    ids=["ff_fe_overlong", "surrogate", "cut_short"],
)
@pytest.mark.parametrize(("endpoint", "field"), list(body_fields()))
async def test_invalid_utf8_in_any_field_is_a_problem(
    server: Server, endpoint: Endpoint, field: str, bad: bytes
) -> None:
    """Found by fuzzing: invalid UTF-8 inside a string was a 500 with a traceback."""
    body = {**VALID_BODIES[endpoint.request], field: "PLACEHOLDER"}  # type: ignore[index]
    data = json.dumps(body).encode().replace(b"PLACEHOLDER", bad)
    headers = await auth_headers(server, endpoint)
    headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as http,
        http.request(endpoint.method, server.url + path_of(endpoint), data=data,
                     headers=headers) as response,
    ):  # fmt: skip
        problem = json.loads(await response.read())
    # A string field: the bytes are refused; another type: the string is refused first.
    assert (response.status, problem["code"]) in {(400, "malformed_json"), (422, "invalid_request")}
    assert response.content_type == PROBLEM_CONTENT_TYPE


async def test_the_reported_sign_up_with_invalid_utf8(server: Server) -> None:
    endpoint = next(e for e in WITH_BODY if endpoint_id(e) == "POST /v1/accounts")
    await expect_problem(server, endpoint, b'{"handle":"\xff\xfe\xc0\x80"}', 400, "malformed_json")


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=endpoint_id)
async def test_unknown_field_beside_valid_ones_is_refused(
    server: Server, endpoint: Endpoint
) -> None:
    body = {**VALID_BODIES[endpoint.request], "zzz_unknown": 1}  # type: ignore[index]
    await expect_problem(server, endpoint, json.dumps(body).encode(), 422, "invalid_request")


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=endpoint_id)
async def test_valid_body_with_trailing_garbage_is_malformed(
    server: Server, endpoint: Endpoint
) -> None:
    body = json.dumps(VALID_BODIES[endpoint.request]).encode() + b" {}"  # type: ignore[index]
    await expect_problem(server, endpoint, body, 400, "malformed_json")


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=endpoint_id)
async def test_every_field_of_the_wrong_type_is_refused(server: Server, endpoint: Endpoint) -> None:
    assert endpoint.request is not None
    body = json.dumps(wrong_fields(endpoint.request)).encode()
    await expect_problem(server, endpoint, body, 422, "invalid_request")


@pytest.mark.parametrize(("endpoint", "field"), list(body_fields()))
async def test_one_field_of_the_wrong_type_is_refused(
    server: Server, endpoint: Endpoint, field: str
) -> None:
    assert endpoint.request is not None
    wrong = wrong_fields(endpoint.request)[field]
    body = {**VALID_BODIES[endpoint.request], field: wrong}
    problem = await expect_problem(server, endpoint, json.dumps(body).encode(), 422,
                                   "invalid_request")  # fmt: skip
    assert field in problem["detail"]


@pytest.mark.parametrize("extra", [1, 4 * 1024], ids=["one_byte_over", "far_over"])
@pytest.mark.parametrize("endpoint", WITH_BODY, ids=endpoint_id)
async def test_oversized_body_is_413(
    server: Server, config: Config, endpoint: Endpoint, extra: int
) -> None:
    body = _json_of_size(config.max_body_bytes + extra)
    await expect_problem(server, endpoint, body, 413, "payload_too_large")


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=endpoint_id)
async def test_body_of_exactly_the_limit_is_read(
    server: Server, config: Config, endpoint: Endpoint
) -> None:
    """The limit is inclusive: a body of max_body_bytes is parsed (and refused for its field)."""
    body = _json_of_size(config.max_body_bytes)
    await expect_problem(server, endpoint, body, 422, "invalid_request")


def _json_of_size(size: int) -> bytes:
    """Valid JSON (an object with one unknown field) of exactly ``size`` bytes."""
    head, tail = b'{"zzz_unknown": "', b'"}'
    body = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(body) == size
    json.loads(body)
    return body


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", None],
    ids=["text_plain", "form", "xml", "none"],
)
@pytest.mark.parametrize("endpoint", WITH_BODY, ids=endpoint_id)
async def test_wrong_content_type_is_415(
    server: Server, endpoint: Endpoint, content_type: str | None
) -> None:
    body = json.dumps(VALID_BODIES[endpoint.request]).encode()  # type: ignore[index]
    await expect_problem(
        server, endpoint, body, 415, "unsupported_media_type", content_type=content_type
    )


async def test_json_with_parameters_is_still_json(server: Server) -> None:
    alice = await server.signup("alice")
    headers = {
        "Authorization": f"Bearer {await alice.token()}",
        "Content-Type": "Application/JSON; charset=utf-8",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.patch(f"{server.url}/v1/me", data=b'{"display_name": "Al"}', headers=headers) as r,
    ):
        assert r.status == 200
        assert (await r.json())["display_name"] == "Al"


async def test_gzip_body_is_decoded_and_a_gzip_bomb_is_413(server: Server, config: Config) -> None:
    alice = await server.signup("alice")
    headers = {
        "Authorization": f"Bearer {await alice.token()}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    async with aiohttp.ClientSession() as http:
        url = f"{server.url}/v1/me"
        async with http.patch(url, data=gzip.compress(b'{"display_name": "Zip"}'),
                              headers=headers) as response:  # fmt: skip
            assert response.status == 200
            assert (await response.json())["display_name"] == "Zip"
        # A few kilobytes on the wire, megabytes once inflated: the limit counts inflated bytes.
        bomb = gzip.compress(b" " * (64 * config.max_body_bytes))
        assert len(bomb) < config.max_body_bytes
        async with http.patch(url, data=bomb, headers=headers) as response:
            await problem_of(response, 413, "payload_too_large")


async def _patch_me(server: Server, body: bytes, **headers: str) -> aiohttp.ClientResponse:
    alice = await server.signup("alice")
    headers = {
        "Authorization": f"Bearer {await alice.token()}",
        "Content-Type": "application/json",
        **headers,
    }
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.patch(f"{server.url}/v1/me", data=body, headers=headers) as response,
    ):
        await response.read()
        return response


GOOD = b'{"display_name": "Zip"}'


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("deflate", zlib.compress(GOOD)),
        ("deflate", zlib.compress(GOOD)[2:-4]),  # raw deflate, as some clients send it
        ("gzip", gzip.compress(GOOD)),
        ("x-gzip", gzip.compress(GOOD)),
        ("GZip ", gzip.compress(GOOD)),
        ("identity", GOOD),
    ],
    ids=["deflate", "raw_deflate", "gzip", "x_gzip", "case_and_space", "identity"],
)
async def test_supported_encodings_are_decoded(server: Server, encoding: str, body: bytes) -> None:
    response = await _patch_me(server, body, **{"Content-Encoding": encoding})
    assert response.status == 200


@pytest.mark.parametrize(
    "encoding", ["br", "zstd", "compress", "gzip, gzip", "deflate, gzip", "snappy"]
)
async def test_unsupported_encoding_is_a_415_problem(server: Server, encoding: str) -> None:
    """Not a plain-text 400 naming a library the server lacks: a problem, with the codings
    that work (RFC 9110 section 12.5.3)."""
    alice = await server.signup("alice")
    headers = {
        "Authorization": f"Bearer {await alice.token()}",
        "Content-Type": "application/json",
        "Content-Encoding": encoding,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.patch(f"{server.url}/v1/me", data=b"\x1b\x00\x00", headers=headers) as response,
    ):
        await problem_of(response, 415, "unsupported_encoding")
        assert response.headers["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"this is not compressed"),
        ("deflate", b"this is not compressed"),
        ("gzip", gzip.compress(GOOD)[:-9]),
        ("deflate", zlib.compress(GOOD)[:-3]),
        ("gzip", gzip.compress(GOOD) + b"trailing garbage"),
        ("gzip", b"\x1f\x8b"),
    ],
    ids=["gzip_garbage", "deflate_garbage", "gzip_truncated", "deflate_truncated",
         "gzip_trailing_garbage", "gzip_header_only"],
)  # fmt: skip
@pytest.mark.parametrize("endpoint", WITH_BODY, ids=endpoint_id)
async def test_undecodable_content_encoding_is_a_400_problem(
    server: Server, endpoint: Endpoint, encoding: str, body: bytes
) -> None:
    headers = await auth_headers(server, endpoint)
    headers |= {"Content-Type": "application/json", "Content-Encoding": encoding}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.request(endpoint.method, server.url + path_of(endpoint), data=body,
                     headers=headers) as response,
    ):  # fmt: skip
        await problem_of(response, 400, "malformed_body")
    assert "malformed_body" in endpoint.errors


def _spoiled_bomb(inflated: int) -> bytes:
    """A deflate stream that inflates to ``inflated`` bytes and then turns into garbage."""
    packer = zlib.compressobj(9)
    stream = packer.compress(b"[" * inflated) + packer.flush(zlib.Z_SYNC_FLUSH)
    return stream + b"\xff" * 64


@pytest.mark.parametrize(
    ("authorized", "status", "code"),
    [(True, 413, "payload_too_large"), (False, 401, "token_missing")],
    ids=["refused_for_size", "refused_before_reading"],
)
async def test_a_refused_body_is_not_inflated(
    server: Server, authorized: bool, status: int, code: str
) -> None:
    """The rest of a refused body is discarded as sent, never inflated: a bomb costs the server
    at most the body limit of inflating. (It used to inflate all of it while discarding it, for
    up to 10 s, and then log the garbage at its end as an ERROR: the autouse fixture.)"""
    bomb = _spoiled_bomb(8 * 1024 * 1024)
    assert len(bomb) < 16 * 1024  # within the limit as sent
    token = ""
    if authorized:
        alice = await server.signup("alice")
        token = f"Authorization: Bearer {await alice.token()}\r\n"
    head = (
        "PATCH /v1/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Encoding: deflate\r\n{token}"
        f"Content-Length: {len(bomb)}\r\n\r\n"
    )
    # The server closes the connection once it has discarded the whole body.
    answer = await _raw_exchange(server, head.encode() + bomb)
    assert _status_of(answer) == status
    assert _problem_in(answer)["code"] == code


# -- Authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", WITH_AUTH, ids=endpoint_id)
async def test_no_token_is_401_token_missing(server: Server, endpoint: Endpoint) -> None:
    # A malformed body too: authentication comes first and says nothing about the body.
    data = b"{" if endpoint.request is not None else None
    async with (
        aiohttp.ClientSession() as http,
        http.request(endpoint.method, server.url + path_of(endpoint), data=data,
                     headers={"Content-Type": "application/json"}) as response,
    ):  # fmt: skip
        await problem_of(response, 401, "token_missing")
    assert "token_missing" in endpoint.errors


@pytest.mark.parametrize("endpoint", WITH_AUTH, ids=endpoint_id)
async def test_garbage_token_is_401_token_invalid(server: Server, endpoint: Endpoint) -> None:
    headers = {"Authorization": "Bearer garbage", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(endpoint.method, server.url + path_of(endpoint), data=b"{}",
                     headers=headers) as response,
    ):  # fmt: skip
        await problem_of(response, 401, "token_invalid")
    assert "token_invalid" in endpoint.errors


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWT with an empty signature, as ``alg: none`` would have it."""
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("no_scheme", "token_missing"),
        ("basic_scheme", "token_missing"),
        ("bearer_without_token", "token_missing"),
        ("three_dots", "token_invalid"),
        ("too_long", "token_invalid"),
        ("alg_none", "token_invalid"),
        ("hs256_with_the_public_key", "token_invalid"),
        ("stranger_key_real_kid", "token_invalid"),
        ("unknown_kid", "token_invalid"),
        ("no_kid", "token_invalid"),
        ("wrong_audience", "token_invalid"),
        ("wrong_issuer", "token_invalid"),
        ("no_device", "token_invalid"),
        ("expired", "token_expired"),
        ("unknown_device", "device_revoked"),
    ],
)
async def test_forged_and_broken_tokens(server: Server, store: Store, case: str, code: str) -> None:
    alice = await server.signup("alice")
    real = await alice.token()
    assert alice.profile is not None
    stored = (await keyring.load(store))[0]
    server_key = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(stored.private_key))
    now = int(time.time())
    claims = {
        "iss": "callbook",
        "aud": "callbook:user",
        "sub": alice.profile.account_id,
        "did": alice.profile.device_id,
        "iat": now,
        "exp": now + 300,
    }

    def signed(key: Any = server_key, kid: str | None = stored.kid, **changes: Any) -> str:
        body = {k: v for k, v in {**claims, **changes}.items() if v is not None}
        headers = {"kid": kid} if kid is not None else {}
        return jwt.encode(body, key, algorithm="EdDSA", headers=headers)

    public_raw = server_key.public_key().public_bytes_raw()
    authorization = {
        "no_scheme": real,
        "basic_scheme": "Basic YWxpY2U6c2VjcmV0",
        "bearer_without_token": "Bearer ",
        "three_dots": "Bearer a.b.c",
        "too_long": "Bearer " + "x" * 5000,
        "alg_none": "Bearer " + _unsigned({"alg": "none", "kid": stored.kid}, claims),
        "hs256_with_the_public_key": "Bearer "
        + jwt.encode(claims, public_raw, algorithm="HS256", headers={"kid": stored.kid}),
        "stranger_key_real_kid": "Bearer " + signed(key=Ed25519PrivateKey.generate()),
        "unknown_kid": "Bearer " + signed(kid="feedfacefeedface"),
        "no_kid": "Bearer " + signed(kid=None),
        "wrong_audience": "Bearer " + signed(aud="someone:else"),
        "wrong_issuer": "Bearer " + signed(iss="not-callbook"),
        "no_device": "Bearer " + signed(did=None),
        "expired": "Bearer " + signed(iat=now - 1200, exp=now - 600),
        "unknown_device": "Bearer " + signed(did=HEX_ID),
    }[case]
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/v1/me", headers={"Authorization": authorization}) as response,
    ):
        await problem_of(response, 401, code)


async def test_a_token_minted_like_the_server_does_is_accepted(
    server: Server, store: Store
) -> None:
    """Control for the forgeries above: the same recipe with nothing spoiled works."""
    alice = await server.signup("alice")
    await alice.token()
    assert alice.profile is not None
    stored = (await keyring.load(store))[0]
    key = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(stored.private_key))
    now = int(time.time())
    claims = {"iss": "callbook", "aud": "callbook:user", "sub": alice.profile.account_id,
              "did": alice.profile.device_id, "iat": now, "exp": now + 300}  # fmt: skip
    token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": stored.kid})
    async with (
        aiohttp.ClientSession() as http,
        # The scheme name is case-insensitive (RFC 9110 section 11.1).
        http.get(f"{server.url}/v1/me", headers={"Authorization": f"bearer {token}"}) as r,
    ):
        assert r.status == 200
        assert (await r.json())["handle"] == "alice"


async def test_401_names_the_bearer_scheme(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        for authorization in (None, "Bearer garbage"):
            headers = {"Authorization": authorization} if authorization else {}
            async with http.get(f"{server.url}/v1/me", headers=headers) as response:
                assert response.status == 401
                assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")


# -- Routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/nope", "/nope", "/v1/me/", "/v2/me", "/v1/handles/", "/v1/devices/a/b"]
)
async def test_unknown_route_is_404_no_route(server: Server, path: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        await problem_of(response, 404, "no_route")


def wrong_methods() -> Iterator[Any]:
    for path in PATHS:
        allowed = {e.method for e in ENDPOINTS if e.path == path}
        for method in METHODS:
            if method not in allowed:
                yield pytest.param(path, method, id=f"{method} {path}")


@pytest.mark.parametrize(("path", "method"), list(wrong_methods()))
async def test_wrong_method_is_405(server: Server, path: str, method: str) -> None:
    endpoint = next(e for e in ENDPOINTS if e.path == path)
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path_of(endpoint)) as response,
    ):
        await problem_of(response, 405, "method_not_allowed")


async def test_405_names_the_allowed_methods(server: Server) -> None:
    async with aiohttp.ClientSession() as http, http.put(f"{server.url}/v1/me") as response:
        assert response.status == 405
        allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")}
        assert allowed == {"GET", "HEAD", "PATCH", "DELETE"}  # HEAD comes with every GET


def bad_params() -> Iterator[Any]:
    for endpoint in WITH_PARAMS:
        for name, param in endpoint.params.items():
            for bad in BAD_PARAMS[param.pattern]:
                label = bad if len(bad) < 40 else f"{bad[:8]}...({len(bad)})"
                yield pytest.param(endpoint, name, bad, id=f"{endpoint_id(endpoint)} {label}")


@pytest.mark.parametrize(("endpoint", "name", "bad"), list(bad_params()))
async def test_bad_path_parameter_is_404(
    server: Server, endpoint: Endpoint, name: str, bad: str
) -> None:
    headers = await auth_headers(server, endpoint)
    data = json.dumps(VALID_BODIES[endpoint.request]).encode() if endpoint.request else None
    headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as http,
        http.request(endpoint.method, server.url + path_of(endpoint, **{name: bad}),
                     data=data, headers=headers) as response,
    ):  # fmt: skip
        await problem_of(response, 404, "no_route")


@pytest.mark.parametrize("endpoint", WITH_PARAMS, ids=endpoint_id)
async def test_well_shaped_but_unknown_id_is_404(server: Server, endpoint: Endpoint) -> None:
    headers = await auth_headers(server, endpoint)
    data = json.dumps(VALID_BODIES[endpoint.request]).encode() if endpoint.request else None
    headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as http,
        http.request(endpoint.method, server.url + path_of(endpoint), data=data,
                     headers=headers) as response,
    ):  # fmt: skip
        problem = await problem_of(response, 404, "not_found")
    assert problem["code"] in endpoint.errors


# -- Isolation ---------------------------------------------------------------------------------


async def _raw_exchange(server: Server, request: bytes) -> bytes:
    """Send bytes on a fresh connection and read until the server closes it."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def _status_of(answer: bytes) -> int:
    """The status code in a raw HTTP answer's status line."""
    return int(answer.split(b"\r\n", 1)[0].split(b" ")[1])


async def test_bad_requests_do_not_disturb_good_ones(server: Server, config: Config) -> None:
    """Malformed requests, unparseable HTTP and half-sent requests, all at once with good
    lookups: every good lookup succeeds and every bad request gets its own answer.

    (Fewer than 100 at once: beyond that the store's connection pool is the limit; see the
    next test.)"""
    await server.signup("alice", "Alice")
    bob = await server.signup("bob")
    token = await bob.token()
    auth = {"Authorization": f"Bearer {token}"}
    json_auth = {**auth, "Content-Type": "application/json"}
    text_auth = {**auth, "Content-Type": "text/plain"}
    host, port = server.url.removeprefix("http://").rsplit(":", 1)

    # Requests that never finish their body hold their connections open throughout.
    half_open: list[asyncio.StreamWriter] = []
    try:
        for _ in range(3):
            _reader, writer = await asyncio.open_connection(host, int(port))
            half_open.append(writer)
            writer.write(
                b"POST /v1/contacts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 1000\r\n\r\n{"
            )
            await writer.drain()

        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def good() -> tuple[int, Any]:
                async with http.get(f"{server.url}/v1/handles/ALICE", headers=auth) as response:
                    return response.status, await response.json()

            async def bad(kind: int) -> tuple[int, str]:
                url = f"{server.url}/v1/contacts"
                oversized = b"{" + b" " * (config.max_body_bytes + 1024) + b"}"
                request = [
                    lambda: http.post(url, data=b"{", headers=json_auth),
                    lambda: http.post(url, data=oversized, headers=json_auth),
                    lambda: http.post(url, data=b"{}", headers=text_auth),
                    lambda: http.post(url, data=b"[]", headers=json_auth),
                    lambda: http.get(f"{server.url}/v1/me", headers={"Authorization": "Bearer x"}),
                    lambda: http.get(f"{server.url}/v1/nowhere"),
                ][kind]()
                async with request as response:
                    await response.read()
                    return response.status, response.content_type

            good_results, bad_results, raw_results = await asyncio.gather(
                asyncio.gather(*(good() for _ in range(30))),
                asyncio.gather(*(bad(i % 6) for i in range(30))),
                asyncio.gather(
                    *(_raw_exchange(server, b"THIS IS NOT HTTP\r\n\r\n") for _ in range(6))
                ),
            )
            for status, card in good_results:
                assert status == 200
                assert card["handle"] == "alice" and card["display_name"] == "Alice"
            assert sorted({status for status, _ in bad_results}) == [400, 401, 404, 413, 415, 422]
            assert {content_type for _, content_type in bad_results} == {PROBLEM_CONTENT_TYPE}
            assert {_status_of(answer) for answer in raw_results} == {400}
    finally:
        for writer in half_open:
            writer.close()
            await writer.wait_closed()

    # And once the half-sent requests are gone, the server still answers.
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/v1/handles/alice", headers=auth) as response,
    ):
        assert response.status == 200
        assert (await response.json())["handle"] == "alice"


def _problem_in(answer: bytes) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower(), head
    assert b"x-content-type-options: nosniff" in head.lower(), head
    problem: dict[str, Any] = json.loads(body)
    assert problem["status"] == _status_of(answer)
    return problem


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"THIS IS NOT HTTP\r\n\r\n", 400, "malformed_http"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "malformed_http"),
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431, "headers_too_large"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n", 431,
         "headers_too_large"),
        (b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"zz\r\n", 400, "malformed_http"),
    ],
    ids=["not_http", "bad_header", "long_request_line", "long_header", "bad_chunk_size"],
)  # fmt: skip
async def test_unparseable_http_gets_a_problem_and_no_error_log(
    server: Server, request_bytes: bytes, status: int, code: str
) -> None:
    """aiohttp answers these from the connection, before any route: still problem+json, and
    (the autouse fixture) no ERROR and no client address in the log."""
    answer = await _raw_exchange(server, request_bytes)
    assert _status_of(answer) == status, answer
    assert _problem_in(answer)["code"] == code


async def test_unparseable_http_has_its_access_log_line(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    answer = await _raw_exchange(server, b"THIS IS NOT HTTP\r\n\r\n")
    assert _status_of(answer) == 400
    # The access log has its line, with no route to name.
    assert any(" - 400 " in r.getMessage() for r in caplog.records if r.name == "aiohttp.access")


async def test_a_burst_beyond_the_store_pool_waits_rather_than_failing(
    server: Server, store: Store
) -> None:
    if store.cluster:
        pytest.skip("the cluster client's pools are per node and do not wait (docs/scaling.md)")
    bob = await server.signup("bob")
    auth = {"Authorization": f"Bearer {await bob.token()}"}
    # Hold every store command for a moment, so the burst's store calls are all in flight at
    # once whatever the machine's speed; the pause ends by itself.
    await store.redis.execute_command("CLIENT", "PAUSE", 1000)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def me() -> int:
            async with http.get(f"{server.url}/v1/me", headers=auth) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(me() for _ in range(150)))
    assert collections.Counter(statuses) == {200: 150}
