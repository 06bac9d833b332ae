"""The operator API, ``/v1/operator/...``: live calls, nodes, actions, reports and the audit log.

Every endpoint needs an operator token (``callbook operator create``). The call views name
participants only by pseudonyms (an HMAC of the call id and the account under a secret of this
node: stable within a call, linkable to nothing else); handles come only from ``reveal``, which
needs a reason and is written to the audit log like every other action.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from directory import accounts, audit, reports
from directory.audit import AuditEntry
from directory.errors import NotFound
from directory.records import Decision, Notice
from directory.reports import Report
from signaling.appkeys import CALLS, METRICS, NODE, SOCKETS, STREAMS
from signaling.calls import group as g
from signaling.calls import machine as sm
from signaling.calls.kinds import AnyCall
from signaling.calls.quality import QualityBook, Sample
from signaling.errors import ApiError
from signaling.rest.framework import Call
from signaling.rest.table import API, BODY_ERRORS, ID_PARAM, store
from signaling.schemas import Request

TAG = "operator"
OPERATOR_ERRORS = ("token_missing", "token_invalid", "token_expired", "not_operator")
_CALL = {"call_id": ID_PARAM}
_REPORT = {"report_id": ID_PARAM}
_ACCOUNT = {"account_id": ID_PARAM}
_DEVICE = {"account_id": ID_PARAM, "device_id": ID_PARAM}
STREAM_INTERVAL_S = 0.5
_encode = msgspec.json.Encoder().encode

Reason = Annotated[str, msgspec.Meta(min_length=10, max_length=500)]
Statement = Annotated[str, msgspec.Meta(min_length=10, max_length=reports.MAX_STATEMENT)]


class OperatorReason(Request):
    """Why: written to the audit log (and, for a suspension, to the account's notices)."""

    reason: Reason


class DecisionRequest(Request):
    decision: Decision
    #: The statement of reasons the reporter and the reported account receive.
    statement: Statement


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


class Node(msgspec.Struct, kw_only=True):
    id: str
    version: str
    connections: int
    active_calls: int
    started_at: int
    last_heartbeat: int
    #: ``media``: an SFU, whose connections are participants and calls are rooms.
    kind: Literal["signaling", "media"] = "signaling"


class Nodes(msgspec.Struct, kw_only=True):
    """This signaling node and the media nodes it knows (the registry's, or its one fixed SFU)."""

    nodes: list[Node]


class AuditLog(msgspec.Struct, kw_only=True):
    entries: list[AuditEntry]
    #: Pass as ``after`` to read on; null when there was nothing.
    next: str | None


class ReportQueue(msgspec.Struct, kw_only=True):
    reports: list[Report]


class Snapshot(msgspec.Struct, kw_only=True):
    """One event of ``GET /v1/operator/events``."""

    calls: list[LiveCall]
    nodes: list[Node]


# --- views -------------------------------------------------------------------------------------


def _state(call: AnyCall) -> Literal["ringing", "connected", "reconnecting"]:
    if isinstance(call, g.GroupCall):
        return "reconnecting" if any(m.lost for m in call.members.values()) else "connected"
    if call.phase is sm.Phase.RINGING:
        return "ringing"
    return "reconnecting" if call.lost else "connected"


def _accounts_in(call: AnyCall) -> list[str]:
    if isinstance(call, g.GroupCall):
        return list(dict.fromkeys(device.account_id for device in call.members))
    return [call.caller.account_id, *([call.callee_account] if call.callee_account else [])]


def _view(request: web.Request, call: AnyCall, now: float) -> LiveCall:
    service = request.app[CALLS]
    book = service.quality
    accounts_in = _accounts_in(call)
    participants = [book.pseudonym(call.id, account) for account in accounts_in]
    legs = []
    for name, leg in book.legs(call.id).items():
        last = leg.history[-1] if leg.history else None
        legs.append(
            Leg(
                participant=name,
                rtt_ms=last.rtt_ms if last else None,
                jitter_ms=last.jitter_ms if last else None,
                loss=last.loss if last else None,
                bitrate_kbps=last.bitrate_kbps if last else None,
                relayed=leg.relayed,
                history=list(leg.history),
            )
        )
    legs += _sfu_legs(
        service.sfu_quality(call.id), book, call.id, {leg.participant for leg in legs}
    )
    relayed = [leg.relayed for leg in legs if leg.relayed is not None]
    relay: Literal["p2p", "turn", "sfu", "unknown"] = "unknown"
    if isinstance(call, g.GroupCall) or call.sfu:
        relay = "sfu"
    elif call.relay_only or any(relayed):
        relay = "turn"
    elif relayed:
        relay = "p2p"
    started = book.started_at(call.id) or now
    return LiveCall(
        id=call.id,
        kind="group" if isinstance(call, g.GroupCall) else "1:1",
        state=_state(call),
        media=call.media,
        started_at=int(started),
        duration_s=round(max(0.0, now - started), 1),
        node=request.app[NODE].id,
        participant_count=len(participants),
        participants=participants,
        relay=relay,
        legs=sorted(legs, key=lambda leg: participants.index(leg.participant)
                    if leg.participant in participants else len(participants)),
    )  # fmt: skip


def _sfu_legs(
    measured: dict[str, dict[str, Any]], book: QualityBook, call_id: str, reported: set[str]
) -> list[Leg]:
    """For devices that send no quality reports: what the SFU sees of their media."""
    legs = []
    for account_id, stats in measured.items():
        name = book.pseudonym(call_id, account_id)
        if name in reported:
            continue
        legs.append(
            Leg(
                participant=name, rtt_ms=_number(stats.get("rtt_ms")),
                jitter_ms=_number(stats.get("jitter_ms")), loss=_number(stats.get("loss")),
                bitrate_kbps=None, relayed=False, history=[],
            )
        )  # fmt: skip
    return legs


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _calls(request: web.Request) -> list[LiveCall]:
    now = request.app[CALLS].now()
    calls = [_view(request, c, now) for c in request.app[CALLS].live_calls()]
    return sorted(calls, key=lambda c: (c.started_at, c.id))


def _nodes(request: web.Request) -> list[Node]:
    node = request.app[NODE]
    service = request.app[CALLS]
    nodes = [
        Node(
            id=node.id,
            version=node.version,
            connections=len(request.app[SOCKETS]),
            active_calls=service.active_calls(),
            started_at=int(node.started_at),
            last_heartbeat=int(time.time()),
        )
    ]
    media = service.media
    for info in [] if media is None else media.nodes():
        nodes.append(
            Node(
                id=info.id, version=node.version, kind="media",
                connections=info.participants, active_calls=info.rooms,
                started_at=int(info.started_at), last_heartbeat=int(info.seen_at),
            )
        )  # fmt: skip
    return nodes


def _live(call: Call) -> AnyCall:
    found = call.request.app[CALLS].live_call(call.params["call_id"])
    if found is None:
        raise NotFound("No such call on this node (it may have ended).")
    return found


async def _audit(call: Call, action: audit.Action, target: str, reason: str) -> str:
    entry_id = await audit.append(store(call), call.operator.name, action, target, reason)
    call.request.app[METRICS].on_operator_action(action)
    return entry_id


# --- calls -------------------------------------------------------------------------------------


@API.route(
    "GET", "/v1/operator/calls",
    summary="Live calls on this node: state, duration, relay mode, per-leg quality; "
            "participants by pseudonym only",
    tag=TAG, response=LiveCalls, operator=True, errors=OPERATOR_ERRORS,
)  # fmt: skip
async def operator_calls(call: Call) -> LiveCalls:
    return LiveCalls(calls=_calls(call.request))


@API.route(
    "GET", "/v1/operator/calls/{call_id}", summary="One live call, with its quality history",
    tag=TAG, response=LiveCall, params=_CALL, operator=True,
    errors=(*OPERATOR_ERRORS, "not_found"),
)  # fmt: skip
async def operator_call(call: Call) -> LiveCall:
    return _view(call.request, _live(call), call.request.app[CALLS].now())


@API.route(
    "POST", "/v1/operator/calls/{call_id}/reveal",
    summary="Who is in a call (handles, account and device ids); needs a reason, is audited",
    tag=TAG, request=OperatorReason, response=Revealed, params=_CALL, operator=True,
    errors=(*OPERATOR_ERRORS, *BODY_ERRORS, "not_found"),
)  # fmt: skip
async def reveal_call(call: Call) -> Revealed:
    live = _live(call)
    body = call.body_as(OperatorReason)
    audit_id = await _audit(call, "reveal", live.id, body.reason)
    book = call.request.app[CALLS].quality
    revealed = []
    for role, account_id, device_id in _parties(live):
        handle = None
        with contextlib.suppress(NotFound):
            handle = (await accounts.get(store(call), account_id)).handle
        revealed.append(
            RevealedParticipant(
                participant=book.pseudonym(live.id, account_id), role=role,
                account_id=account_id, device_id=device_id, handle=handle,
            )
        )  # fmt: skip
    return Revealed(call_id=live.id, participants=revealed, audit_id=audit_id)


Role = Literal["caller", "callee", "host", "participant"]


def _parties(live: AnyCall) -> list[tuple[Role, str, str | None]]:
    if isinstance(live, g.GroupCall):
        host = live.host.account_id
        return [
            ("host" if device.account_id == host else "participant", device.account_id,
             device.device_id)
            for device in sorted(live.members, key=lambda d: (d.account_id, d.device_id))
        ]  # fmt: skip
    parties: list[tuple[Role, str, str | None]] = [
        ("caller", live.caller.account_id, live.caller.device_id)
    ]
    if live.callee_account:
        device = live.callee.device_id if live.callee is not None else None
        parties.append(("callee", live.callee_account, device))
    return parties


@API.route(
    "POST", "/v1/operator/calls/{call_id}/end",
    summary="End a call for everyone in it; devices get ended with reason operator",
    tag=TAG, request=OperatorReason, status=204, params=_CALL, operator=True,
    errors=(*OPERATOR_ERRORS, *BODY_ERRORS, "not_found"),
)  # fmt: skip
async def end_call(call: Call) -> None:
    live = _live(call)
    body = call.body_as(OperatorReason)
    await _audit(call, "end_call", live.id, body.reason)
    call.request.app[CALLS].end_by_operator(live.id)


@API.route(
    "POST", "/v1/operator/devices/{account_id}/{device_id}/disconnect",
    summary="Close a device's call WebSocket (4002) and end its calls; it may reconnect",
    tag=TAG, request=OperatorReason, status=204, params=_DEVICE, operator=True,
    errors=(*OPERATOR_ERRORS, *BODY_ERRORS, "not_found"),
)  # fmt: skip
async def disconnect_device(call: Call) -> None:
    body = call.body_as(OperatorReason)
    device = sm.DeviceRef(call.params["account_id"], call.params["device_id"])
    if not call.request.app[CALLS].disconnect_device(device):
        raise NotFound("That device is not connected to this node.")
    await _audit(call, "disconnect_device", f"{device.account_id}/{device.device_id}", body.reason)


# --- accounts ----------------------------------------------------------------------------------


@API.route(
    "POST", "/v1/operator/accounts/{account_id}/suspend",
    summary="Suspend an account: it cannot place calls and lookups do not find it",
    tag=TAG, request=OperatorReason, status=204, params=_ACCOUNT, operator=True,
    errors=(*OPERATOR_ERRORS, *BODY_ERRORS, "not_found"),
)  # fmt: skip
async def suspend_account(call: Call) -> None:
    body = call.body_as(OperatorReason)
    account_id = call.params["account_id"]
    await accounts.suspend(store(call), account_id)
    await _notify(call, account_id, "suspension", body.reason)
    await _audit(call, "suspend", account_id, body.reason)


@API.route(
    "POST", "/v1/operator/accounts/{account_id}/unsuspend", summary="Lift a suspension",
    tag=TAG, request=OperatorReason, status=204, params=_ACCOUNT, operator=True,
    errors=(*OPERATOR_ERRORS, *BODY_ERRORS, "not_found"),
)  # fmt: skip
async def unsuspend_account(call: Call) -> None:
    body = call.body_as(OperatorReason)
    account_id = call.params["account_id"]
    await accounts.unsuspend(store(call), account_id)
    await _notify(call, account_id, "unsuspension", body.reason)
    await _audit(call, "unsuspend", account_id, body.reason)


async def _notify(
    call: Call, account_id: str, kind: Literal["suspension", "unsuspension"], reason: str
) -> None:
    notice = Notice(id=secrets.token_hex(8), at=int(store(call).clock()), kind=kind,
                    statement=reason)  # fmt: skip
    await reports.add_notice(store(call), account_id, notice)


# --- reports and audit -------------------------------------------------------------------------


@API.route(
    "GET", "/v1/operator/reports", summary="Abuse reports, newest first, decided ones included",
    tag=TAG, response=ReportQueue, operator=True, errors=OPERATOR_ERRORS,
)  # fmt: skip
async def operator_reports(call: Call) -> ReportQueue:
    return ReportQueue(reports=await reports.queue(store(call)))


@API.route(
    "POST", "/v1/operator/reports/{report_id}/decide",
    summary="Decide a report; the reporter (and, unless dismissed, the reported account) "
            "receive the statement of reasons",
    tag=TAG, request=DecisionRequest, response=Report, params=_REPORT, operator=True,
    errors=(*OPERATOR_ERRORS, *BODY_ERRORS, "not_found", "already_decided", "invalid_value"),
)  # fmt: skip
async def decide_report(call: Call) -> Report:
    body = call.body_as(DecisionRequest)
    report_id = call.params["report_id"]
    decided = await reports.decide(store(call), report_id, body.decision, body.statement)
    await _audit(call, "decide_report", report_id, f"{body.decision}: {body.statement}")
    if decided.reported is not None and body.decision in ("suspend", "ban_handle"):
        await _audit(call, "suspend", decided.reported, f"report {report_id}: {body.decision}")
    return decided


@API.route(
    "GET", "/v1/operator/audit",
    summary="The audit log, oldest first: ?after=<entry id>&count=N (at most 500)",
    tag=TAG, response=AuditLog, operator=True, errors=(*OPERATOR_ERRORS, "invalid_request"),
)  # fmt: skip
async def operator_audit(call: Call) -> AuditLog:
    query = call.request.query
    after = query.get("after") or None
    try:
        count = int(query.get("count", "100"))
    except ValueError as exc:
        raise ApiError("invalid_request", "count is an integer.") from exc
    if not 1 <= count <= audit.MAX_COUNT or (after is not None and not _stream_id(after)):
        raise ApiError("invalid_request", "count is 1-500; after is an entry id like 1-0.")
    entries = await audit.read(store(call), after, count)
    return AuditLog(entries=entries, next=entries[-1].id if entries else after)


def _stream_id(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit()) and len(value) <= 41


# --- nodes and the live stream -----------------------------------------------------------------


@API.route(
    "GET", "/v1/operator/nodes", summary="The nodes serving calls (one, for now)",
    tag=TAG, response=Nodes, operator=True, errors=OPERATOR_ERRORS,
)  # fmt: skip
async def operator_nodes(call: Call) -> Nodes:
    return Nodes(nodes=_nodes(call.request))


@API.route(
    "GET", "/v1/operator/events",
    summary="Server-sent events: a snapshot of live calls and nodes every 0.5 s "
            "(read it with fetch(); the token goes in the Authorization header)",
    tag=TAG, operator=True, errors=OPERATOR_ERRORS, media_type="text/event-stream",
)  # fmt: skip
async def operator_events(call: Call) -> web.StreamResponse:
    request = call.request
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    task = asyncio.current_task()
    assert task is not None
    streams = request.app[STREAMS]
    streams.add(task)
    try:
        while True:
            snapshot = Snapshot(calls=_calls(request), nodes=_nodes(request))
            await response.write(b"event: snapshot\ndata: " + _encode(snapshot) + b"\n\n")
            await asyncio.sleep(STREAM_INTERVAL_S)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        streams.discard(task)
    return response
