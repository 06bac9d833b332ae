"""docs/protocol.md agrees with the definitions it documents: its JSON examples show every field
of the records they hold (response fields are always present, 1.1), its message tables list
exactly the WebSocket messages, its problem table exactly the REST problem codes, and its
contents list every section. (The WebSocket error, close-code and end-reason tables are checked
by tests/test_asyncapi.py.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from signaling import asyncapi
from signaling.protocol import records
from signaling.protocol.problems import PROBLEM_TYPES
from signaling.rest import endpoints

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

#: A record is recognised in an example by fields only it has.
RECORDS: dict[type[msgspec.Struct], set[str]] = {
    records.Account: {"who_can_call", "discoverable"},
    records.Device: {"public_key", "last_seen_day"},
    records.Contact: {"nickname", "added_day"},
    records.Block: {"blocked_day"},
    records.MissedCall: {"caller_handle"},
    records.PushRegistration: {"provider", "token", "device_id"},
}


def _code_blocks(text: str) -> Iterator[str]:
    """The bodies of the ```json blocks and of the ```http responses (after their head)."""
    for language, body in re.findall(r"```(json|http)\n(.*?)```", text, re.S):
        if language == "http":
            head, _, body = body.partition("\n\n")
            if not head.startswith("HTTP/"):
                continue  # a request
        yield body


def _json_values(block: str) -> Iterator[Any]:
    """The block as one JSON value, else each line that is one (message examples)."""
    try:
        yield json.loads(block)
        return
    except json.JSONDecodeError:
        pass
    for line in block.splitlines():
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def _examples() -> list[dict[str, Any]]:
    text = PROTOCOL.read_text()
    return [
        obj
        for block in _code_blocks(text)
        for value in _json_values(block)
        for obj in _objects(value)
    ]


def test_every_record_in_an_example_shows_all_its_fields() -> None:
    """Fields in responses are always present (1.1); the examples once left out `suspended`."""
    seen = dict.fromkeys(RECORDS, 0)
    for obj in _examples():
        for record, marks in RECORDS.items():
            if marks <= obj.keys():
                seen[record] += 1
                fields = set(record.__struct_fields__)
                assert obj.keys() == fields, (record.__name__, sorted(fields ^ obj.keys()), obj)
    # Guards the recognition: each record is found where the sections show it.
    assert seen[records.Account] >= 4 and seen[records.Device] >= 4, seen
    assert all(seen.values()), seen


# --- contents ---------------------------------------------------------------------------------


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_the_contents_list_every_section_in_order() -> None:
    """Every ``##`` section and every ``###`` of sections 11 and 12, each linked to its
    heading (the list once stopped at 11.14)."""
    text = PROTOCOL.read_text()
    contents = text[text.index("\nContents\n") : text.index("\n---\n")]
    listed = re.findall(r"\[(.+?)\]\(#([^)]+)\)", contents)
    headings = [
        heading
        for level, heading in re.findall(r"^(##|###) (.+)$", text, re.M)
        if level == "##" or heading.startswith(("11.", "12."))
    ]
    assert [title for title, _ in listed] == [re.sub(r"^(\d+)\. ", "", h) for h in headings]
    assert [anchor for _, anchor in listed] == [_anchor(h) for h in headings]


# --- tables ----------------------------------------------------------------------------------


def _section(heading: str, until: str = "\n#") -> str:
    text = PROTOCOL.read_text()
    start = text.index(heading)
    end = text.find(until, start + len(heading))
    return text[start : end if end != -1 else None]


def _rows(text: str, columns: int = 1) -> list[tuple[str, ...]]:
    """The first ``columns`` cells of every body row of the tables in ``text``, backticks and
    bold markers stripped (header rows, those followed by ``|---``, are left out)."""
    lines = text.splitlines()
    rows = []
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        if not line.startswith("| ") or line.startswith("|---") or following.startswith("|---"):
            continue
        cells = [cell.strip().strip("`*") for cell in line.strip("|").split(" | ")]
        rows.append(tuple(cells[:columns]))
    return rows


def test_the_message_tables_list_exactly_the_messages() -> None:
    """11.4: one row per message type, each direction; `quality` was missing."""
    messages = _section("### 11.4 Messages")
    device, server = messages.split("**Server → device.**")
    sent = [tag for (tag,) in _rows(device)]
    received = [tag for (tag,) in _rows(server)]
    assert sorted(sent) == sorted(asyncapi.tag_of(k) for k in asyncapi.client_messages())
    assert sorted(received) == sorted(asyncapi.tag_of(k) for k in asyncapi.server_messages())


def test_the_problem_table_lists_exactly_the_problem_codes() -> None:
    """2.1: every REST problem code with its HTTP status, and no other (`draining` was missing)."""
    table = {code: int(status) for code, status in _rows(_section("### 2.1 Problem codes"), 2)}
    assert table == {code: kind.status for code, kind in PROBLEM_TYPES.items()}


#: Rows of 1.2 that are not in the endpoint table of ``signaling.rest``.
_SERVED_ELSEWHERE = {
    ("GET", "/v1/ws"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/openapi.json"),
}


def _paths(rows: list[tuple[str, ...]]) -> set[tuple[str, str]]:
    found = set()
    for methods, path in rows:
        for method in methods.split(", "):
            for one in path.split("`, `"):
                found.add((method, one.split("?")[0]))
    return found


def test_the_endpoint_tables_list_exactly_the_endpoints() -> None:
    """1.2 lists every user endpoint (the operator API as one row), 12.2 every operator one."""
    table = _paths(_rows(_section("### 1.2 Endpoints"), 2))
    served = {(e.method, e.path) for e in endpoints()}
    operator = {row for row in served if row[1].startswith("/v1/operator/")}
    collapsed = {("GET", "/v1/operator/..."), ("POST", "/v1/operator/...")}
    assert table == (served - operator) | collapsed | _SERVED_ELSEWHERE
    assert _paths(_rows(_section("### 12.2 Operator API"), 2)) == operator
