"""The call WebSocket contract: docs/asyncapi.json is what the code generates, it names every
message, and its tables of error codes, close codes and end reasons are complete."""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from aiohttp import WSCloseCode

from signaling import asyncapi, tokens
from signaling.calls import conference, service
from signaling.protocol import closes
from signaling.protocol import messages as m
from signaling.ws import endpoint

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs" / "asyncapi.json"
PROTOCOL = ROOT / "docs" / "protocol.md"

ALL_KINDS = [*asyncapi.client_messages(), *asyncapi.server_messages()]


def test_committed_document_matches_the_code() -> None:
    assert COMMITTED.read_text() == asyncapi.render(), (
        "docs/asyncapi.json drifted from the code: regenerate it with "
        "`python -m signaling.asyncapi > docs/asyncapi.json` and review the change"
    )


def test_the_unions_are_what_the_document_lists() -> None:
    assert set(asyncapi.client_messages()) == set(typing.get_args(m.ClientMessages))
    assert set(asyncapi.server_messages()) == set(typing.get_args(m.ServerMessages))


@pytest.mark.parametrize(
    ("operation", "kinds"),
    [("send", asyncapi.client_messages()), ("receive", asyncapi.server_messages())],
)
def test_every_struct_of_both_unions_is_a_message_of_its_operation(
    operation: str, kinds: tuple[type[msgspec.Struct], ...]
) -> None:
    doc = asyncapi.document()
    channel = doc["channels"][asyncapi.CHANNEL]
    refs = [ref["$ref"] for ref in doc["operations"][operation]["messages"]]
    assert doc["operations"][operation]["action"] == operation
    assert len(refs) == len(kinds)
    for kind in kinds:
        key = asyncapi.message_key(kind)
        assert f"#/channels/{asyncapi.CHANNEL}/messages/{key}" in refs
        assert channel["messages"][key] == {"$ref": f"#/components/messages/{key}"}
        message = doc["components"]["messages"][key]
        tag = kind.__struct_config__.tag
        assert message["name"] == tag
        assert message["title"] == kind.__name__
        assert message["description"]
        assert message["payload"] == {"$ref": f"#/components/schemas/{kind.__name__}"}
        schema = doc["components"]["schemas"][kind.__name__]
        assert schema["properties"]["type"] == {"enum": [tag]}
    assert channel["address"] == "/v1/ws"


def test_no_message_is_listed_twice_or_without_a_struct() -> None:
    doc = asyncapi.document()
    assert sorted(doc["components"]["messages"]) == sorted(map(asyncapi.message_key, ALL_KINDS))


def _described_fields(schema: object, name: str = "") -> list[tuple[str, str]]:
    """Every (field name, description) in a JSON schema, however deeply nested."""
    found: list[tuple[str, str]] = []
    if isinstance(schema, dict):
        if isinstance(schema.get("description"), str) and name:
            found.append((name, schema["description"]))
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for field, sub in value.items():
                    found += _described_fields(sub, field)
            else:
                found += _described_fields(value, name)
    elif isinstance(schema, list):
        for item in schema:
            found += _described_fields(item, name)
    return found


def test_id_fields_are_described_as_the_id_they_are() -> None:
    """An account id is not described as a call id (client.invite.account_id once was)."""
    fields = _described_fields(asyncapi.document()["components"]["schemas"])
    assert ("account_id", "Account id") in fields
    for field, text in fields:
        assert (text == "Call id") == (field == "call_id"), (field, text)


@pytest.mark.parametrize("kind", asyncapi.client_messages(), ids=asyncapi.tag_of)
def test_a_refusal_names_the_call_and_the_ref_of_the_message(kind: type[msgspec.Struct]) -> None:
    """protocol.md 11.13: an error about a call carries its call_id, one about an invite its
    ref, whichever path refused it (a quality report's refusal once had no call_id)."""
    message = asyncapi.EXAMPLES[kind]
    assert isinstance(message, m.ClientMessage)
    refused = m.refusal(message, "unknown_call", "No such call on this device.")
    assert refused.call_id == getattr(message, "call_id", None)
    assert refused.ref == getattr(message, "ref", None)
    assert m.refusal(message, "unavailable", "x", "f" * 32).call_id == "f" * 32


def test_descriptions_come_from_docstrings_and_the_fallback_only_covers_the_rest() -> None:
    undocumented = {kind for kind in ALL_KINDS if not kind.__doc__}
    assert set(asyncapi.UNDOCUMENTED) == undocumented
    for kind in ALL_KINDS:
        if kind.__doc__:
            assert asyncapi.description(kind) == inspect.cleandoc(kind.__doc__)


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda kind: kind.__name__)
def test_every_example_is_a_valid_frame_of_its_message(kind: type[msgspec.Struct]) -> None:
    union = m.ClientMessages if issubclass(kind, m.ClientMessage) else m.ServerMessages
    decoded = msgspec.json.decode(msgspec.json.encode(asyncapi.example(kind)), type=union)
    assert decoded == asyncapi.EXAMPLES[kind]


