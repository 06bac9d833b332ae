"""Request and response bodies of the REST API: one Struct per message.

Responses that are plain address-book records reuse ``directory.records`` directly, so each
shape is defined once. Every request Struct forbids unknown fields and bounds every string.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from directory.errors import InvalidMediaKey
from directory.records import (
    Account,
    Audience,
    Block,
    Contact,
    Device,
    MissedCall,
    PushDelivery,
    PushProvider,
    RelayCalls,
)
from signaling.protocol.messages import IceServer

Id = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$", description="Opaque id (32 hex)")]
HandleText = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        description="A handle as typed; normalised with NFKC + casefold",
        examples=["alice", "bob.smith"],
    ),
]
DisplayName = Annotated[str, msgspec.Meta(max_length=64)]
DeviceName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Nickname = Annotated[str, msgspec.Meta(max_length=64)]
PublicKey = Annotated[
    str,
    msgspec.Meta(
        min_length=43, max_length=44, description="Raw 32-byte Ed25519 public key, base64url"
    ),
]
Signature = Annotated[
    str, msgspec.Meta(min_length=86, max_length=88, description="Ed25519 signature, base64url")
]
MediaKeyText = Annotated[
    str,
    msgspec.Meta(
        min_length=43, max_length=44, description="Raw 32-byte X25519 public key, base64url"
    ),
]
MediaKeySignature = Annotated[
    str,
    msgspec.Meta(
        min_length=86,
        max_length=88,
        description='Ed25519 signature by the device key over b"callbook media key v1\\x00" + '
        "the raw media key, base64url",
    ),
]
Nonce = Annotated[str, msgspec.Meta(min_length=16, max_length=128)]
RecoveryCode = Annotated[str, msgspec.Meta(min_length=16, max_length=64)]


class Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: unknown fields are an error, not silently dropped."""


class DeviceEnrollment(Request):
    name: DeviceName
    public_key: PublicKey
    #: The device's X25519 media key with its signature by ``public_key``: both or neither.
    media_key: MediaKeyText | None = None
    media_key_signature: MediaKeySignature | None = None

    def signed_media_key(self) -> tuple[str, str] | None:
        if self.media_key is None and self.media_key_signature is None:
            return None
        if self.media_key is None or self.media_key_signature is None:
            raise InvalidMediaKey("Give both media_key and media_key_signature, or neither.")
        return self.media_key, self.media_key_signature


class MediaKeyPublish(Request):
    """A device's X25519 media key, signed by the device's own sign-in key (docs/e2ee.md)."""

    media_key: MediaKeyText
    media_key_signature: MediaKeySignature


PuzzleChallenge = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
PuzzleSolution = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class PuzzleRequest(Request):
    """Ask for a puzzle to solve before a sign-up or a recovery (``handle``: the one to
    recover)."""

    purpose: Literal["signup", "recovery"]
    handle: HandleText | None = None


class Puzzle(msgspec.Struct, kw_only=True):
    """Find a ``solution`` (at most 32 characters) such that SHA-256 of
    ``challenge + ":" + solution`` (UTF-8) starts with ``bits`` zero bits; 0 bits: any."""

    challenge: str
    bits: int
    expires_in: int


class PuzzleProof(Request):
    challenge: PuzzleChallenge
    solution: PuzzleSolution


class SignupRequest(Request):
    handle: HandleText
    device: DeviceEnrollment
    display_name: DisplayName | None = None
    #: Needed when the server is under pressure (``puzzle_required``); see POST /v1/puzzles.
    puzzle: PuzzleProof | None = None


class Enrollment(msgspec.Struct, kw_only=True):
    """A new device on an account, with the recovery code shown this once."""

    account: Account
    device: Device
    recovery_code: str


class Challenge(msgspec.Struct, kw_only=True):
    nonce: str
    expires_in: int


class TokenRequest(Request):
    account_id: Id
    device_id: Id
    nonce: Nonce
    signature: Signature


class TokenResponse(msgspec.Struct, kw_only=True):
    access_token: str
    expires_in: int
    account_id: str
    device_id: str
    token_type: Literal["Bearer"] = "Bearer"


class RecoveryRequest(Request):
    handle: HandleText
    recovery_code: RecoveryCode
    device: DeviceEnrollment
    revoke_other_devices: bool = False
    #: Needed when the server or this handle is under pressure; see POST /v1/puzzles.
    puzzle: PuzzleProof | None = None


class AccountUpdate(Request):
    handle: HandleText | msgspec.UnsetType = msgspec.UNSET
    display_name: DisplayName | msgspec.UnsetType | None = msgspec.UNSET
    discoverable: Audience | msgspec.UnsetType = msgspec.UNSET
    who_can_call: Audience | msgspec.UnsetType = msgspec.UNSET
    hide_ip: bool | msgspec.UnsetType = msgspec.UNSET
    relay_calls: RelayCalls | msgspec.UnsetType = msgspec.UNSET


class DeviceList(msgspec.Struct, kw_only=True):
    devices: list[Device]


class DeviceRename(Request):
    name: DeviceName


class ContactAdd(Request):
    handle: HandleText
    nickname: Nickname | None = None


class ContactUpdate(Request):
    nickname: Nickname | None


class ContactList(msgspec.Struct, kw_only=True):
    contacts: list[Contact]


class BlockAdd(Request):
    """Block by handle, or by account id (a caller whose handle you cannot find)."""

    handle: HandleText | None = None
    account_id: Id | None = None


class BlockList(msgspec.Struct, kw_only=True):
    blocks: list[Block]


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok", "unavailable", "draining"]


class IceServers(msgspec.Struct, kw_only=True):
    """Pass ``ice_servers`` to RTCPeerConnection; fetch again before ``ttl`` seconds pass."""

    ice_servers: list[IceServer]
    ttl: int
    #: The server runs an SFU: with no TURN server, calls that hide IP addresses go through it
    #: (protocol 11.9) instead of failing.
    sfu: bool = False


class MissedCalls(msgspec.Struct, kw_only=True):
    missed_calls: list[MissedCall]


class PushRegister(Request):
    provider: PushProvider
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    delivery: Annotated[
        PushDelivery,
        msgspec.Meta(
            description="relay (the default): the operator's push relay receives the wake-up. "
            "direct (apns or fcm only): the server sends it to APNs as a VoIP push (the token is "
            "a PushKit token) or to FCM as a high-priority data message; through the relay when "
            "the server has no credentials for that provider."
        ),
    ] = "relay"
