"""Draining a node: its calls move to another node, its devices are told to follow.

A mixin of ``CallService`` (``service.py``), next to ``NodeCalls`` (``nodes.py``), whose record
and envelope machinery it uses. The app-level sequence (readiness, the grace period, exiting)
is ``signaling/cluster/drain.py``; docs/scaling.md, "Draining a node", says why it is built this
way.

**Handing a call over** (owner A to survivor B), with never two owners acting:

1. A marks the call *moving*: device messages about it wait on A from now on, and its timers
   are paused (their times stay in the record);
2. A waits until its store writes are done, so the record holds everything A did;
3. A gives the call away with a compare-and-set on (owner = A, version = the last one A wrote)
   (``CallRecords.hand_over``): B is the owner from that instant, and A forgets the call
   (nothing it could still write would pass the compare-and-set);
4. A sends B an ``Adopt`` envelope, then the messages that waited, then, for the rest of the
   drain, every message about the call that still reaches it; and it broadcasts ``Moved`` so
   that nodes with devices in the call send their messages to B. Envelopes from one node arrive
   in order, so B adopts first.

If the compare-and-set fails, the call stays on A (its timers resume, the waiting messages are
handled there) and ends with the grace period like a call that cannot move.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from redis.exceptions import RedisError

from signaling.calls import group as g
from signaling.calls import kinds
from signaling.calls import machine as sm
from signaling.calls.errors import CallError
from signaling.calls.kinds import AnyCall
from signaling.calls.presence import Presence
from signaling.calls.records import CallRecords, Stored
from signaling.cluster.routing import Adopt, Forward, Moved, Router
from signaling.protocol import messages as m

log = logging.getLogger("callbook.calls")

#: A device told to reconnect elsewhere is closed (4003) after this long if it did not move.
MOVE_WITHIN_S = 5.0

Held = list[tuple[sm.DeviceRef, m.ClientMessage]]


class CallHandover:
    _router: Router
    _records: CallRecords | None
    _calls: dict[str, AnyCall]
    _presence: dict[sm.DeviceRef, Presence]
    _remote: dict[sm.DeviceRef, dict[str, str]]
    _by_device: dict[sm.DeviceRef, set[str]]
    _persisted: set[str]
    _versions: dict[str, int]
    _timers: dict[tuple[str, str, sm.DeviceRef | None], asyncio.TimerHandle]
    _timer_at: dict[tuple[str, str, sm.DeviceRef | None], float]
    _resume_window_s: float
    _clock: Callable[[], float]
    #: Calls being handed over, with the device messages about them that wait meanwhile.
    _moving: dict[str, Held]
    #: Calls handed over during this drain, and to which node.
    _moved: dict[str, str]
    _draining: bool

    if TYPE_CHECKING:

        def _let_room_go(self, call_id: str) -> None: ...
        @property
        def node_id(self) -> str: ...
        async def handle(
            self, device: sm.DeviceRef, message: m.ClientMessage, *, forwarded: bool = False
        ) -> None: ...
        async def flush_store_writes(self) -> None: ...
        def _deliver(self, device: sm.DeviceRef, message: m.ServerMessage) -> None: ...
        def _install(self, call_id: str, stored: Stored) -> None: ...
        def _forget(self, call_id: str) -> None: ...
        def _forget_remote(self, device: sm.DeviceRef, call_id: str) -> None: ...
        def _set_timer(
            self, call_id: str, kind: sm.TimerKind, at: float, device: sm.DeviceRef | None
        ) -> None: ...
        def _apply_quietly(
            self, call_id: str, event: kinds.AnyEvent, at: float | None = None
        ) -> None: ...

    @property
    def draining(self) -> bool:
        return self._draining

    async def begin_drain(self) -> None:
        """From now on this node places no new calls: invites go to another node, or are
        refused with ``draining`` when there is none; and no other node hands it calls."""
        self._draining = True
        try:
            await self._router.set_draining()
        except (RedisError, OSError):
            log.warning("could not mark this node draining: the store is unreachable")

    # --- messages while calls move ---------------------------------------------------------

    def _redirected(self, device: sm.DeviceRef, message: m.ClientMessage) -> bool:
        """A message about a call that is moving waits; one about a call that moved goes to
        its new owner. True when the message was taken care of here."""
        call_id = getattr(message, "call_id", None)
        if not isinstance(call_id, str):
            return False
        held = self._moving.get(call_id)
        if held is not None:
            held.append((device, message))
            return True
        successor = self._moved.get(call_id)
        if successor is None or call_id in self._calls:
            return False
        self._forward(successor, device, message)
        return True

    def _forward(self, node: str, device: sm.DeviceRef, message: m.ClientMessage) -> None:
        self._router.send(
            node,
            Forward(origin=self.node_id, account_id=device.account_id,
                    device_id=device.device_id, message=cast(m.ClientMessages, message)),
        )  # fmt: skip

    async def _place_elsewhere(self, device: sm.DeviceRef, message: m.ClientMessage) -> None:
        """A new call from a device still connected to this draining node: placed by another
        node (which then runs it), as if the device had already moved."""
        nodes = await self._successors()
        if not nodes:
            raise CallError("draining", "This server is shutting down; reconnect and call again.")
        self._forward(nodes[0], device, message)

    async def _successors(self) -> list[str]:
        try:
            return await self._router.successors()
        except (RedisError, OSError):
            return []

    # --- handing calls over ----------------------------------------------------------------

    async def hand_over_calls(self) -> int:
        """Give every call this node runs that the store holds to another live node; how many
        moved. Group and SFU calls move with their room, which stays on its media node."""
        records = self._records
        nodes = await self._successors() if records is not None else []
        if records is None or not nodes:
            return 0
        call_ids = sorted(c for c in self._calls if c in self._persisted)
        for call_id in call_ids:
            self._moving[call_id] = []
            self._pause_timers(call_id)
        await self.flush_store_writes()
        moved = 0
        for call_id in call_ids:
            successor = nodes[int(call_id, 16) % len(nodes)]
            if await self._give(records, call_id, successor):
                moved += 1
        return moved

    async def _give(self, records: CallRecords, call_id: str, successor: str) -> bool:
        snapshot = self._calls.get(call_id)
        version = self._versions.get(call_id)
        done = None
        if snapshot is not None and version is not None:
            try:
                done = await records.hand_over(call_id, version, successor)
            except (RedisError, OSError):
                log.warning("could not hand call %s over: the store is unreachable", call_id)
        held = self._moving.pop(call_id, [])
        if done is None:
            self._resume_timers(call_id)
            for device, message in held:
                await self._handle_held(device, message)
            return False
        if self._calls.get(call_id) is not snapshot:
            # Changed during the compare-and-set (a device dropped): the successor checks
            # where the devices are when it adopts the call.
            log.warning("call %s changed while it was handed over", call_id)
        self._release(call_id, successor)
        self._router.send(
            successor, Adopt(origin=self.node_id, account_id="", device_id="", call_id=call_id)
        )
        # Devices on third nodes would keep sending to this node, which is about to go.
        self._router.broadcast(
            Moved(origin=self.node_id, account_id="", device_id="", call_id=call_id,
                  owner=successor)
        )  # fmt: skip
        for device, message in held:
            self._forward(successor, device, message)
        log.info("handed call %s over to node %s", call_id, successor)
        return True

    async def _handle_held(self, device: sm.DeviceRef, message: m.ClientMessage) -> None:
        try:
            await self.handle(device, message, forwarded=True)
        except CallError as error:
            self._deliver(device, m.refusal(message, error.code, error.detail, error.call_id))

    def _pause_timers(self, call_id: str) -> None:
        for key in [key for key in self._timers if key[0] == call_id]:
            self._timers.pop(key).cancel()

    def _resume_timers(self, call_id: str) -> None:
        for (owner, kind, device), at in list(self._timer_at.items()):
            if owner == call_id:
                self._set_timer(call_id, kind, at, device)  # type: ignore[arg-type]

    def _release(self, call_id: str, successor: str) -> None:
        """Forget a call given away; devices here send their next messages to its new owner."""
        call = self._calls.get(call_id)
        self._pause_timers(call_id)
        for key in [key for key in self._timer_at if key[0] == call_id]:
            del self._timer_at[key]
        self._persisted.discard(call_id)
        self._versions.pop(call_id, None)
        self._moved[call_id] = successor
        self._let_room_go(call_id)  # its SFU room stays on its media node, for the successor
        if call is not None:
            for device in kinds.involved(call):
                if device in self._presence:
                    self._remote.setdefault(device, {})[call_id] = successor
        self._forget(call_id)

    def _rehome(self, call_id: str, owner: str) -> None:
        """A draining node gave a call to ``owner``: devices here send to it from now on."""
        if call_id in self._calls:
            return
        for calls in self._remote.values():
            if call_id in calls:
                calls[call_id] = owner

    async def _adopt(self, call_id: str) -> None:
        """A draining node gave this node a call: run it from its record."""
        records = self._records
        if records is None or call_id in self._calls:
            return
        stored = await records.load(call_id)
        if stored is None or stored.owner != self.node_id:
            return  # ended meanwhile, or given to another node
        self._install(call_id, stored)
        log.info("adopted call %s", call_id)
        for device in kinds.involved(stored.call):
            self._forget_remote(device, call_id)
            if device in self._presence or kinds.is_lost(stored.call, device):
                continue
            location = await self._router.lookup(device)
            if location is None or not location.connected:
                self._apply_quietly(call_id, sm.DeviceLost(device))

    # --- devices ---------------------------------------------------------------------------

    def devices_free_to_move(self) -> list[sm.DeviceRef]:
        """Connected devices in no call this node still runs: they can move without loss."""
        return [
            device
            for device, presence in self._presence.items()
            if presence.link is not None and not self._by_device.get(device)
        ]

    def calls_to_wait_for(self) -> int:
        """Group and SFU calls still here (their hand-over failed so far): the drain lets them
        run on, as long as the grace period lasts."""
        return sum(1 for call in self._calls.values() if isinstance(call, g.GroupCall) or call.sfu)

    def connected_devices(self) -> int:
        return sum(1 for presence in self._presence.values() if presence.link is not None)

    def tell_to_move(self, device: sm.DeviceRef, within_s: float = MOVE_WITHIN_S) -> None:
        presence = self._presence.get(device)
        if presence is None or presence.link is None:
            return
        presence.link.send(
            m.Reconnect(resume_token=presence.resume_token,
                        resume_window_s=self._resume_window_s, within_s=within_s)
        )  # fmt: skip

    def close_drained(self, device: sm.DeviceRef) -> None:
        """The device did not move in time: close it (4003); it resumes elsewhere or not."""
        presence = self._presence.get(device)
        if presence is not None and presence.link is not None:
            presence.link.drained()
