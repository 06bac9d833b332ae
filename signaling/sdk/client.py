"""A Callbook client: what a native app does, for the CLI, bots, tests and benchmarks.

The profile file holds this device's private keys (the Ed25519 device key and the X25519 media
key, docs/e2ee.md), so it is written with mode 0600.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from signaling.protocol import puzzles
from signaling.protocol.bodies import (
    AccountUpdate,
    BlockAdd,
    BlockList,
    Challenge,
    ContactAdd,
    ContactList,
    DeviceEnrollment,
    DeviceList,
    Enrollment,
    MediaKeyPublish,
    Puzzle,
    PuzzleProof,
    PuzzleRequest,
    RecoveryRequest,
    SignupRequest,
    TokenRequest,
    TokenResponse,
)
from signaling.protocol.problems import Problem
from signaling.protocol.records import Account, Block, Card, Contact, Device, Export
from signaling.protocol.signing import media_key_message, signin_message

T = TypeVar("T")

#: A puzzle can go stale between solving and sending (the server got busier): ask again.
PUZZLE_ATTEMPTS = 3


class Profile(msgspec.Struct, kw_only=True):
    server: str
    account_id: str
    device_id: str
    handle: str
    private_key: str
    recovery_code: str | None = None
    #: The X25519 media key (raw private bytes, base64url); absent in profiles from before
    #: end-to-end encrypted calls until their next sign-in publishes one.
    media_private_key: str | None = None

    def key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(_b64decode(self.private_key))

    def media_key(self) -> X25519PrivateKey | None:
        if self.media_private_key is None:
            return None
        return X25519PrivateKey.from_private_bytes(_b64decode(self.media_private_key))

    def save(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.format(msgspec.json.encode(self)) + b"\n")
        os.chmod(path, 0o600)

    @classmethod
    def load(cls, path: Path) -> Profile:
        return msgspec.json.decode(path.read_bytes(), type=cls)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_device_key() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, _b64(key.public_key().public_bytes_raw())


def new_media_key(device_key: Ed25519PrivateKey) -> tuple[X25519PrivateKey, MediaKeyPublish]:
    """A fresh X25519 media key, and its public half signed by the device key (protocol 3.7)."""
    key = X25519PrivateKey.generate()
    raw = key.public_key().public_bytes_raw()
    signed = MediaKeyPublish(
        media_key=_b64(raw), media_key_signature=_b64(device_key.sign(media_key_message(raw)))
    )
    return key, signed


def enrollment(name: str) -> tuple[Ed25519PrivateKey, X25519PrivateKey, DeviceEnrollment]:
    """A new device's two keys, and the enrollment that publishes both."""
    key, public = new_device_key()
    media, signed = new_media_key(key)
    body = DeviceEnrollment(
        name=name,
        public_key=public,
        media_key=signed.media_key,
        media_key_signature=signed.media_key_signature,
    )
    return key, media, body


@dataclass
class ClientError(Exception):
    """A problem+json answer, or a failure to reach the server at all."""

    status: int
    code: str
    detail: str
    retry_after: int | None = None

    def __str__(self) -> str:
        return f"{self.detail} ({self.code})"


