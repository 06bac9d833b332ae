"""The layering rules, read from the source's imports (README.md, "Layout").

- ``directory`` and ``media`` never import ``signaling``; ``directory`` never imports ``media``.
- ``media`` knows no people: of ``directory`` it imports only ``directory.storage`` (the
  connection, the keys, the media-node registry), and that package imports nothing else of
  ``directory``.
- The modules of ``signaling/calls/`` import each other without a cycle, type-only imports
  included: each is readable on its own, below the ones that use it.

Every import counts, also those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        yield _module(path), path


def _imports(module: str, path: Path) -> set[str]:
    """Every module ``path`` imports, absolute; ``from a import b`` counts as ``a`` and ``a.b``."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _offences(package: str, forbidden: str, allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, path in _sources(package)
        for name in _imports(module, path)
        if _within(name, forbidden) and not any(_within(name, a) for a in allowed)
    )


def test_directory_and_media_never_import_signaling() -> None:
    assert _offences("directory", "signaling") == []
    assert _offences("media", "signaling") == []


def test_directory_never_imports_media() -> None:
    assert _offences("directory", "media") == []


def test_media_imports_only_the_people_free_storage_of_directory() -> None:
    assert _offences("media", "directory", allowed=("directory.storage",)) == []


def test_the_storage_package_imports_nothing_else_of_directory() -> None:
    assert _offences("directory.storage", "directory", allowed=("directory.storage",)) == []


def test_the_call_modules_import_each_other_without_a_cycle() -> None:
    graph = {
        module: {
            name
            for name in _imports(module, path)
            if _within(name, "signaling.calls") and name != module
        }
        for module, path in _sources("signaling.calls")
    }
    modules = set(graph)
    # ``from signaling.calls import machine`` names the package and the module: keep modules.
    edges = {
        m: {n for n in names if n in modules and n != "signaling.calls"}
        for m, names in graph.items()
    }
    assert _cycle(edges) == []


def _cycle(edges: dict[str, set[str]]) -> list[str]:
    """One import cycle, as the modules along it, or [] when there is none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str]:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return []
        path.append(module)
        for name in sorted(edges.get(module, ())):
            if found := visit(name):
                return found
        path.pop()
        done.add(module)
        return []

    for module in sorted(edges):
        if found := visit(module):
            return found
    return []


def test_the_rules_see_a_cycle_and_a_forbidden_import() -> None:
    """The walk itself: it finds what it is there to find."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
    here = _imports("tests.test_dependency_rules", Path(__file__))
    assert "pathlib.Path" in here and "ast" in here
