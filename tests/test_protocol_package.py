"""The layers hold: the protocol package imports nothing of the server, the SDK nothing but the
protocol (and its libraries), ``directory`` and ``media`` never ``signaling``; and the address
book's storage records and the protocol's wire records have the same fields (docs/sdk.md,
"Storage model and wire model")."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import msgspec
import pytest

from directory import handles as directory_handles
from directory import records as storage
from signaling.protocol import handles, records
from signaling.protocol import operator as wire_operator

REPO = Path(__file__).resolve().parents[1]
STDLIB = sys.stdlib_module_names


def _imports(package: str) -> dict[str, set[str]]:
    """Every module each file of ``package`` imports (top-level names and full paths)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(REPO))] = names
    return found


def _outside(imported: set[str], allowed: tuple[str, ...]) -> set[str]:
    return {
        name
        for name in imported
        if name.partition(".")[0] not in STDLIB
        and not any(name == a or name.startswith(a + ".") for a in allowed)
    }


def test_the_protocol_package_imports_only_the_standard_library_and_msgspec() -> None:
    for path, imported in _imports("signaling/protocol").items():
        assert not _outside(imported, ("msgspec", "signaling.protocol", "__future__")), path


SDK_LIBRARIES = ("aiohttp", "msgspec", "cryptography", "aiortc", "aioice", "av", "pylibsrtp")


def test_the_sdk_imports_only_the_protocol_and_its_libraries() -> None:
    allowed = ("signaling.protocol", "signaling.sdk", "__future__", *SDK_LIBRARIES)
    for path, imported in _imports("signaling/sdk").items():
        assert not _outside(imported, allowed), path


@pytest.mark.parametrize("package", ["directory", "media"])
def test_directory_and_media_never_import_signaling(package: str) -> None:
    for path, imported in _imports(package).items():
        assert not {n for n in imported if n.partition(".")[0] == "signaling"}, path


def test_the_sdk_distribution_lists_its_libraries() -> None:
    """What the SDK imports is what its pyproject.toml asks pip for (aioice and pylibsrtp come
    with aiortc)."""
    import tomllib

    project = tomllib.loads((REPO / "signaling/sdk/pyproject.toml").read_text())["project"]
    wanted = {d.split("=")[0].split("<")[0].split(">")[0] for d in project["dependencies"]}
    assert wanted == {"aiohttp", "msgspec", "cryptography", "aiortc", "av"}


#: Storage records and the wire records they are shown as.
PAIRS = [
    (storage.Account, records.Account),
    (storage.Device, records.Device),
    (storage.Contact, records.Contact),
    (storage.Block, records.Block),
    (storage.Card, records.Card),
    (storage.MissedCall, records.MissedCall),
    (storage.PushRegistration, records.PushRegistration),
    (storage.FiledReport, records.FiledReport),
    (storage.Notice, records.Notice),
    (storage.Moderation, records.Moderation),
    (storage.AuditRecord, records.AuditRecord),
    (storage.Export, records.Export),
]


def _fields(kind: type) -> list[tuple[str, str, object]]:
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return [(f.name, _shape(f.type), f.default) for f in info.fields]


def _shape(info: msgspec.inspect.Type) -> str:
    """A type, with Struct names in place of their (module-specific) classes."""
    if isinstance(info, msgspec.inspect.StructType):
        return info.cls.__name__
    if isinstance(info, msgspec.inspect.ListType):
        return f"list[{_shape(info.item_type)}]"
    if isinstance(info, msgspec.inspect.UnionType):
        return " | ".join(sorted(_shape(t) for t in info.types))
    if isinstance(info, msgspec.inspect.LiteralType):
        return f"Literal{sorted(info.values)}"
    return type(info).__name__


@pytest.mark.parametrize(("stored", "wire"), PAIRS, ids=lambda k: k.__name__)
def test_storage_and_wire_records_have_the_same_fields(stored: type, wire: type) -> None:
    assert stored.__name__ == wire.__name__
    assert _fields(stored) == _fields(wire)


def test_literals_and_limits_agree() -> None:
    from directory import reports

    assert storage.RELAY_CHOICES == records.RELAY_CHOICES
    assert storage.AUDIENCES == records.AUDIENCES
    assert reports.MAX_STATEMENT == wire_operator.MAX_STATEMENT
    from signaling.protocol.bodies import MAX_REPORT_TEXT

    assert reports.MAX_TEXT == MAX_REPORT_TEXT


@pytest.mark.parametrize("raw", ["Alice", "ALICE.smith", "ﬀoo", "Straße", "ǅemal", "x" * 200, "İ"])
def test_handles_compare_as_the_server_normalises_them(raw: str) -> None:
    assert handles.normalize(raw) == directory_handles.normalize(raw)


def test_the_operator_views_report_and_audit_entries_match_the_address_books() -> None:
    from directory import audit, reports

    assert _fields(reports.Report) == _fields(wire_operator.Report)
    assert _fields(audit.AuditEntry) == _fields(wire_operator.AuditEntry)


def test_the_privacy_inventory_datum_matches() -> None:
    from directory import inventory
    from signaling.protocol.bodies import Datum

    assert _fields(inventory.Datum) == _fields(Datum)


def test_the_signaling_package_itself_imports_nothing() -> None:
    """The SDK's distribution ships ``signaling/__init__.py``: it must not pull in the server."""
    tree = ast.parse((REPO / "signaling" / "__init__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