class Client:
    def __init__(
        self,
        server: str,
        profile: Profile | None = None,
        *,
        local_address: str | None = None,
        on_profile_change: Callable[[Profile], None] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """``local_address``: the address to connect from (tests and benchmarks on loopback
        act as several sources: 127.0.0.2, 127.0.0.3, ...). ``on_profile_change``: keeps the
        profile when signing in added a media key to it (write it back to its file)."""
        self.server = server.rstrip("/")
        self.profile = profile
        self._on_profile_change = on_profile_change
        connector = None
        if local_address is not None:
            connector = aiohttp.TCPConnector(local_addr=(local_address, 0))
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s), connector=connector
        )
        self._token: str | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        kind: type[T] | None = None,
        body: msgspec.Struct | None = None,
        *,
        auth: bool = True,
    ) -> Any:
        headers = {}
        if auth:
            headers["Authorization"] = f"Bearer {await self.token()}"
        data = None
        if body is not None:
            data = msgspec.json.encode(body)
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method, self.server + path, data=data, headers=headers
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise _problem(response.status, raw)
        except aiohttp.ClientConnectionError as exc:
            raise ClientError(0, "unreachable", f"Cannot reach {self.server}: {exc}") from exc
        if kind is None:
            return None
        return msgspec.json.decode(raw, type=kind)

    async def solve_puzzle(self, purpose: puzzles.Purpose, handle: str | None) -> PuzzleProof:
        """Ask for a puzzle and solve it (off the event loop: it may take a second)."""
        asked = PuzzleRequest(purpose=purpose, handle=handle)
        given: Puzzle = await self.request("POST", "/v1/puzzles", Puzzle, asked, auth=False)
        solution = await asyncio.to_thread(puzzles.solve, given.challenge, given.bits)
        return PuzzleProof(challenge=given.challenge, solution=solution)

    async def _enroll(
        self, path: str, body: SignupRequest | RecoveryRequest, handle: str | None
    ) -> Enrollment:
        purpose: puzzles.Purpose = "signup" if isinstance(body, SignupRequest) else "recovery"
        for attempt in range(PUZZLE_ATTEMPTS):
            try:
                body.puzzle = await self.solve_puzzle(purpose, handle)
            except ClientError as error:
                if error.code != "no_route":
                    raise
                body.puzzle = None  # a server from before puzzles
            try:
                done: Enrollment = await self.request("POST", path, Enrollment, body, auth=False)
                return done
            except ClientError as error:
                if error.code != "puzzle_required" or attempt == PUZZLE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def signup(
        self, handle: str, display_name: str | None = None, device_name: str = "cli"
    ) -> tuple[Enrollment, Profile]:
        key, media, device = enrollment(device_name)
        body = SignupRequest(handle=handle, display_name=display_name, device=device)
        done = await self._enroll("/v1/accounts", body, None)
        return done, self._adopt(done, key, media)

    async def recover(
        self, handle: str, code: str, *, device_name: str = "cli", revoke_others: bool = False
    ) -> tuple[Enrollment, Profile]:
        """Enroll this client as a new device of the account, with its recovery code."""
        key, media, device = enrollment(device_name)
        body = RecoveryRequest(
            handle=handle, recovery_code=code, device=device, revoke_other_devices=revoke_others
        )
        done = await self._enroll("/v1/recovery", body, handle)
        return done, self._adopt(done, key, media)

    def _adopt(self, done: Enrollment, key: Ed25519PrivateKey, media: X25519PrivateKey) -> Profile:
        self._token = None
        self.profile = Profile(
            server=self.server,
            account_id=done.account.id,
            device_id=done.device.id,
            handle=done.account.handle,
            private_key=_b64(key.private_bytes_raw()),
            recovery_code=done.recovery_code,
            media_private_key=_b64(media.private_bytes_raw()),
        )
        return self.profile

    async def sign_in(self) -> TokenResponse:
        if self.profile is None:
            raise ClientError(0, "no_profile", "This client has no profile to sign in with.")
        profile = self.profile
        challenge: Challenge = await self.request(
            "POST", "/v1/auth/challenge", Challenge, auth=False
        )
        message = signin_message(profile.account_id, profile.device_id, challenge.nonce)
        body = TokenRequest(
            account_id=profile.account_id,
            device_id=profile.device_id,
            nonce=challenge.nonce,
            signature=_b64(profile.key().sign(message)),
        )
        response: TokenResponse = await self.request(
            "POST", "/v1/auth/token", TokenResponse, body, auth=False
        )
        self._token = response.access_token
        if profile.media_private_key is None:
            await self._publish_media_key(profile)
        return response

    async def _publish_media_key(self, profile: Profile) -> None:
        """A profile from before media keys gets one now (calls through the SFU need it)."""
        media, signed = new_media_key(profile.key())
        path = f"/v1/devices/{profile.device_id}/media-key"
        try:
            await self.request("PUT", path, Device, signed)
        except ClientError as error:
            if error.code == "no_route":
                return  # a server from before end-to-end encrypted calls
            raise
        profile.media_private_key = _b64(media.private_bytes_raw())
        if self._on_profile_change is not None:
            self._on_profile_change(profile)

    async def token(self) -> str:
        if self._token is None:
            await self.sign_in()
        assert self._token is not None
        return self._token

    async def me(self) -> Account:
        account: Account = await self.request("GET", "/v1/me", Account)
        return account

    async def update(self, update: AccountUpdate) -> Account:
        account: Account = await self.request("PATCH", "/v1/me", Account, update)
        return account

    async def whois(self, handle: str) -> Card:
        card: Card = await self.request("GET", f"/v1/handles/{quote(handle, safe='')}", Card)
        return card

    async def devices(self) -> list[Device]:
        listing: DeviceList = await self.request("GET", "/v1/devices", DeviceList)
        return listing.devices

    async def contacts(self) -> list[Contact]:
        listing: ContactList = await self.request("GET", "/v1/contacts", ContactList)
        return listing.contacts

    async def add_contact(self, handle: str, nickname: str | None = None) -> Contact:
        contact: Contact = await self.request(
            "POST", "/v1/contacts", Contact, ContactAdd(handle=handle, nickname=nickname)
        )
        return contact

    async def remove_contact(self, account_id: str) -> None:
        await self.request("DELETE", f"/v1/contacts/{account_id}")

    async def blocks(self) -> list[Block]:
        listing: BlockList = await self.request("GET", "/v1/blocks", BlockList)
        return listing.blocks

    async def block(self, handle: str) -> Block:
        block: Block = await self.request("POST", "/v1/blocks", Block, BlockAdd(handle=handle))
        return block

    async def unblock(self, account_id: str) -> None:
        await self.request("DELETE", f"/v1/blocks/{account_id}")

    async def export(self) -> Export:
        document: Export = await self.request("GET", "/v1/me/export", Export)
        return document

    async def erase(self) -> None:
        await self.request("DELETE", "/v1/me")


def _problem(status: int, raw: bytes) -> ClientError:
    with contextlib.suppress(msgspec.DecodeError):
        problem = msgspec.json.decode(raw, type=Problem)
        return ClientError(status, problem.code, problem.detail, problem.retry_after)
    return ClientError(status, "http_error", f"The server answered HTTP {status}.")
