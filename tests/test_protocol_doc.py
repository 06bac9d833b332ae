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

from directory import records

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
