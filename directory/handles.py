"""Handle rules: normalisation, syntax and the reserved list."""

from __future__ import annotations

import re
import unicodedata

from directory.errors import InvalidHandle, ReservedHandle

MIN_LENGTH = 3
MAX_LENGTH = 32
# Input longer than this is rejected before Unicode normalisation touches it.
MAX_INPUT_LENGTH = 4 * MAX_LENGTH

_SYNTAX = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")

RESERVED: frozenset[str] = frozenset(
    {
        "abuse", "admin", "administrator", "api", "billing", "callbook", "help", "hostmaster",
        "info", "mod", "moderator", "noreply", "no_reply", "null", "official", "operator",
        "postmaster", "privacy", "root", "security", "staff", "support", "system", "team",
        "undefined", "webmaster",
    }
)  # fmt: skip


def normalize(raw: str) -> str:
    """NFKC + casefold, applied until stable so that normalisation is idempotent."""
    text = unicodedata.normalize("NFKC", raw)
    # A few characters need more than one round; real text settles within three.
    for _ in range(4):
        folded = unicodedata.normalize("NFKC", text.casefold())
        if folded == text:
            break
        text = folded
    return text


def parse(raw: str) -> str:
    """Return the canonical form of a handle a person may register, or raise why not."""
    if len(raw) > MAX_INPUT_LENGTH:
        raise InvalidHandle(f"A handle has at most {MAX_LENGTH} characters.")
    handle = normalize(raw)
    if not MIN_LENGTH <= len(handle) <= MAX_LENGTH:
        raise InvalidHandle(
            f"A handle has {MIN_LENGTH} to {MAX_LENGTH} characters; this one has {len(handle)}."
        )
    if not _SYNTAX.fullmatch(handle):
        raise InvalidHandle("A handle uses only a-z, 0-9 and _, with single dots between them.")
    if handle in RESERVED or handle.replace(".", "").replace("_", "") in RESERVED:
        raise ReservedHandle(f"The handle {handle!r} is reserved.")
    return handle


def parse_lookup(raw: str) -> str | None:
    """Canonical form for a lookup, or None when no account could ever hold it."""
    try:
        return parse(raw)
    except (InvalidHandle, ReservedHandle):
        return None
