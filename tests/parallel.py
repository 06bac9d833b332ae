"""How the suite shares the machine between several pytest-xdist workers, and which tests the
Redis 7 pass repeats (scripts/test.sh; docs in /work/shared/notes/testing.md and the README).

scripts/test.sh runs pytest with ``-n <workers> --dist loadgroup``. Every worker is a process
with its own session fixtures: its own Valkey (a unix socket in a temporary directory of its
own), SFU process and Redis Cluster; ports come from tests/ports.py. Tests that must not run at
the same time as one another share an ``xdist_group``: one worker runs the whole group, one test
after the other, while the other workers take everything else.

Groups are given here by what a test uses, so new tests join them without a mark of their own:

- ``chromium``: every test that drives Chromium (its module has ``CHROMIUM``, or it asks for a
  ``browsers`` fixture). Two browsers with fake media next to each other and a CPU hog would
  starve each other's encoders; such a test is also marked ``browser``.
- a module's own name: the tests of a module with a module-scoped fixture (a cluster of
  processes, a fuzzing server), so that fixture starts once, on one worker.

Any other test that must run alone among its kind marks itself
``@pytest.mark.xdist_group("name")`` with the name its kind shares.

The ``store`` mark: every test whose fixtures reach the session's store (the Redis 7 pass runs
``-m "store and not slow"``): a test that never touches it runs the same on any server. A test
that starts a store of its own from ``CALLBOOK_TEST_STORE_BINARY`` marks itself
``@pytest.mark.store``.
"""

from __future__ import annotations

import pytest

try:  # pytest >= 9.2: a node's id is a structured NodeId, and ``Item._nodeid`` is gone.
    from _pytest.nodeid import NodeId
except ImportError:  # pragma: no cover (older pytest: pytest-xdist's own suffix works)
    NodeId = None

BROWSER_GROUP = "chromium"
#: Fixtures that reach the session's store (conftest.py): through them a test touches it.
STORE_FIXTURES = frozenset({"valkey", "redis_url", "redis_cluster", "store_target"})


def _drives_chromium(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    return hasattr(module, "CHROMIUM") or "browsers" in getattr(item, "fixturenames", ())


def _module_scoped(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values())


def _group(item: pytest.Item) -> str | None:
    if _drives_chromium(item):
        return BROWSER_GROUP
    if item.get_closest_marker("xdist_group") is None and _module_scoped(item):
        return item.nodeid.split("::", 1)[0]
    return None


# Before pytest-xdist's own hook, which reads the groups into the test ids it schedules by.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):
        # On workers, slow tests first (stable: otherwise in file order): xdist hands out work in
        # this order after the groups, and a soak starting last would run on alone at the end.
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        if _drives_chromium(item):
            item.add_marker(pytest.mark.browser)
        group = _group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        if STORE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.store)


def _group_names(item: pytest.Item) -> str | None:
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return "_".join(sorted(names)) if names else None


# Before pytest-xdist's worker reports its collection: xdist 3.8 puts the group into the test id
# (``<id>@<group>``, what ``--dist loadgroup`` schedules by) by setting ``item._nodeid``, which
# pytest 9.2 no longer reads: without this every test would be scheduled on its own, groups or not.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    if NodeId is None or not getattr(session.config.option, "loadgroup", False):
        return
    for item in session.items:
        group = _group_names(item)
        if group is not None and not item.nodeid.endswith(f"@{group}"):
            item._id = NodeId.parse(f"{item.nodeid}@{group}")
