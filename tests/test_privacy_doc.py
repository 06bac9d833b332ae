"""docs/privacy.md agrees with the inventory (``GET /v1/privacy/inventory``) field for field.

Only the section ``## Every key and field`` is read: one table row per record, with its name, key
pattern, type and fields. Every record and field of the inventory must be in the document, and
nothing the inventory does not hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from directory.inventory import INVENTORY

DOCS = Path(__file__).parent.parent / "docs"
SECTION = "## Every key and field"
_CODE = re.compile(r"`([^`]+)`")


def _section(text: str) -> str:
    start = text.index(SECTION) + len(SECTION)
    end = text.find("\n## ", start)
    return text[start:] if end < 0 else text[start:end]


def _rows(text: str) -> dict[str, tuple[str, str, list[str]]]:
    """Record name -> (key pattern, type, fields), from the tables of the section."""
    rows: dict[str, tuple[str, str, list[str]]] = {}
    for line in _section(text).splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = _CODE.fullmatch(cells[0])
        key = re.fullmatch(r"`([^`]+)` \(([a-z ]+)\)", cells[1])
        assert name and key, f"a row of docs/privacy.md does not parse: {line}"
        assert name[1] not in rows, f"{name[1]} is described twice"
        rows[name[1]] = (key[1], key[2].replace(" ", "_"), _CODE.findall(cells[2]))
    return rows


def _disagreements(text: str) -> list[str]:
    rows = _rows(text)
    found = [f"{name}: in the inventory, not in the document" for name in _names() - set(rows)]
    found += [f"{name}: in the document, not in the inventory" for name in set(rows) - _names()]
    for datum in INVENTORY:
        if datum.name not in rows:
            continue
        key, kind, fields = rows[datum.name]
        if (key, kind) != (datum.key_pattern, datum.type):
            found.append(f"{datum.name}: the document says {key} ({kind})")
        if missing := set(datum.fields) - set(fields):
            found.append(f"{datum.name}: the document lacks {sorted(missing)}")
        if extra := set(fields) - set(datum.fields):
            found.append(f"{datum.name}: the inventory lacks {sorted(extra)}")
    return found


def _names() -> set[str]:
    return {d.name for d in INVENTORY}


def test_the_document_and_the_inventory_name_the_same_records_and_fields() -> None:
    assert _disagreements((DOCS / "privacy.md").read_text()) == []


def _rename(text: str) -> str:
    return text.replace("`handle_banned`", "`handle_banner`")


def _drop_field(text: str) -> str:
    return text.replace(", `draining`", "")


def _drop_record(text: str) -> str:
    return re.sub(r"\n\| `busy` .*", "", text)


@pytest.mark.parametrize("change", [_rename, _drop_field, _drop_record])
def test_a_disagreement_is_caught(change: Callable[[str], str]) -> None:
    text = (DOCS / "privacy.md").read_text()
    assert change(text) != text
    assert _disagreements(change(text))


def test_the_readme_and_the_protocol_link_the_privacy_statement() -> None:
    for document in (DOCS.parent / "README.md", DOCS / "protocol.md"):
        assert "privacy.md" in document.read_text(), document.name
