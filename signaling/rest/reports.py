"""Abuse reports from people, and the statements of reasons they receive."""

from __future__ import annotations

from directory import reports
from signaling.appkeys import METRICS
from signaling.protocol.bodies import Notices, ReportReceipt, ReportRequest
from signaling.rest.framework import Call, wire
from signaling.rest.table import API, AUTH_ERRORS, BODY_ERRORS, store


@API.route(
    "POST", "/v1/reports",
    summary="Report abuse by a handle; operators decide and you get a statement of reasons",
    tag="reports", request=ReportRequest, response=ReportReceipt, status=202,
    errors=(*AUTH_ERRORS, *BODY_ERRORS, "rate_limited"),
)  # fmt: skip
async def file_report(call: Call) -> ReportReceipt:
    body = call.body_as(ReportRequest)
    report_id = await reports.file(
        store(call), call.principal.account_id, body.handle, body.category, body.text,
        body.call_id,
    )  # fmt: skip
    call.request.app[METRICS].on_report(body.category)
    return ReportReceipt(report=report_id)


@API.route(
    "GET", "/v1/me/notices",
    summary="Statements of reasons addressed to you: decisions on reports, suspensions",
    tag="reports", response=Notices, errors=AUTH_ERRORS,
)  # fmt: skip
async def list_notices(call: Call) -> Notices:
    notices = await reports.list_notices(store(call), call.principal.account_id)
    return wire({"notices": notices}, Notices)
