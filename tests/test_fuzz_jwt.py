"""Fuzzing the access token: every bearer token that is not one the server issued is a 401
problem (``token_*``), over REST and when signing in on the WebSocket (an ``error`` and close
1008), and never an ERROR in the log.

Garbage, tokens of every ``alg`` (``none`` included), tokens signed by a stranger's key under
the server's real key id, and the server's own tokens truncated or with one character changed.
The corpus in tests/data/fuzz/jwt/ (one token a file) is replayed on every run; hypothesis adds
``CALLBOOK_FUZZ_EXAMPLES`` generated tokens per property (default 100). A longer run:

    CALLBOOK_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_jwt.py
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given
from hypothesis import strategies as st

from media.embedded import EmbeddedMedia
from signaling.protocol.problems import PROBLEM_CONTENT_TYPE
from signaling.sdk.client import Client
from tests.fuzz_server import ThreadServer, corpus, errors_in, fuzz, serving
from tests.test_fuzz_rest import json_values

TOKEN_CODES = {"token_missing", "token_invalid", "token_expired", "device_revoked"}
#: On the WebSocket, an ``auth`` whose token breaks the message's own bounds (over 2,048
#: characters) is not a valid ``auth`` message at all (11.1).
WS_CODES = TOKEN_CODES | {"auth_required"}
#: What an HTTP header value may hold (aiohttp's client refuses control characters).
header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=400)


@pytest.fixture(scope="module")
def jwt_server(redis_url: str, sfu: EmbeddedMedia) -> Iterator[ThreadServer]:
    yield from serving(redis_url, sfu)


@pytest.fixture(scope="module")
def real_token(jwt_server: ThreadServer) -> str:
    async def make() -> str:
        client = Client(jwt_server.url)
        try:
            await client.signup("jwtfuzzer")
            return await client.token()
        finally:
            await client.close()

    return jwt_server.run(make())


async def _rest(url: str, token: str) -> tuple[int, str, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/me", headers=headers) as r:
        raw = await r.read()
        return r.status, r.content_type, json.loads(raw) if raw else {}


async def _ws(url: str, token: str) -> tuple[dict[str, Any], int | None]:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url.replace("http", "ws") + "/v1/ws", protocols=("callbook.v1",))
        await ws.send_str(json.dumps({"type": "auth", "token": token}))
        error = await ws.receive_json(timeout=10)
        await ws.receive(timeout=10)
        return error, ws.close_code


def _refused(
    server: ThreadServer, caplog: pytest.LogCaptureFixture, token: str, *, ws: bool = False
) -> None:
    caplog.clear()
    status, content_type, problem = server.run(_rest(server.url, token))
    assert status == 401, (token[:80], status, problem)
    assert content_type == PROBLEM_CONTENT_TYPE
    assert problem["code"] in TOKEN_CODES
    if ws:
        error, close = server.run(_ws(server.url, token))
        assert error["type"] == "error" and error["code"] in WS_CODES, error
        assert close == 1008
    assert not errors_in(caplog.records)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _segments(token: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)) for s in token.split(".")]


def _kid(token: str) -> str:
    kid: str = json.loads(_segments(token)[0])["kid"]
    return kid


algs = st.sampled_from(["none", "NONE", "None", "HS256", "RS256", "ES256", "EdDSA", "PS512", ""])


@st.composite
def forged(draw: st.DrawFn, kid: str) -> str:
    """A token of any alg, with any claims, the real key id or another, any signature."""
    header: dict[str, Any] = {"alg": draw(algs | st.text(max_size=10))}
    header["kid"] = draw(st.just(kid) | st.text(max_size=20) | json_values)
    claims = draw(st.dictionaries(st.sampled_from(["iss", "aud", "sub", "did", "iat", "exp"])
                                  | st.text(max_size=5), json_values, max_size=7))  # fmt: skip
    signature = draw(st.binary(max_size=300))
    return ".".join(_b64(json.dumps(part).encode()) for part in (header, claims)) + (
        "." + _b64(signature)
    )


@fuzz
@given(token=header_text)
def test_garbage(jwt_server: ThreadServer, caplog: pytest.LogCaptureFixture, token: str) -> None:
    assume(token.strip())
    _refused(jwt_server, caplog, token)


@fuzz
@given(data=st.data())
def test_forged_tokens_of_every_alg(
    jwt_server: ThreadServer, real_token: str, caplog: pytest.LogCaptureFixture,
    data: st.DataObject,
) -> None:  # fmt: skip
    _refused(jwt_server, caplog, data.draw(forged(_kid(real_token))))


@fuzz
@given(claims=st.dictionaries(st.text(max_size=5), json_values, max_size=6), merge=st.booleans())
def test_signed_by_a_strangers_key_under_the_real_key_id(
    jwt_server: ThreadServer, real_token: str, caplog: pytest.LogCaptureFixture,
    claims: dict[str, Any], merge: bool,
) -> None:  # fmt: skip
    if merge:  # the real claims, so only the key is wrong
        claims = {**json.loads(_segments(real_token)[1]), **claims}
    # Signed here rather than by pyjwt, which refuses to encode some of these claims.
    header = {"alg": "EdDSA", "typ": "JWT", "kid": _kid(real_token)}
    signing_input = ".".join(_b64(json.dumps(part).encode()) for part in (header, claims))
    signature = Ed25519PrivateKey.generate().sign(signing_input.encode())
    _refused(jwt_server, caplog, f"{signing_input}.{_b64(signature)}")


@fuzz
@given(data=st.data())
def test_the_real_token_truncated_or_changed(
    jwt_server: ThreadServer, real_token: str, caplog: pytest.LogCaptureFixture,
    data: st.DataObject,
) -> None:  # fmt: skip
    position = data.draw(st.integers(0, len(real_token) - 1))
    if data.draw(st.booleans()):
        token = real_token[:position]
    else:
        replacement = data.draw(st.sampled_from("AQgw_-.xyz0="))
        token = real_token[:position] + replacement + real_token[position + 1 :]
        # Base64url's last character carries unused bits: some changes decode the same. (A
        # token that no longer decodes is certainly not the real one.)
        with contextlib.suppress(ValueError):
            assume(_segments(token) != _segments(real_token))
    assume(token.strip())
    _refused(jwt_server, caplog, token)


@pytest.mark.parametrize("path", corpus("jwt"))
def test_jwt_corpus(jwt_server: ThreadServer, caplog: pytest.LogCaptureFixture, path: Path) -> None:
    _refused(jwt_server, caplog, path.read_text().strip(), ws=True)


def test_the_real_token_is_accepted(jwt_server: ThreadServer, real_token: str) -> None:
    """Control: the harness lets a good token through, so the refusals above mean something."""
    status, _, account = jwt_server.run(_rest(jwt_server.url, real_token))
    assert status == 200 and account["handle"] == "jwtfuzzer"
