"""What the operator API shows of live calls and nodes: views built from this node's state.

Participants are named only by pseudonyms (``QualityBook.pseudonym``); ``cluster_view.py``
shares these views between nodes.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from aiohttp import web

from signaling.appkeys import CALLS, NODE, SOCKETS
from signaling.calls import group as g
from signaling.calls import machine as sm
from signaling.calls.kinds import AnyCall
from signaling.calls.quality import QualityBook
from signaling.protocol.operator import Leg, LiveCall, Node


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


def view(app: web.Application, call: AnyCall, now: float) -> LiveCall:
    """The operator's view of a call this node runs."""
    service = app[CALLS]
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
        node=app[NODE].id,
        participant_count=len(participants),
        participants=participants,
        relay=relay,
        fell_back=isinstance(call, sm.Call) and call.fell_back,
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


def local_calls(app: web.Application) -> list[LiveCall]:
    """The calls this node runs."""
    now = app[CALLS].now()
    return [view(app, c, now) for c in app[CALLS].live_calls()]


def local_nodes(app: web.Application) -> list[Node]:
    """This signaling node, and the media nodes it knows (with their load) if it has any."""
    node = app[NODE]
    service = app[CALLS]
    nodes = [
        Node(
            id=node.id,
            version=node.version,
            connections=len(app[SOCKETS]),
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
