"""The operator API, ``/v1/operator/...``: live calls, nodes, actions, reports and the audit log.

Every endpoint needs an operator token (``callbook operator create``). The call views name
participants only by pseudonyms (an HMAC of the call id and the account under a secret of this
node: stable within a call, linkable to nothing else); handles come only from ``reveal``, which
needs a reason and is written to the audit log like every other action.

The views cover every live node (``cluster_view.py``); an action on a call another node runs, or
on a device connected to another node, is carried out there (``calls/operations.py``) and
audited here.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any, Literal

import msgspec
from aiohttp import web

from directory import accounts, audit, reports
from directory.errors import NotFound
from directory.records import Notice
from signaling.appkeys import CALLS, METRICS, STREAMS
from signaling.calls import machine as sm
from signaling.cluster.routing import OperatorAction, OperatorReply
from signaling.errors import ApiError
from signaling.protocol.operator import (
    AuditLog,
    DecisionRequest,
    LiveCall,
    LiveCalls,
    Nodes,
    OperatorReason,
    Report,
    ReportQueue,
    Revealed,
    RevealedParticipant,
    Snapshot,
)
from signaling.rest.cluster_view import all_calls, all_nodes, find_call
from signaling.rest.framework import Call, wire
from signaling.rest.table import API, BODY_ERRORS, ID_PARAM, store

TAG = "operator"
OPERATOR_ERRORS = ("token_missing", "token_invalid", "token_expired", "not_operator")
_CALL = {"call_id": ID_PARAM}
_REPORT = {"report_id": ID_PARAM}
_ACCOUNT = {"account_id": ID_PARAM}
_DEVICE = {"account_id": ID_PARAM, "device_id": ID_PARAM}
STREAM_INTERVAL_S = 0.5
_encode = msgspec.json.Encoder().encode


async def _audit(call: Call, action: audit.Action, target: str, reason: str) -> str:
    entry_id = await audit.append(store(call), call.operator.name, action, target, reason)
    call.request.app[METRICS].on_operator_action(action)
    return entry_id


async def _find(call: Call) -> LiveCall:
    found = await find_call(call.request.app, call.params["call_id"])
    if found is None:
        raise NotFound("No such live call on any node (it may have ended).")
    return found


async def _on_node(call: Call, node: str, action: OperatorAction, **target: Any) -> OperatorReply:
    """Have another node act for this operator (it runs the call, or holds the device)."""
    reply = await call.request.app[CALLS].operate(node, action, **target)
    if reply is None:
        raise ApiError("unavailable", "The node that runs it did not answer; try again.")
    if not reply.found:
        raise NotFound("It is gone from the node that ran it (it may have ended).")
    return reply


# --- calls -------------------------------------------------------------------------------------


@API.route(
    "GET", "/v1/operator/calls",
    summary="Live calls on every live node: state, duration, relay mode, per-leg quality; "
            "participants by pseudonym only",
    tag=TAG, response=LiveCalls, operator=True, errors=OPERATOR_ERRORS,
)  # fmt: skip
async def operator_calls(call: Call) -> LiveCalls:
    return LiveCalls(calls=await all_calls(call.request.app))


@API.route(
    "GET", "/v1/operator/calls/{call_id}", summary="One live call, with its quality history",
    tag=TAG, response=LiveCall, params=_CALL, operator=True,
    errors=(*OPERATOR_ERRORS, "not_found"),
)  # fmt: skip
async def operator_call(call: Call) -> LiveCall:
    return await _find(call)


@API.route(
    "POST", "/v1/operator/calls/{call_id}/reveal",
    summary="Who is in a call (handles, account and device ids); needs a reason, is audited",
    tag=TAG, request=OperatorReason, response=Revealed, params=_CALL, operator=True,
    errors=(*OPERATOR_ERRORS, *BODY_ERRORS, "not_found"),
)  # fmt: skip
async def reveal_call(call: Call) -> Revealed:
    live = await _find(call)
    body = call.body_as(OperatorReason)
    service = call.request.app[CALLS]
    if live.node == service.node_id:
        parties = service.parties(live.id)
        if parties is None:
            raise NotFound("No such live call on any node (it may have ended).")
    else:
        parties = (await _on_node(call, live.node, "reveal", call_id=live.id)).parties
    audit_id = await _audit(call, "reveal", live.id, body.reason)
    revealed = []
    for party in parties:
        handle = None
        with contextlib.suppress(NotFound):
            handle = (await accounts.get(store(call), party.account_id)).handle
        revealed.append(
            RevealedParticipant(
                participant=party.participant, role=party.role, account_id=party.account_id,
                device_id=party.device_id, handle=handle,
            )
        )  # fmt: skip
    return Revealed(call_id=live.id, participants=revealed, audit_id=audit_id)


@API.route(
    "POST", "/v1/operator/calls/{call_id}/end",
    summary="End a call for everyone in it; devices get ended with reason operator",
    tag=TAG, request=OperatorReason, status=204, params=_CALL, operator=True,
    errors=(*OPERATOR_ERRORS, *BODY_ERRORS, "not_found"),
)  # fmt: skip
async def end_call(call: Call) -> None:
    live = await _find(call)
    body = call.body_as(OperatorReason)
    service = call.request.app[CALLS]
    if live.node == service.node_id:
        await _audit(call, "end_call", live.id, body.reason)
        service.end_by_operator(live.id)
        return
    # A summary can be a second old: only the node that runs the call knows it still does, so
    # what is audited is what it did.
    await _on_node(call, live.node, "end", call_id=live.id)
    await _audit(call, "end_call", live.id, body.reason)


@API.route(
    "POST", "/v1/operator/devices/{account_id}/{device_id}/disconnect",
    summary="Close a device's call WebSocket (4002) and end its calls; it may reconnect",
    tag=TAG, request=OperatorReason, status=204, params=_DEVICE, operator=True,
    errors=(*OPERATOR_ERRORS, *BODY_ERRORS, "not_found"),
)  # fmt: skip
async def disconnect_device(call: Call) -> None:
    body = call.body_as(OperatorReason)
    device = sm.DeviceRef(call.params["account_id"], call.params["device_id"])
    service = call.request.app[CALLS]
    if not service.disconnect_device(device):
        location = await service.router.lookup(device)
        if location is None or location.node == service.node_id:
            raise NotFound("That device is not connected to any node.")
        await _on_node(call, location.node, "disconnect", device=device)
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
    return wire({"reports": await reports.queue(store(call))}, ReportQueue)


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
    return wire(decided, Report)


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
    return wire({"entries": entries, "next": entries[-1].id if entries else after}, AuditLog)


def _stream_id(value: str) -> bool:
    ms, _, seq = value.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit()) and len(value) <= 41


# --- nodes and the live stream -----------------------------------------------------------------


@API.route(
    "GET", "/v1/operator/nodes",
    summary="The nodes serving calls: every live signaling node with its last heartbeat",
    tag=TAG, response=Nodes, operator=True, errors=OPERATOR_ERRORS,
)  # fmt: skip
async def operator_nodes(call: Call) -> Nodes:
    return Nodes(nodes=await all_nodes(call.request.app))


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
            app = request.app
            snapshot = Snapshot(calls=await all_calls(app), nodes=await all_nodes(app))
            await response.write(b"event: snapshot\ndata: " + _encode(snapshot) + b"\n\n")
            await asyncio.sleep(STREAM_INTERVAL_S)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        streams.discard(task)
    return response
