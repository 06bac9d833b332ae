"""How handles compare: NFKC + casefold, until stable (the server's ``directory.handles`` does
the same; tests/test_protocol_package.py checks that they agree).

A client needs it to match a typed handle against the canonical ones the server returns; which
handles may be registered is for the server to say (``invalid_handle``, ``handle_reserved``).
"""

from __future__ import annotations

import unicodedata


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