# --- the tables ----------------------------------------------------------------------------------


def _found(pattern: str, *sources: str) -> set[str]:
    return {code for source in sources for code in re.findall(pattern, source)}


def _source(module: ModuleType) -> str:
    return inspect.getsource(module)


def _call_modules() -> list[ModuleType]:
    """Every module of ``signaling.calls``: each may refuse a message."""
    package = Path(service.__file__).parent
    names = sorted(path.stem for path in package.glob("*.py") if path.stem != "__init__")
    return [importlib.import_module(f"signaling.calls.{name}") for name in names]


def _token_codes() -> set[str]:
    """The ApiError codes of TokenService.verify and the helpers it calls (the WebSocket
    refuses a connection with them)."""
    verify = inspect.getsource(tokens.TokenService.verify)
    helpers = re.findall(r"self\.(_\w+)\(", verify)
    sources = [verify] + [inspect.getsource(getattr(tokens.TokenService, h)) for h in helpers]
    return _found(r'ApiError\(\s*"(\w+)"', *sources)


def codes_in_the_code() -> set[str]:
    """Every error code the WebSocket can send, read from the modules that send them."""
    ws = _source(endpoint)
    calls = "".join(_source(module) for module in _call_modules())
    codes = _found(r'CallError\(\s*"(\w+)"', calls)
    codes |= _found(r'Rejected\(\s*"(\w+)"', calls)
    codes |= _found(r'refusal\(\s*\w+,\s*"(\w+)"', calls + ws)
    codes |= _found(r'code="(\w+)"', ws)
    codes |= _found(r'_refuse\(\s*\w+,\s*\w+,\s*"(\w+)"', ws)
    codes |= _found(r'ApiError\(\s*"(\w+)"', ws)
    codes |= set(conference.REFUSALS.values())  # the SFU's refusals, as the device hears them
    return codes | _token_codes()


def test_the_scan_finds_codes_of_every_kind() -> None:
    """Guards the regexes: each pattern still matches something."""
    codes = codes_in_the_code()
    for expected in ("unknown_call", "not_ringing", "invalid_message", "auth_timeout"):
        assert expected in codes
    assert {"token_invalid", "token_expired", "device_revoked"} <= codes


def test_the_error_code_table_is_complete() -> None:
    codes = codes_in_the_code()
    missing = codes - set(asyncapi.ERROR_CODES)
    assert not missing, f"add these to signaling.asyncapi.ERROR_CODES: {sorted(missing)}"
    stale = set(asyncapi.ERROR_CODES) - codes
    assert not stale, f"no longer in the code, remove from ERROR_CODES: {sorted(stale)}"
    assert asyncapi.document()["x-error-codes"].keys() == asyncapi.ERROR_CODES.keys()


def test_every_close_code_used_is_in_the_table() -> None:
    ws = _source(endpoint)
    used = {int(getattr(WSCloseCode, name)) for name in _found(r"WSCloseCode\.(\w+)", ws)}
    used |= {closes.CLOSE_REPLACED, int(WSCloseCode.MESSAGE_TOO_BIG)}  # 1009: aiohttp
    assert used <= set(asyncapi.CLOSE_CODES)
    for error in asyncapi.ERROR_CODES.values():
        assert error.close is None or error.close in asyncapi.CLOSE_CODES


def test_every_end_reason_is_explained() -> None:
    assert set(asyncapi.END_REASONS) == set(typing.get_args(m.EndReason))


# --- docs/protocol.md agrees -------------------------------------------------------------------


def _table_codes(heading: str) -> list[str]:
    """The backticked first column of the table under a heading of docs/protocol.md."""
    text = PROTOCOL.read_text()
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    lines = text[start : end if end != -1 else None].splitlines()
    codes = []
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        row = re.match(r"\| `([\w.]+)` \|", line)
        if row and not following.startswith("|---"):  # not a header row
            codes.append(row[1])
    return codes


def test_protocol_md_lists_the_same_error_codes() -> None:
    assert sorted(_table_codes("### 11.13 Errors")) == sorted(asyncapi.ERROR_CODES)


def test_protocol_md_lists_the_same_end_reasons() -> None:
    assert sorted(_table_codes("### 11.6 Why a call ends")) == sorted(asyncapi.END_REASONS)


def test_protocol_md_lists_the_same_close_codes() -> None:
    codes = _table_codes("### 11.3 Heartbeat, limits and close codes")
    assert sorted(codes) == sorted(str(code) for code in asyncapi.CLOSE_CODES)
