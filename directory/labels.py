"""Free-text labels people give (display names, nicknames, device names).

Any script and emoji (with their joiners) are welcome; control characters, line breaks,
unassigned code points and bidirectional overrides (which can make a name display as another) are
not.
"""

from __future__ import annotations

import unicodedata

from directory.errors import InvalidValue

_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check(value: str | None, max_length: int, what: str, *, required: bool = False) -> str | None:
    """The label trimmed, or None when empty and optional; raises InvalidValue otherwise."""
    text = unicodedata.normalize("NFC", value).strip() if value is not None else ""
    if not text:
        if required:
            raise InvalidValue(f"A {what} cannot be empty.")
        return None
    if len(text) > max_length:
        raise InvalidValue(f"A {what} has at most {max_length} characters.")
    for char in text:
        if char in _BIDI_CONTROLS or unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise InvalidValue(
                f"A {what} cannot contain U+{ord(char):04X} (control or formatting character)."
            )
    return text
