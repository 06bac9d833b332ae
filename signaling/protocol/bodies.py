"""Request and response bodies of the REST API: one Struct per message.

The address book's records (``Account``, ``Device`` ...) are in ``records``; the operator API's
bodies in ``operator``. Every request Struct forbids unknown fields and bounds every string.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from signaling.protocol.messages import IceServer
from signaling.protocol.records import (
    Account,
    Audience,
    Block,
    Category,
    Contact,
    Device,
    MissedCall,
    Notice,
    PushDelivery,
    PushProvider,
    RelayCalls,
)

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


#: The longest text a report may carry.
MAX_REPORT_TEXT = 1000


class ReportRequest(Request):
    """Report a person by handle; ``call_id`` names the call it is about, if any."""

    handle: HandleText
    category: Category
    text: Annotated[str, msgspec.Meta(max_length=MAX_REPORT_TEXT)] = ""
    call_id: Id | None = None


class ReportReceipt(msgspec.Struct, kw_only=True):
    """The same answer whether or not the handle names anyone you may find."""

    report: str
    status: Literal["received"] = "received"


class Notices(msgspec.Struct, kw_only=True):
    notices: list[Notice]


class Datum(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    key_pattern: str
    #: Every field stored, by its name in the store.
    fields: list[str]
    #: The key's type in the store.
    type: Literal["hash", "string", "set", "sorted_set", "stream"]
    #: Entries keyed by an id (hash field, set or sorted-set member): what that id is.
    entry: str | None = None
    #: A sorted set: what its score is.
    score: str | None = None
    purpose: str
    retention: str
    #: Upper bound of the key's TTL in seconds; None when it lives until erased.
    max_ttl_s: int | None
    #: Whether a key may also have no TTL at all (a handle while it is owned).
    may_persist: bool = False
    visible_to: str
    scope: Literal["account", "handle", "ephemeral", "server", "moderation"]
    in_export: bool
    #: Where your export (``GET /v1/me/export``) holds it, or why it does not.
    export: str


class Inventory(msgspec.Struct, kw_only=True):
    """Every kind of datum in the store: key pattern, fields, purpose, retention, who sees it."""

    data: list[Datum]
