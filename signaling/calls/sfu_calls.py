"""Group calls and calls through the SFU: the part of ``CallService`` that talks to media.

A mixin of ``CallService`` (``service.py``), which owns the state declared here and the
machinery (``_apply``, ``_run``, delivery) these methods use.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from directory import accounts, devices, handles, lookup
from directory.errors import NotFound, RateLimited
from directory.records import RelayCalls
from directory.store import Store
from signaling.calls import group as g
from signaling.calls import kinds, media_keys
from signaling.calls import machine as sm
from signaling.calls.conference import Conference, MediaRefused, MediaUnavailable
from signaling.calls.errors import CallError
from signaling.calls.kinds import AnyCall, AnyEvent
from signaling.calls.media_pool import MediaPool
from signaling.calls.quality import QualityBook
from signaling.cluster.routing import Router
from signaling.metrics import Metrics
from signaling.protocol import messages as m

INVITE_BURST = 20
INVITES_PER_S = 1.0


@contextmanager
def media_errors(call_id: str, unavailable: str) -> Iterator[None]:
    """The SFU's refusals as the device's typed errors (``unavailable`` when it is unreachable)."""
    try:
        yield
    except MediaRefused as exc:
        raise CallError(exc.code, exc.detail, call_id) from exc
    except MediaUnavailable as exc:
        raise CallError("unavailable", unavailable) from exc


class SfuCalls:
    _store: Store
    _calls: dict[str, AnyCall]
    _conference: Conference | None
    _media: MediaPool | None
    _router: Router
    _published: dict[str, set[sm.DeviceRef]]
    _key_requests: media_keys.RequestLimiter
    _ringing_for: dict[str, set[str]]
    _metrics: Metrics | None
    _ring_timeout_s: float
    _turn_configured: bool
    _resume_window_s: float
    _clock: Callable[[], float]
    quality: QualityBook

    if TYPE_CHECKING:

        def online_devices(self, account_id: str) -> frozenset[sm.DeviceRef]: ...
        def _in_connected_call(self, device: sm.DeviceRef) -> bool: ...
        def _persist(self, call_id: str) -> asyncio.Future[None] | None: ...
        async def _busy_elsewhere(
            self, account_id: str, devices: frozenset[sm.DeviceRef]
        ) -> frozenset[sm.DeviceRef]: ...
        def _attach(self, call_id: str, device: sm.DeviceRef) -> None: ...
        def _run(self, call_id: str, effects: Sequence[g.Effect]) -> None: ...
        def _apply_quietly(
            self, call_id: str, event: AnyEvent, at: float | None = None
        ) -> None: ...
        def _stop_ringing(self, call: AnyCall) -> None: ...
        def _deliver(self, device: sm.DeviceRef, message: m.ServerMessage) -> None: ...
        def _apply(
            self,
            call_id: str,
            event: AnyEvent,
            sender: sm.DeviceRef | None = None,
            at: float | None = None,
        ) -> None: ...

    async def _group_invite(self, host: sm.DeviceRef, invite: m.GroupInvite) -> None:
        conference = self._require_sfu()
        host_keys = await self._media_keys_of(host, required=True)
        host_account = await accounts.get(self._store, host.account_id)
        if host_account.suspended:
            raise CallError("account_suspended", "This account is suspended; it cannot call.")
        invited = await self._callable_accounts(host.account_id, invite.handles)
        call = g.GroupCall(
            id=secrets.token_hex(16),
            host=kinds.person(host_account),
            media=invite.media,
            invited=frozenset({host.account_id, *invited}),
            ring_timeout_s=self._ring_timeout_s,
            resume_window_s=self._resume_window_s,
        )
        try:
            await conference.open(call.id, call.max_participants)
        except MediaUnavailable as exc:
            raise CallError("unavailable", "The media server cannot take a call now.") from exc
        online, busy = await self._reachable(invited)
        call, effects = g.start(
            call, host, secrets.token_hex(8), online, busy, self._clock(), invite.ref, host_keys
        )
        self._calls[call.id] = call
        self.quality.open_call(call.id, self._clock())
        for device in (host, *call.ringing):
            self._attach(call.id, device)
        for account in call.awaiting:
            self._ringing_for.setdefault(account, set()).add(call.id)
        if self._metrics is not None:
            self._metrics.on_setup()
        self._run(call.id, effects)
        self._persist(call.id)  # stored (a survivor adopts its room); busy devices shared

    async def _group_add(self, device: sm.DeviceRef, add: m.GroupAdd) -> None:
        call = self._calls.get(add.call_id)
        if not isinstance(call, g.GroupCall) or device not in call.members:
            raise CallError("unknown_call", "No such call on this device.", add.call_id)
        if device.account_id != call.host.account_id:  # before any lookup is spent
            raise CallError("not_host", "Only the host can add people to this call.", call.id)
        try:
            invited = await self._callable_accounts(device.account_id, add.handles)
        except CallError as exc:  # a bad handle or the lookup budget: about this call
            raise CallError(exc.code, exc.detail, call.id) from exc
        online, busy = await self._reachable(invited)
        self._apply(call.id, g.AddEvent(device, online, busy), device)
        added = self._calls.get(call.id)
        if not isinstance(added, g.GroupCall):
            return
        for ringing in added.ringing - call.ringing:
            self._attach(call.id, ringing)
        for account in added.awaiting - call.awaiting:
            self._ringing_for.setdefault(account, set()).add(call.id)

    async def _reachable(
        self, accounts: list[str]
    ) -> tuple[dict[str, frozenset[sm.DeviceRef]], frozenset[sm.DeviceRef]]:
        """Each account's online devices, and which of them are in another call already."""
        online = {account: await self._router.online(account) for account in accounts}
        busy = frozenset(d for ds in online.values() for d in ds if self._in_connected_call(d))
        for account, reachable in online.items():
            busy |= await self._busy_elsewhere(account, reachable - busy)
        return online, busy

    async def _callable_accounts(self, host: str, typed_handles: list[str]) -> list[str]:
        """The invitees the host may ring; anyone else is silently left out, as if offline."""
        found: list[str] = []
        for text in typed_handles:
            typed = handles.parse_lookup(text)
            if typed is None:
                raise CallError("invalid_handle", f"{text[:40]!r} is not a valid handle.")
            try:
                dialing = await lookup.dial(
                    self._store, host, handle=typed, account_id=None,
                    burst=INVITE_BURST, refill_per_s=INVITES_PER_S,
                )  # fmt: skip
            except RateLimited as exc:
                raise CallError("rate_limited", exc.detail) from exc
            callee = dialing.callee_id
            if callee is None or callee == host or callee in found:
                continue
            if await lookup.callable_card(self._store, host, callee) is not None:
                found.append(callee)
        return found

    async def _join(self, device: sm.DeviceRef, call_id: str) -> None:
        call = self._calls.get(call_id)
        # Only a device that may join hears that it lacks a key: to anyone else the call id
        # stays one that does not exist.
        may_join = isinstance(call, g.GroupCall) and call.may_join(device)
        keys = await self._media_keys_of(device, required=may_join, call_id=call_id)
        account = await accounts.get(self._store, device.account_id)
        event = g.JoinEvent(device, secrets.token_hex(8), kinds.person(account), keys=keys)
        self._apply(call_id, event, device)
        self._attach(call_id, device)

    async def _accept_event(self, device: sm.DeviceRef, call: AnyCall | None) -> sm.AcceptEvent:
        """Answering a 1:1 call through the SFU needs this device's media key; both devices'
        keys go into the introduction that follows ``accepted``."""
        if not isinstance(call, sm.Call) or not call.sfu or not call.involves(device):
            return sm.AcceptEvent(device)
        own = await self._media_keys_of(device, required=True, call_id=call.id)
        return sm.AcceptEvent(device, (await self._media_keys_of(call.caller), own))

    async def _fallback_event(self, device: sm.DeviceRef, call: AnyCall | None) -> sm.FallbackEvent:
        """A failed peer-to-peer path moves to TURN when configured, else to the SFU, whose
        media is end-to-end encrypted: both devices need a media key for that."""
        if self._turn_configured:
            return sm.FallbackEvent(device, sfu=False)
        if self._conference is None:
            raise CallError("unavailable", "This server has no relay for calls.")
        if not isinstance(call, sm.Call) or call.relay_only or call.callee is None:
            return sm.FallbackEvent(device, sfu=True)  # refused or moot in the machine
        keys = (
            await self._media_keys_of(call.caller, required=True, call_id=call.id),
            await self._media_keys_of(call.callee, required=True, call_id=call.id),
        )
        return sm.FallbackEvent(device, sfu=True, keys=keys)

    async def _require_key_to_relay(self, caller: sm.DeviceRef, relay: RelayCalls) -> None:
        """A caller whose own setting relays every call, on a server that relays through the
        SFU, needs a media key before its call rings (it depends on the caller alone, so it
        tells nothing about the callee; other relayed calls are checked at ``publish``)."""
        if relay == "always" and self._conference is not None and not self._turn_configured:
            await self._media_keys_of(caller, required=True)

    async def _media_keys_of(
        self, device: sm.DeviceRef, *, required: bool = False, call_id: str | None = None
    ) -> sm.DeviceKeys | None:
        """The device's published keys; ``media_key_required`` when ``required`` and none."""
        try:
            record = await devices.get(self._store, device.account_id, device.device_id)
        except NotFound:
            record = None
        if record is None or record.media_key is None or record.media_key_signature is None:
            if required:
                raise CallError(
                    "media_key_required",
                    "Media through the SFU is end-to-end encrypted: publish this device's "
                    "media key (PUT /v1/devices/{device_id}/media-key) first.",
                    call_id,
                )
            return None
        return sm.DeviceKeys(record.public_key, record.media_key, record.media_key_signature)

    def _adopt_room(self, call: AnyCall, media_node: str) -> None:
        """A call taken over from a dead signaling node: its room lives on on ``media_node``,
        forwarding all along; this node learns where it is and who is in it."""
        if self._media is None or self._conference is None:
            return
        self._media.adopt(call.id, media_node)
        devices = {kinds.sfu_participant(call, d): d for d in kinds.sfu_devices(call)}
        self._conference.adopt(call.id, {p: d for p, d in devices.items() if p is not None})
        if isinstance(call, sm.Call) and call.phase is sm.Phase.CONNECTED:
            # Which legs had published is not stored: counting both as published makes the
            # next publish (if any) ask for both subscriptions again, which the SFU allows.
            self._published[call.id] = set(call.legs())

    def _let_room_go(self, call_id: str) -> None:
        """The call moved to another signaling node (drain): its room lives on, driven there."""
        if self._media is not None:
            self._media.release(call_id)
        if self._conference is not None:
            self._conference.forget(call_id)

    def _require_sfu(self) -> Conference:
        if self._conference is None:
            raise CallError("unavailable", "This server has no media server for group calls.")
        return self._conference

    async def _publish(self, device: sm.DeviceRef, publish: m.Publish) -> None:
        conference = self._require_sfu()
        call = self._calls.get(publish.call_id)
        participant = None if call is None else kinds.sfu_participant(call, device)
        if call is None or participant is None:
            raise CallError("unknown_call", "No call through the SFU here.", publish.call_id)
        await self._media_keys_of(device, required=True, call_id=call.id)
        if publish.source == "screen":
            await self._publish_screen(call, device, participant, publish.sdp)
            return
        try:
            if isinstance(call, sm.Call):
                await conference.open(call.id, 2)
            answer = await conference.publish(
                call.id, participant, device, publish.sdp, publish.bundle
            )
        except MediaRefused as exc:
            raise CallError(exc.code, exc.detail, call.id) from exc
        except MediaUnavailable as exc:
            raise CallError("unavailable", "The media server cannot take a call now.") from exc
        if kinds.sfu_participant(self._calls.get(call.id), device) != participant:
            conference.remove(call.id, participant)  # the call or the device moved on meanwhile
            return
        self._deliver(device, m.PublishAnswer(call_id=call.id, sdp=answer))
        if isinstance(call, g.GroupCall):
            self._apply(call.id, g.PublishedEvent(device), device)
            return
        self._persist(call.id)  # the record now names the room's media node
        published = self._published.setdefault(call.id, set())
        published.add(device)
        if len(published) == 2:
            a, b = call.legs()
            self._run(call.id, [g.Subscribe(a, b), g.Subscribe(b, a)])

    def _publishers(self, call: AnyCall) -> dict[str, sm.DeviceRef]:
        """The call's devices whose own media the SFU has, by participant id."""
        if isinstance(call, g.GroupCall):
            return {mb.participant: d for d, mb in call.members.items() if mb.published}
        found = {}
        for device in self._published.get(call.id, set()):
            participant = kinds.sfu_participant(call, device)
            if participant is not None:
                found[participant] = device
        return found

    async def _publish_screen(
        self, call: AnyCall, device: sm.DeviceRef, participant: str, offer: str
    ) -> None:
        """A second uplink with the device's shared screen; everyone whose media is in gets a
        ``subscribe_offer`` for it (``source: "screen"``), and so does each later publisher."""
        conference = self._require_sfu()
        publishers = self._publishers(call)
        if publishers.get(participant) != device:
            raise CallError(
                "not_published", "Publish this device's own media before its screen.", call.id
            )
        if conference.sharing(call.id, participant):
            raise CallError("already_published", "This device already shares a screen.", call.id)
        try:
            answer = await conference.publish_screen(call.id, participant, offer, publishers)
        except MediaRefused as exc:
            raise CallError(exc.code, exc.detail, call.id) from exc
        except MediaUnavailable as exc:
            raise CallError("unavailable", "The media server cannot take a call now.") from exc
        self._deliver(device, m.PublishAnswer(call_id=call.id, sdp=answer, source="screen"))

    async def _unpublish(self, device: sm.DeviceRef, message: m.Unpublish) -> None:
        """The device stops sharing its screen (again: nothing happens); the others hear of
        it from ``_on_screen_ended``."""
        conference = self._require_sfu()
        call_id, participant = self._sfu_participant(device, message.call_id)
        await conference.unpublish_screen(call_id, participant)

    def _on_screen_ended(self, room: str, participant: str) -> None:
        """A screen stopped: unpublished, its connection died by itself (a closed tab, a lost
        network), or its sharer left. The others get ``unpublished`` and close that
        subscription (the SFU closed it already; a bundled device's next ``renegotiate`` drops
        it), and the roster no longer shows the share: a dead tab sends no ``mute`` to say so."""
        call = self._calls.get(room)
        if call is None or call.phase is sm.Phase.ENDED:
            return
        told = m.Unpublished(call_id=room, participant=participant, source="screen")
        sharer = None
        for device in kinds.sfu_devices(call):
            if kinds.sfu_participant(call, device) == participant:
                sharer = device
            else:
                self._deliver(device, told)
        member = call.members.get(sharer) if isinstance(call, g.GroupCall) and sharer else None
        if sharer is not None and member is not None and member.screen:
            muted = g.MuteEvent(sharer, member.audio_muted, member.video_muted, screen=False)
            self._apply_quietly(room, muted)

    def _sfu_participant(self, device: sm.DeviceRef, call_id: str) -> tuple[str, str]:
        """The call's id and the device's participant in its SFU room, else ``unknown_call``."""
        call = self._calls.get(call_id)
        participant = None if call is None else kinds.sfu_participant(call, device)
        if call is None or participant is None:
            raise CallError("unknown_call", "No call through the SFU here.", call_id)
        return call.id, participant

    async def _answer_subscription(self, device: sm.DeviceRef, reply: m.SubscribeAnswer) -> None:
        conference = self._require_sfu()
        call_id, participant = self._sfu_participant(device, reply.call_id)
        with media_errors(call_id, "The media server refused the answer."):
            await conference.answer(call_id, participant, reply.subscription, reply.sdp)

    async def _answer_renegotiation(self, device: sm.DeviceRef, reply: m.RenegotiateAnswer) -> None:
        conference = self._require_sfu()
        call_id, participant = self._sfu_participant(device, reply.call_id)
        with media_errors(call_id, "The media server refused the answer."):
            await conference.answer_renegotiation(call_id, participant, reply.revision, reply.sdp)

    def _resend_offers(self, device: sm.DeviceRef, call_id: str) -> None:
        """A resumed device may have lost a ``renegotiate`` in flight: send the outstanding
        one again (same revision)."""
        call = self._calls.get(call_id)
        participant = None if call is None else kinds.sfu_participant(call, device)
        if self._conference is not None and participant is not None:
            self._conference.resumed(call_id, participant)

    async def _set_view(self, device: sm.DeviceRef, view: m.View) -> None:
        """The largest picture the device wants of one participant (simulcast layer choice)."""
        conference = self._require_sfu()
        call_id, participant = self._sfu_participant(device, view.call_id)
        with media_errors(call_id, "The media server cannot take that now."):
            await conference.set_view(
                call_id, participant, view.participant, view.source, view.max_height
            )

    def _route_media_keys(
        self, device: sm.DeviceRef, message: m.MediaKeys | m.MediaKeyRequest
    ) -> None:
        """Pass sealed media keys (and requests for them) between the call's participants."""
        call = self._calls.get(message.call_id)
        if call is None:
            raise CallError("unknown_call", "No such call on this device.", message.call_id)
        if isinstance(message, m.MediaKeys):
            deliveries = media_keys.route_keys(call, device, message)
        else:
            deliveries = media_keys.route_request(
                call, device, message, self._key_requests, self._clock()
            )
        for to, out in deliveries:
            self._deliver(to, out)

    def _media_effect(
        self, call_id: str, effect: g.Subscribe | g.RemoveParticipant | g.CloseRoom
    ) -> None:
        conference = self._conference
        call = self._calls.get(call_id)
        if conference is None or call is None:
            return
        match effect:
            case g.Subscribe(subscriber=subscriber, publisher=publisher):
                to = kinds.sfu_participant(call, subscriber)
                source = kinds.sfu_participant(call, publisher)
                if to is not None and source is not None:
                    conference.subscribe(call_id, subscriber, to, source)
            case g.RemoveParticipant(participant=participant):
                conference.remove(call_id, participant)
            case g.CloseRoom():
                conference.close(call_id)

    def sfu_quality(self, call_id: str) -> dict[str, dict[str, Any]]:
        """What the SFU measures of each participant's media, by account id."""
        call = self._calls.get(call_id)
        if self._conference is None or call is None:
            return {}
        by_participant = self._conference.participant_stats(call_id)
        found: dict[str, dict[str, Any]] = {}
        for device in kinds.sfu_devices(call):
            participant = kinds.sfu_participant(call, device)
            if participant in by_participant:
                found[device.account_id] = by_participant[participant]
        return found

    def _on_media_lost(self, node: str, rooms: list[str]) -> None:
        """A media node died with these rooms (each named by its call): their calls end, every
        device in them told ``media_failed``; a new call is placed on another node."""
        for room in rooms:
            if self._conference is not None:
                self._conference.forget(room)
            call = self._calls.get(room)
            if call is None or call.phase is sm.Phase.ENDED:
                continue
            ended: AnyCall
            effects: Sequence[g.Effect]
            if isinstance(call, g.GroupCall):
                ended, effects = g.end_media_failed(call, self._clock())
            else:
                ended, effects = sm.end_media_failed(call)
            self._calls[room] = ended
            self._stop_ringing(ended)
            self._run(room, effects)
            self._persist(room)

    def _on_leg_failed(self, room: str, device: sm.DeviceRef) -> None:
        """The SFU lost one device's media (a leg's transport failed or closed by itself): in a
        group call that device gets ``media_failed`` and the rest go on; a relayed 1:1 call
        has nothing left to carry, so both devices get it."""
        call = self._calls.get(room)
        if call is None or call.phase is sm.Phase.ENDED:
            return
        if isinstance(call, g.GroupCall):
            self._apply_quietly(room, g.MediaFailed(device))
            return
        ended, effects = sm.end_media_failed(call)
        self._calls[room] = ended
        self._stop_ringing(ended)
        self._run(room, effects)
        self._persist(room)
