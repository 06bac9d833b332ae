"""Operators' actions on calls and devices wherever they run: a mixin of ``CallService``.

This node's own: list its live calls, end one (``end_by_operator``), disconnect a device
(``disconnect_device``), name who is in a call (``parties``).

The operator API of any node can reveal or end a call another node runs, or disconnect a device
connected to another node: it sends an ``OperatorRequest`` envelope through the router to that
node, which acts as for its own operator and answers with an ``OperatorReply`` (found or not;
who is in the call, for a reveal). The asking node waits for the answer a bounded time.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from signaling.calls import group as g
from signaling.calls import machine as sm
from signaling.calls.kinds import AnyCall, AnyEvent
from signaling.calls.presence import Presence
from signaling.calls.quality import QualityBook
from signaling.cluster.routing import (
    DeviceEventKind,
    OperatorAction,
    OperatorReply,
    OperatorRequest,
    Party,
    Role,
    Router,
)

#: How long an operator's request waits for the node that runs the call (or holds the device).
REPLY_TIMEOUT_S = 3.0


class OperatorCalls:
    _router: Router
    _calls: dict[str, AnyCall]
    _operator_replies: dict[str, asyncio.Future[OperatorReply]]
    quality: QualityBook

    _presence: dict[sm.DeviceRef, Presence]
    _online: dict[str, set[sm.DeviceRef]]
    _remote: dict[sm.DeviceRef, dict[str, str]]
    _by_device: dict[sm.DeviceRef, set[str]]

    if TYPE_CHECKING:

        @property
        def node_id(self) -> str: ...
        def _stop_ringing(self, call: AnyCall) -> None: ...
        def _run(self, call_id: str, effects: Sequence[g.Effect]) -> None: ...
        def _persist(self, call_id: str) -> asyncio.Future[None] | None: ...
        def _apply_quietly(
            self, call_id: str, event: AnyEvent, at: float | None = None
        ) -> None: ...
        def _announce(
            self, device: sm.DeviceRef, event: DeviceEventKind, busy: bool = False
        ) -> None: ...

    def live_calls(self) -> list[AnyCall]:
        return list(self._calls.values())

    def live_call(self, call_id: str) -> AnyCall | None:
        return self._calls.get(call_id)

    def end_by_operator(self, call_id: str) -> bool:
        """End a call for every device in it (reason ``operator``); False if there is none."""
        call = self._calls.get(call_id)
        if call is None:
            return False
        ended, effects = (
            g.end_by_operator(call) if isinstance(call, g.GroupCall) else sm.end_by_operator(call)
        )
        self._calls[call_id] = ended
        self._stop_ringing(ended)
        self._run(call_id, effects)
        self._persist(call_id)
        return True

    def disconnect_device(self, device: sm.DeviceRef) -> bool:
        """Close a device's connection now and end its calls; it may connect again."""
        presence = self._presence.pop(device, None)
        self._online.get(device.account_id, set()).discard(device)
        self._remote.pop(device, None)
        for call_id in list(self._by_device.get(device, ())):
            self._apply_quietly(call_id, sm.DeviceGone(device))
        if presence is None:
            return False
        self._router.unregister(device)
        self._announce(device, "gone")
        if presence.expiry is not None:
            presence.expiry.cancel()
        if presence.link is not None:
            presence.link.disconnected()
        return True

    def parties(self, call_id: str) -> list[Party] | None:
        """Who is in a call this node runs, or None if it runs no such call."""
        call = self._calls.get(call_id)
        if call is None:
            return None
        return [
            Party(participant=self.quality.pseudonym(call_id, account_id), role=role,
                  account_id=account_id, device_id=device_id)
            for role, account_id, device_id in _parties(call)
        ]  # fmt: skip

    async def operate(
        self,
        node: str,
        action: OperatorAction,
        *,
        call_id: str = "",
        device: sm.DeviceRef | None = None,
    ) -> OperatorReply | None:
        """Have ``node`` carry out an operator's action; its answer, or None if it gave none
        within ``REPLY_TIMEOUT_S``."""
        request_id = secrets.token_hex(8)
        answered: asyncio.Future[OperatorReply] = asyncio.get_running_loop().create_future()
        self._operator_replies[request_id] = answered
        self._router.send(
            node,
            OperatorRequest(
                origin=self.node_id, action=action, request_id=request_id, call_id=call_id,
                account_id=device.account_id if device else "",
                device_id=device.device_id if device else "",
            ),
        )  # fmt: skip
        try:
            return await asyncio.wait_for(answered, REPLY_TIMEOUT_S)
        except TimeoutError:
            return None
        finally:
            self._operator_replies.pop(request_id, None)

    def _on_operator_request(self, request: OperatorRequest) -> None:
        parties: list[Party] = []
        match request.action:
            case "reveal":
                found_parties = self.parties(request.call_id)
                found = found_parties is not None
                parties = found_parties or []
            case "end":
                found = self.end_by_operator(request.call_id)
            case "disconnect":
                found = self.disconnect_device(request.device)
        self._router.send(
            request.origin,
            OperatorReply(
                origin=self.node_id, account_id=request.account_id,
                device_id=request.device_id, request_id=request.request_id, found=found,
                parties=parties,
            ),
        )  # fmt: skip

    def _on_operator_reply(self, reply: OperatorReply) -> None:
        answered = self._operator_replies.get(reply.request_id)
        if answered is not None and not answered.done():
            answered.set_result(reply)


def _parties(call: AnyCall) -> list[tuple[Role, str, str | None]]:
    if isinstance(call, g.GroupCall):
        host = call.host.account_id
        return [
            ("host" if device.account_id == host else "participant", device.account_id,
             device.device_id)
            for device in sorted(call.members, key=lambda d: (d.account_id, d.device_id))
        ]  # fmt: skip
    parties: list[tuple[Role, str, str | None]] = [
        ("caller", call.caller.account_id, call.caller.device_id)
    ]
    if call.callee_account:
        device = call.callee.device_id if call.callee is not None else None
        parties.append(("callee", call.callee_account, device))
    return parties
