"""What the ``callbook`` command says when it fails: one line on stderr and an exit code.

Every exception a client command can end with is mapped here, in one place, so that no failure
reaches the user as a traceback (README, "CLI reference", lists the exit codes); the server's
commands add the store's failures (``signaling.cli.describe``). The mapping is pure: an
exception in, a ``Failure`` out.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import aiohttp
import msgspec

from signaling.protocol.closes import CLOSE_DRAINING, CLOSE_OPERATOR, CLOSE_REPLACED, CLOSE_REVOKED
from signaling.sdk.client import ClientError
from signaling.sdk.line import LineClosed, LineRefused

#: The request was refused or the call did not work; the line says why. Retrying will not help.
EXIT_FAILED = 1
#: The server (or, for ``operator``, the store) could not be reached or did not answer in time.
EXIT_UNREACHABLE = 2
#: The server is there but cannot serve now (store away, draining, rate limit): try again later.
EXIT_TRY_LATER = 3
#: The command line itself is wrong (an unknown flag, a missing argument, a bad value).
EXIT_USAGE = 64
#: A failure nobody foresaw: a bug in callbook, to report.
EXIT_BUG = 70
#: Interrupted (Ctrl-C), as shells report SIGINT.
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class Failure:
    exit_code: int
    line: str


class CliError(Exception):
    """A failure the command itself detected, with its sentence (exit 1 unless told)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


#: Every close code of the call WebSocket (docs/protocol.md 11.3): exit code and what happened.
CLOSE_CODES: dict[int, Failure] = {
    1001: Failure(EXIT_TRY_LATER, "The server shut down and closed the call connection."),
    1002: Failure(EXIT_BUG, "The server closed the call connection: this client broke the "
                            "WebSocket protocol (a bug in callbook)."),
    1003: Failure(EXIT_BUG, "The server closed the call connection: this client sent a binary "
                            "frame (a bug in callbook)."),
    1006: Failure(EXIT_UNREACHABLE, "The call connection dropped without a word from the server."),
    1007: Failure(EXIT_BUG, "The server closed the call connection: this client sent a frame "
                            "that is not JSON (a bug in callbook)."),
    1008: Failure(EXIT_FAILED, "The server closed the call connection: this device sent too "
                               "many messages, or read its own too slowly."),
    1009: Failure(EXIT_BUG, "The server closed the call connection: this client sent a message "
                            "over 64 KiB (a bug in callbook)."),
    1013: Failure(EXIT_TRY_LATER, "The server cannot take the call connection now; try again "
                                  "later."),
    CLOSE_REPLACED: Failure(EXIT_FAILED, "Replaced: this device connected again elsewhere "
                                         "(another command or app with the same profile)."),
    CLOSE_REVOKED: Failure(EXIT_FAILED, "This device was revoked or its account erased; its "
                                        "profile no longer signs in."),
    CLOSE_OPERATOR: Failure(EXIT_FAILED, "An operator disconnected this device."),
    CLOSE_DRAINING: Failure(EXIT_TRY_LATER, "The server is draining and the call connection "
                                            "could not move to another; run the command again."),
}  # fmt: skip

#: Problem and error codes that mean "not now" rather than "no".
_TEMPORARY_CODES = frozenset({"unavailable", "rate_limited", "draining", "too_many_connections"})


def describe(exc: BaseException) -> Failure:
    """The line (without the ``callbook:`` prefix) and exit code for a command that raised."""
    if isinstance(exc, KeyboardInterrupt):
        return Failure(EXIT_INTERRUPTED, "Interrupted.")
    if isinstance(exc, CliError):
        return Failure(exc.exit_code, str(exc))
    if isinstance(exc, ClientError):
        return _problem(exc)
    if isinstance(exc, LineRefused):
        kind = EXIT_TRY_LATER if exc.code in _TEMPORARY_CODES else EXIT_FAILED
        return Failure(kind, f"The server refused the call connection: {exc.detail} ({exc.code})")
    if isinstance(exc, LineClosed):
        return _closed(exc.code)
    return _transport(exc) or Failure(
        EXIT_BUG, f"Unexpected {type(exc).__name__}: {one_line(exc)} (a bug in callbook)"
    )


def _problem(exc: ClientError) -> Failure:
    if exc.code == "unreachable":
        return Failure(EXIT_UNREACHABLE, one_line(exc))
    temporary = exc.code in _TEMPORARY_CODES or exc.status in (429, 502, 503, 504)
    return Failure(EXIT_TRY_LATER if temporary else EXIT_FAILED, one_line(exc))


def _closed(code: int | None) -> Failure:
    known = CLOSE_CODES.get(code if code is not None else 1006)
    if known is not None:
        return Failure(known.exit_code, f"{known.line} (close code {code or 1006})")
    return Failure(EXIT_FAILED, f"The server closed the call connection (close code {code}).")


def _transport(exc: BaseException) -> Failure | None:
    """Failures below the protocol: the network, files, answers not understood."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        temporary = exc.status in (429, 503)
        return Failure(
            EXIT_TRY_LATER if temporary else EXIT_FAILED,
            f"The server refused the call connection (HTTP {exc.status}).",
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return Failure(EXIT_USAGE, f"Not a server URL: {exc}")
    if isinstance(exc, aiohttp.ClientConnectionError):
        return Failure(EXIT_UNREACHABLE, f"Cannot reach the server: {one_line(exc)}")
    if isinstance(exc, TimeoutError):
        return Failure(EXIT_UNREACHABLE, "The server did not answer in time.")
    if isinstance(exc, msgspec.DecodeError):
        return Failure(EXIT_FAILED, f"The server's answer was not understood: {one_line(exc)}")
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRINUSE:
            return Failure(EXIT_FAILED, f"The address is already in use: {one_line(exc)}")
        where = f": {exc.filename}" if exc.filename else ""
        return Failure(EXIT_FAILED, f"{exc.strerror or one_line(exc)}{where}")
    return None


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
