"""Operator identities: named bearer tokens for the operator API, kept only as SHA-256 digests.

Operator tokens are opaque random strings, not JWTs like the devices' access tokens. An operator
token lives for months, there are a handful of them, and revoking one must take effect on the
next request: a signed token would need a revocation list in the store anyway, so the store's
record *is* the token's validity, and a JWT would add a second, weaker source of truth. Only
the digest is stored, so a copy of the store does not yield a usable token. The ``cbo_`` prefix
keeps them apart from access tokens (the user audience): each API refuses the other's tokens.
"""

from __future__ import annotations

import hashlib
import re
import secrets

import msgspec

from directory.errors import InvalidValue, NotFound
from directory.storage import keys
from directory.store import Store

TOKEN_PREFIX = "cbo_"
#: The audience operator tokens are for; access tokens of devices carry ``callbook:user``.
OPERATOR_AUDIENCE = "callbook:operator"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
_MAX_TOKEN = 128


class Operator(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    created_day: str


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Operator).decode


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_operator_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


async def create(store: Store, name: str) -> str:
    """A new operator named ``name``; returns the token (shown once, never stored)."""
    if not _NAME.fullmatch(name):
        raise InvalidValue("An operator name is 1-32 of a-z, 0-9, _, . and -, starting alnum.")
    if any(op.name == name for op in await list_all(store)):
        raise InvalidValue(f"An operator named {name!r} exists; revoke it first.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = Operator(name=name, created_day=store.today())
    await store.redis.hset(keys.operators(), digest(token), _encode(record))
    return token


async def authenticate(store: Store, token: str) -> Operator | None:
    """The operator holding ``token``, or None (unknown, revoked or malformed)."""
    if not is_operator_token(token) or len(token) > _MAX_TOKEN:
        return None
    raw = await store.redis.hget(keys.operators(), digest(token))
    return None if raw is None else _decode(raw)


async def list_all(store: Store) -> list[Operator]:
    raw: dict[str, str] = await store.redis.hgetall(keys.operators())
    return sorted((_decode(v) for v in raw.values()), key=lambda op: op.name)


async def revoke(store: Store, name: str) -> None:
    """Every token of the operator stops working at once."""
    raw: dict[str, str] = await store.redis.hgetall(keys.operators())
    mine = [field for field, value in raw.items() if _decode(value).name == name]
    if not mine:
        raise NotFound(f"No operator named {name!r}.")
    await store.redis.hdel(keys.operators(), *mine)
