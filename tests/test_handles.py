"""Handle rules: a table of cases, then properties over arbitrary text."""

from __future__ import annotations

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from directory import handles
from directory.errors import InvalidHandle, ReservedHandle
from signaling.sdk.client import new_device_key
from tests.conftest import Server

ACCEPTED = [
    ("alice", "alice"),
    ("Alice", "alice"),
    ("ＡＬＩＣＥ", "alice"),  # fullwidth letters fold to ASCII under NFKC
    ("bob.smith", "bob.smith"),
    ("a_b", "a_b"),
    ("x" * 32, "x" * 32),
    ("STRASSE", "strasse"),
    ("straße", "strasse"),  # casefold, not lower
    ("ﬁsh", "fish"),  # the fi ligature decomposes
]

REJECTED = [
    ("ab", InvalidHandle),
    ("x" * 33, InvalidHandle),
    (".alice", InvalidHandle),
    ("alice.", InvalidHandle),
    ("al..ice", InvalidHandle),
    ("al ice", InvalidHandle),
    ("alice-b", InvalidHandle),
    ("алиса", InvalidHandle),  # Cyrillic look-alikes are not ASCII after folding
    ("", InvalidHandle),
    ("x" * 1000, InvalidHandle),
    ("admin", ReservedHandle),
    ("ADMIN", ReservedHandle),
    ("support", ReservedHandle),
    ("callbook", ReservedHandle),
    ("no.reply", ReservedHandle),
    ("root", ReservedHandle),
    ("operator", ReservedHandle),
]


@pytest.mark.parametrize(("raw", "canonical"), ACCEPTED)
def test_accepted_handles_normalise_to_their_canonical_form(raw: str, canonical: str) -> None:
    assert handles.parse(raw) == canonical


@pytest.mark.parametrize(("raw", "error"), REJECTED)
def test_rejected_handles_say_why(raw: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        handles.parse(raw)


@given(st.text(max_size=40))
def test_normalisation_is_idempotent(raw: str) -> None:
    once = handles.normalize(raw)
    assert handles.normalize(once) == once


@given(st.text(max_size=40))
def test_an_accepted_handle_is_its_own_canonical_form(raw: str) -> None:
    try:
        canonical = handles.parse(raw)
    except (InvalidHandle, ReservedHandle):
        return
    assert handles.parse(canonical) == canonical
    assert canonical.isascii() and 3 <= len(canonical) <= 32


@given(st.text(max_size=12), st.text(max_size=12))
def test_two_inputs_are_the_same_handle_exactly_when_they_normalise_equal(a: str, b: str) -> None:
    try:
        ca, cb = handles.parse(a), handles.parse(b)
    except (InvalidHandle, ReservedHandle):
        return
    assert (ca == cb) == (handles.normalize(a) == handles.normalize(b))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=st.text(max_size=40))
async def test_every_rejected_handle_gets_a_problem_never_a_500(server: Server, raw: str) -> None:
    _key, public = new_device_key()
    body = {"handle": raw, "device": {"name": "phone", "public_key": public}}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/v1/accounts", json=body) as response,
    ):
        payload = await response.json(content_type=None)
    assert response.status in (201, 409, 422), payload
    if response.status != 201:
        assert response.content_type == "application/problem+json"
        assert payload["code"] in {
            "invalid_handle",
            "handle_reserved",
            "handle_taken",
            "invalid_request",
        }
        assert payload["detail"]
