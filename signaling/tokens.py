"""Access tokens: short-lived EdDSA JWTs naming an account and one of its devices.

Signing keys live in the store (``directory.keyring``) so every node verifies every node's tokens.
The newest key signs; a retired key keeps verifying until the last token it signed has expired.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from directory import keyring
from directory.operators import is_operator_token
from directory.records import SigningKey
from directory.store import Store
from signaling.errors import ApiError

USER_AUDIENCE = "callbook:user"
ISSUER = "callbook"
# A bogus key id must not make every request hit the store.
_MIN_RELOAD_INTERVAL_S = 1.0
# Tokens whose signature was already checked, so a device's requests skip the Ed25519 work.
_VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    device_id: str


def _new_key(now: float) -> SigningKey:
    raw = Ed25519PrivateKey.generate().private_bytes_raw()
    return SigningKey(
        kid=secrets.token_hex(8),
        private_key=base64.urlsafe_b64encode(raw).decode(),
        created_at=now,
    )


class TokenService:
    def __init__(self, store: Store, *, ttl_s: int, rotate_after_s: int) -> None:
        self._store = store
        self.ttl_s = ttl_s
        self._rotate_after_s = rotate_after_s
        self._signing: tuple[str, Ed25519PrivateKey] | None = None
        self._verifying: dict[str, Ed25519PublicKey] = {}
        self._last_load = 0.0
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def refresh(self) -> None:
        """Rotate the signing key when due and reload the keys every node has written."""
        stored = await keyring.rotate_if_due(
            self._store, _new_key, rotate_after_s=self._rotate_after_s, keep_for_s=self.ttl_s + 60
        )
        self._install(stored)

    def _install(self, stored: list[SigningKey]) -> None:
        self._last_load = time.monotonic()
        if not stored:
            return
        private = {
            k.kid: Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(k.private_key))
            for k in stored
        }
        self._signing = (stored[0].kid, private[stored[0].kid])
        self._verifying = {kid: key.public_key() for kid, key in private.items()}

    async def issue(self, principal: Principal) -> str:
        if self._signing is None:
            await self.refresh()
        if self._signing is None:
            raise ApiError("unavailable", "No signing key yet; try again in a moment.", 1)
        kid, key = self._signing
        now = int(self._store.clock())
        claims = {
            "iss": ISSUER,
            "aud": USER_AUDIENCE,
            "sub": principal.account_id,
            "did": principal.device_id,
            "iat": now,
            "exp": now + self.ttl_s,
        }
        return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})

    async def verify(self, token: str) -> Principal:
        """Check signature, audience and expiry; raises ApiError with a token_* code."""
        if is_operator_token(token):
            # Another audience (directory.operators): an operator is not a user.
            raise ApiError("token_invalid", "An operator token is not a device's access token.")
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at = cached
            if self._store.clock() < expires_at:
                return principal
            del self._verified[token]
        if len(token) > 2048:
            raise ApiError("token_invalid", "The access token is too long.")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise ApiError("token_invalid", "The access token is malformed.") from exc
        key = await self._key_for(kid)
        claims = self._decode(token, key)
        sub, did = claims.get("sub"), claims.get("did")
        if not isinstance(sub, str) or not isinstance(did, str):
            raise ApiError("token_invalid", "The access token names no device.")
        principal = Principal(account_id=sub, device_id=did)
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, float(claims["exp"]))
        return principal

    async def _key_for(self, kid: Any) -> Ed25519PublicKey:
        if not isinstance(kid, str):
            raise ApiError("token_invalid", "The access token has no key id.")
        key = self._verifying.get(kid)
        if key is None and time.monotonic() - self._last_load >= _MIN_RELOAD_INTERVAL_S:
            self._install(await keyring.load(self._store))
            key = self._verifying.get(kid)
        if key is None:
            raise ApiError("token_invalid", "The access token was signed by an unknown key.")
        return key

    def _decode(self, token: str, key: Ed25519PublicKey) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                audience=USER_AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise ApiError("token_expired", "The access token has expired; sign in again.") from exc
        except jwt.PyJWTError as exc:
            raise ApiError("token_invalid", "The access token is not valid.") from exc
        return claims
