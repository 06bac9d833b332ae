"""Bodies of the operator API, ``/v1/operator/...``: live calls, nodes, reports, the audit log.

Participants are named only by pseudonyms (an HMAC of the call id and the account under a
secret of the node: stable within a call, linkable to nothing else); handles come only from
``reveal``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from signaling.protocol.bodies import Request
from signaling.protocol.records import Category, Decision, Status

#: The longest statement of reasons an operator may write.
MAX_STATEMENT = 2000

Reason = Annotated[str, msgspec.Meta(min_length=10, max_length=500)]
Statement = Annotated[str, msgspec.Meta(min_length=10, max_length=MAX_STATEMENT)]


class OperatorReason(Request):
    """Why: written to the audit log (and, for a suspension, to the account's notices)."""

    reason: Reason


class DecisionRequest(Request):
    decision: Decision
    #: The statement of reasons the reporter and the reported account receive.
    statement: Statement


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    at: float
    rtt_ms: float
    jitter_ms: float
    loss: float
    bitrate_kbps: float


class Leg(msgspec.Struct, kw_only=True):
    """One participant's media as its device reports it (null until the first report)."""

    participant: str
    rtt_ms: float | None
    jitter_ms: float | None
    loss: float | None
    bitrate_kbps: float | None
    relayed: bool | None
    history: list[Sample]


class LiveCall(msgspec.Struct, kw_only=True):
    id: str
    kind: Literal["1:1", "group"]
    state: Literal["ringing", "connected", "reconnecting"]
    media: Literal["audio", "video"]
    started_at: int
    duration_s: float
    node: str
    participant_count: int
    #: Pseudonyms, stable within this call only.
    participants: list[str]
    relay: Literal["p2p", "turn", "sfu", "unknown"]
    legs: list[Leg]
    #: The peer-to-peer path failed and the call moved to the relay ``relay`` names.
    fell_back: bool = False


class Node(msgspec.Struct, kw_only=True):
    id: str
    version: str
    connections: int
    active_calls: int
    started_at: int
    last_heartbeat: int
    #: ``media``: an SFU, whose connections are participants and calls are rooms.
    kind: Literal["signaling", "media"] = "signaling"


class LiveCalls(msgspec.Struct, kw_only=True):
    calls: list[LiveCall]


class RevealedParticipant(msgspec.Struct, kw_only=True):
    participant: str
    role: Literal["caller", "callee", "host", "participant"]
    account_id: str
    #: The device in the call (null for a callee that has not answered).
    device_id: str | None
    handle: str | None


class Revealed(msgspec.Struct, kw_only=True):
    call_id: str
    participants: list[RevealedParticipant]
    audit_id: str


class Nodes(msgspec.Struct, kw_only=True):
    """Every live node serving calls: this one, the others in the node registry, and the media
    nodes (the registry's, or a fixed one)."""

    nodes: list[Node]


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    #: The stream id: pass it as ``after`` to read on from here.
    id: str
    at: int
    operator: str
    action: str
    target: str
    reason: str


class AuditLog(msgspec.Struct, kw_only=True):
    entries: list[AuditEntry]
    #: Pass as ``after`` to read on; null when there was nothing.
    next: str | None


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """A report as operators see it: parties by account id (null: unmatched or erased)."""

    id: str
    category: Category
    text: str
    call_id: str | None
    at: int
    status: Status
    reporter: str | None
    reported: str | None
    decision: Decision | None = None
    statement: str | None = None
    decided_at: int | None = None


class ReportQueue(msgspec.Struct, kw_only=True):
    reports: list[Report]


class Snapshot(msgspec.Struct, kw_only=True):
    """One event of ``GET /v1/operator/events``."""

    calls: list[LiveCall]
    nodes: list[Node]
