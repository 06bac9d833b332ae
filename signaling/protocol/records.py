"""The address book's records as the REST API shows them: accounts, devices, contacts, blocks,
lookups and the export.

These are the wire model. ``directory.records`` holds the storage model, which the server keeps
in Valkey and converts to these at the REST edge (``signaling.rest.framework.wire``); the two
have the same fields today, and tests/test_protocol_package.py fails when they drift apart.
No phone number, e-mail, birthday, biometric or IP address is ever part of them.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Audience = Literal["everyone", "contacts", "nobody"]
AUDIENCES: tuple[Audience, ...] = ("everyone", "contacts", "nobody")
#: Whose calls go through a relay for your sake: people who are not your contacts (the default),
#: everyone, or no one (then only the other side's setting can relay the call).
RelayCalls = Literal["strangers", "always", "never"]
RELAY_CHOICES: tuple[RelayCalls, ...] = ("strangers", "always", "never")


class Account(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    handle: str
    display_name: str | None
    created_day: str
    discoverable: Audience
    who_can_call: Audience
    #: ``relay_calls == "always"``, for clients older than ``relay_calls``.
    hide_ip: bool = False
    #: Which calls are relayed (TURN or the SFU) so that the peer never learns this IP address.
    relay_calls: RelayCalls = "strangers"
    #: An operator suspended the account: it cannot place calls and lookups do not find it.
    suspended: bool = False


class Device(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    public_key: str
    created_day: str
    last_seen_day: str
    #: The device's X25519 media key (raw 32 bytes, base64url), null until it publishes one.
    media_key: str | None = None
    #: Its Ed25519 signature (by ``public_key``) over ``signing.media_key_message(key)``.
    media_key_signature: str | None = None


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    """A contact as its owner sees it now: handle and name are null while the contact is not
    findable by the owner (undiscoverable, or blocking the owner), exactly as a lookup would."""

    account_id: str
    handle: str | None
    display_name: str | None
    nickname: str | None
    added_day: str


class Block(msgspec.Struct, frozen=True, kw_only=True):
    """A blocked account; its handle is shown under the same rule as a contact's."""

    account_id: str
    handle: str | None
    blocked_day: str


class Card(msgspec.Struct, frozen=True, kw_only=True):
    """What a lookup reveals about an account."""

    account_id: str
    handle: str
    display_name: str | None


class MissedCall(msgspec.Struct, frozen=True, kw_only=True):
    caller_account_id: str
    caller_handle: str
    at: int


PushProvider = Literal["apns", "fcm", "webhook"]
#: ``relay``: POSTed to the operator's push relay (the webhook); ``direct``: the server itself
#: sends to APNs (a VoIP push) or FCM (a high-priority data message) when it is configured to.
PushDelivery = Literal["relay", "direct"]


class PushRegistration(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    provider: PushProvider
    token: str
    delivery: PushDelivery = "relay"


Category = Literal["spam", "harassment", "impersonation", "illegal_content", "other"]
Decision = Literal["dismiss", "warn", "suspend", "ban_handle"]
Status = Literal["received", "unmatched", "decided"]
NoticeKind = Literal["report_decision", "suspension", "unsuspension"]


class FiledReport(msgspec.Struct, frozen=True, kw_only=True):
    """A report as its reporter sees it (in the export): never whether the handle matched."""

    id: str
    category: Category
    text: str
    call_id: str | None
    at: int
    status: Literal["received", "decided"]
    decision: Decision | None = None
    statement: str | None = None
    #: Unix seconds of the decision (null while undecided).
    decided_at: int | None = None


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """A statement of reasons addressed to one account."""

    id: str
    at: int
    kind: NoticeKind
    statement: str
    decision: Decision | None = None
    report: str | None = None
    role: Literal["reporter", "reported"] | None = None


class Moderation(msgspec.Struct, frozen=True, kw_only=True):
    """What operators set on your account (``Account.suspended`` says only whether)."""

    #: The day (UTC) an operator suspended the account; null when it is not suspended.
    suspended_since: str | None = None
    #: An operator banned your handle: when you change it or erase the account, it stays
    #: quarantined for good instead of 30 days.
    handle_banned: bool = False


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An operator action on you, from the audit log: one that targets your account, one of
    your devices (``account_id/device_id``) or a report you filed. The operator's name is left
    out (it is about the operator, not you)."""

    id: str
    at: int
    action: str
    target: str
    reason: str


class Export(msgspec.Struct, frozen=True, kw_only=True):
    account: Account
    devices: list[Device]
    contacts: list[Contact]
    blocks: list[Block]
    missed_calls: list[MissedCall]
    push_registrations: list[PushRegistration]
    #: Abuse reports you filed that are still kept.
    reports_filed: list[FiledReport] = msgspec.field(default_factory=list)
    #: Statements of reasons addressed to you.
    notices: list[Notice] = msgspec.field(default_factory=list)
    #: The suspension day and the handle ban.
    moderation: Moderation = msgspec.field(default_factory=Moderation)
    #: Operator actions on you, oldest first.
    operator_actions: list[AuditRecord] = msgspec.field(default_factory=list)
    recovery_code: str = "stored only as an argon2id hash; not recoverable"
