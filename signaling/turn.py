"""Ephemeral TURN credentials in coturn's REST-API scheme (``use-auth-secret``).

The username is ``<expiry unix time>:<random id>``: coturn checks the expiry, and the random id
keeps the TURN server's logs from naming the account.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

MAX_TTL_S = 24 * 3600


def credentials(secret: str, ttl_s: int, now: float) -> tuple[str, str]:
    """(username, password) valid for ``ttl_s`` seconds from ``now``."""
    ttl_s = min(ttl_s, MAX_TTL_S)
    username = f"{int(now) + ttl_s}:{secrets.token_hex(8)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()
