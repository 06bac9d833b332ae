"""The part of ``CallService`` that makes glare and busy the same on many nodes as on one.

A mixin of ``CallService`` (``service.py``): after every change of a call it runs, the owner
shares what other nodes must see (the call ringing between two accounts, the devices talking in
it) through ``crossing.Crossing``, in order with its call records on the same writer. An invite
reads both: the devices of the callee that talk in a call elsewhere ring with ``busy``, and a
call crossing it from another node is resolved as on one node: the smaller call id survives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from directory.batch import Batch, Finish, Staged
from directory.store import Store
from signaling.calls import kinds
from signaling.calls import machine as sm
from signaling.calls.crossing import Busy, Crossing, Ringing, crossing_calls
from signaling.calls.kinds import AnyCall, AnyEvent
from signaling.calls.records import CallRecords
from signaling.cluster.routing import Forward, Router, Supersede
from signaling.cluster.routing_local import Worker
from signaling.protocol import messages as m

log = logging.getLogger("callbook.calls")


class CrossingCalls:
    _store: Store
    _crossing: Crossing | None
    _records: CallRecords | None
    _router: Router
    _store_writes: Worker
    _calls: dict[str, AnyCall]
    # Per call: (caller, callee) while it is in the store as ringing; the devices talking in it.
    _shared_ringing: dict[str, tuple[str, str]]
    _shared_talking: dict[str, frozenset[sm.DeviceRef]]
    # The calls crossing a new one, as its ring write found them.
    _glare_checks: dict[str, asyncio.Future[None]]
    _crossing_found: dict[str, list[Ringing]]

    if TYPE_CHECKING:

        @property
        def node_id(self) -> str: ...
        def _apply_quietly(
            self, call_id: str, event: AnyEvent, at: float | None = None
        ) -> None: ...

    def _share(self, call_id: str) -> None:
        """Queue for the store what changed in a call that other nodes must see: one batch
        (one round trip) for the whole change."""
        crossing = self._crossing
        if crossing is None:
            return
        call = self._calls.get(call_id)
        writes: list[Callable[[Batch], object]] = []
        self._share_ringing(crossing, writes, call_id, call)
        talking = (
            frozenset(d for d in kinds.involved(call) if kinds.talking(call, d))
            if call is not None
            else frozenset()
        )
        before = self._shared_talking.get(call_id, frozenset())
        if talking != before:
            if talking:
                self._shared_talking[call_id] = talking
            else:
                self._shared_talking.pop(call_id, None)
            for account_id, device_ids in _by_account(talking - before).items():
                writes.append(partial(crossing.set_busy, call_id=call_id, account_id=account_id,
                                      device_ids=device_ids))  # fmt: skip
            for device in before - talking:
                writes.append(
                    partial(crossing.clear_busy, call_id=call_id, account_id=device.account_id,
                            device_id=device.device_id)
                )  # fmt: skip
        if writes:
            self._store_writes.submit(Staged(partial(_stage_all, writes)))

    def _share_ringing(
        self,
        crossing: Crossing,
        writes: list[Callable[[Batch], object]],
        call_id: str,
        call: AnyCall | None,
    ) -> None:
        """A call to someone who may not be rung takes exactly the same steps (the same script,
        awaited the same way, and the same removal), but its entry is not written: it never
        meets another call in glare (protocol.md 11.8), and timing does not tell it apart."""
        rings = isinstance(call, sm.Call) and call.phase is sm.Phase.RINGING
        shared = self._shared_ringing.get(call_id)
        if rings and shared is None and isinstance(call, sm.Call):
            pair = self._shared_ringing[call_id] = (call.caller.account_id, call.callee_account)
            written = call.reachable

            def ring(batch: Batch) -> Finish:
                at = crossing.stage_ring(batch, call_id, *pair, written)

                async def rang(results: list[Any]) -> None:
                    if call_id in self._shared_ringing:  # not ended meanwhile
                        self._crossing_found[call_id] = crossing_calls(results, at)

                return rang

            self._glare_checks[call_id] = self._store_writes.submit(Staged(ring))
        elif not rings and shared is not None:
            del self._shared_ringing[call_id]
            self._glare_checks.pop(call_id, None)
            self._crossing_found.pop(call_id, None)
            writes.append(partial(crossing.stop_ringing, call_id=call_id, caller=shared[0],
                                  callee=shared[1]))  # fmt: skip

    def _store_away(self, what: str) -> None:
        """One warning per store outage (the node's outage watch), not one per call."""
        if self._records is not None:
            self._records.outage.failed(what)
        else:
            log.warning("%s failed: the store is unreachable", what)

    async def _resolve_glare_across_nodes(self, call: sm.Call) -> None:
        """A call placed here crossing one another node runs: the smaller id survives."""
        checked = self._glare_checks.pop(call.id, None)
        if checked is None:
            return
        try:
            await checked
        except (RedisError, OSError):
            self._store_away("the glare check across nodes")
            return
        found = [r for r in self._crossing_found.pop(call.id, []) if r.owner != self.node_id]
        if not found:
            return  # a crossing call on this node was resolved in memory already
        try:
            alive = await self._router.live_nodes()
        except (RedisError, OSError):
            self._store_away("the glare check across nodes")
            return
        crossing = [r for r in found if r.owner in alive]
        if not crossing:
            return
        survivor = min([call.id, *(r.call for r in crossing)])
        if survivor != call.id:
            self._apply_quietly(call.id, sm.Superseded())
        for rival in crossing:
            if rival.call != survivor:
                self._router.send(
                    rival.owner,
                    Supersede(origin=self.node_id, account_id="", device_id="",
                              call_id=rival.call),
                )  # fmt: skip

    def _on_supersede(self, envelope: Supersede) -> None:
        """Another node found this node's ringing call crossing a smaller one."""
        if isinstance(self._calls.get(envelope.call_id), sm.Call):
            self._apply_quietly(envelope.call_id, sm.Superseded())

    async def _busy_elsewhere(
        self, account_id: str, devices: frozenset[sm.DeviceRef]
    ) -> frozenset[sm.DeviceRef]:
        """Those of the account's ``devices`` that talk in a call another live node runs."""
        batch = Batch(self._store)
        busy_of = self._stage_busy_elsewhere(batch, account_id)
        return await busy_of(await batch.execute(), devices)

    def _stage_busy_elsewhere(self, batch: Batch, account_id: str) -> BusyElsewhere:
        """``_busy_elsewhere``'s read on a batch; what it returns answers for some devices."""
        crossing = self._crossing
        if crossing is None:
            return _nobody_busy
        # Read even for no device: an invite costs the same whoever the callee is.
        entries_of = crossing.stage_busy(batch, account_id)

        async def busy(
            results: list[Any], devices: frozenset[sm.DeviceRef]
        ) -> frozenset[sm.DeviceRef]:
            remote = {d: e for d, e in entries_of(results).items() if e.node != self.node_id}
            if not remote:
                return frozenset()
            alive = await self._router.live_nodes()
            return frozenset(
                device
                for device in devices
                if (entry := remote.get(device.device_id)) is not None and entry.node in alive
            )

        return busy

    async def _talking_elsewhere(self, device: sm.DeviceRef) -> Busy | None:
        """The call the device talks in on another node, if any (read before it answers one
        here, which overwrites its entry)."""
        if self._crossing is None:
            return None
        try:
            entry = (await self._crossing.busy(device.account_id)).get(device.device_id)
        except (RedisError, OSError):
            # Answering must not depend on the store; only call waiting across nodes does.
            self._store_away("the busy check across nodes")
            return None
        return None if entry is None or entry.node == self.node_id else entry

    def _switch_away_elsewhere(
        self, device: sm.DeviceRef, accepting: str, elsewhere: Busy | None
    ) -> None:
        """Answering a waiting call hangs up the call the device talks in on another node: this
        node asks that call's owner to, as the device itself would (a forwarded hangup)."""
        call = self._calls.get(accepting)
        if elsewhere is None or call is None or not kinds.talking(call, device):
            return  # the accept was refused, or the answer went to another device
        if elsewhere.call == accepting:
            return
        self._router.send(
            elsewhere.node,
            Forward(origin=self.node_id, account_id=device.account_id,
                    device_id=device.device_id, message=m.Hangup(call_id=elsewhere.call),
                    on_behalf=True),
        )  # fmt: skip

    def _refresh_busy(self) -> None:
        """The owner is alive: its devices' busy entries live on. Queued on the same writer as
        the changes, so a refresh never brings back an entry a later change removed."""
        crossing = self._crossing
        if crossing is None:
            return
        writes: list[Callable[[Batch], object]] = [
            partial(crossing.set_busy, call_id=call_id, account_id=account_id,
                    device_ids=device_ids)
            for call_id, talking in self._shared_talking.items()
            for account_id, device_ids in _by_account(talking).items()
        ]  # fmt: skip
        if writes:
            self._store_writes.submit(Staged(partial(_stage_all, writes)))


BusyElsewhere = Callable[
    [list[Any], frozenset[sm.DeviceRef]], Coroutine[object, object, frozenset[sm.DeviceRef]]
]


async def _nobody_busy(
    _results: list[Any], _devices: frozenset[sm.DeviceRef]
) -> frozenset[sm.DeviceRef]:
    return frozenset()


def _stage_all(writes: list[Callable[[Batch], object]], batch: Batch) -> None:
    for write in writes:
        write(batch)


def _by_account(devices: frozenset[sm.DeviceRef]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for device in sorted(devices, key=lambda d: (d.account_id, d.device_id)):
        grouped.setdefault(device.account_id, []).append(device.device_id)
    return grouped
