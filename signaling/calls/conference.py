"""Media through the SFU for one node's calls: group calls, and 1:1 calls relayed to hide IPs.

The call machines decide who subscribes to whom; this adapter carries it out against the
media node's control API and reports back what the SFU says (answers, offers, the active
speaker). Each call's room on the SFU is named by the call id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from directory.storage.tasks import cancel_until_done
from media.bundle import Offer
from media.control import MediaControlError
from signaling.calls.machine import DeviceRef
from signaling.calls.screen_watch import screens_gone, screens_shared
from signaling.protocol import messages as m

log = logging.getLogger("callbook.conference")

SPEAKER_POLL_S = 1.0


class MediaRooms(Protocol):
    """What signaling needs from a media node: ``media.control.MediaControl`` over HTTP."""

    async def create_room(self, room: str, max_participants: int = 16) -> None: ...

    async def join(self, room: str, participant: str, offer_sdp: str, bundle: bool = False) -> str:
        """Admit ``participant`` with its offer; returns the SFU's answer. ``bundle``: what
        it receives comes over that one connection, by the SFU's offers (``offer``)."""

    async def subscribe(
        self, room: str, participant: str, publisher: str, source: str = "camera"
    ) -> tuple[str, str | None]:
        """A downlink of ``publisher``'s ``source`` (camera or screen) for ``participant``:
        (subscription id, offer); no offer for a bundled participant."""

    async def offer(self, room: str, participant: str) -> Offer | None:
        """A bundled participant's outstanding offer (made when anything changed), or None."""

    async def answer_offer(
        self, room: str, participant: str, revision: int, answer_sdp: str
    ) -> Offer | None:
        """The answer to offer ``revision``; the next offer when one is due."""

    async def publish_screen(self, room: str, participant: str, offer_sdp: str) -> str:
        """``participant``'s shared screen, a second uplink; returns the SFU's answer."""

    async def unpublish_screen(self, room: str, participant: str) -> None: ...

    async def answer(
        self, room: str, participant: str, subscription: str, answer_sdp: str
    ) -> None: ...

    async def set_view(
        self,
        room: str,
        participant: str,
        publisher: str,
        source: str = "camera",
        max_height: int | None = None,
    ) -> None:
        """The largest height ``participant`` wants of ``publisher``'s ``source``."""

    async def leave(self, room: str, participant: str) -> None: ...

    async def delete_room(self, room: str) -> None: ...

    async def room_stats(self, room: str) -> dict[str, Any]: ...


class MediaUnavailable(Exception):
    """The media node could not be reached or failed; a retry later may succeed."""


class MediaRefused(Exception):
    """The media node refused what the device sent (an SDP it cannot use, a subscription it
    does not know): the same request will never succeed, so the device must not retry it."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


#: The media node's codes for a device's mistake -> the call protocol's error code (11.13).
REFUSALS = {
    "invalid_sdp": "invalid_sdp",
    "invalid_request": "invalid_sdp",  # e.g. an SDP the node's request schema refuses
    "subscription_not_found": "unknown_subscription",
    "participant_not_found": "unknown_subscription",  # an answer from a device yet to publish
    "stale_offer": "stale_offer",
    "not_bundled": "unknown_subscription",  # a renegotiate_answer from an old-mode device
}


def _failure(exc: Exception) -> MediaRefused | MediaUnavailable:
    if isinstance(exc, MediaControlError) and exc.code in REFUSALS:
        return MediaRefused(REFUSALS[exc.code], exc.detail)
    return MediaUnavailable(str(exc))


Deliver = Callable[[DeviceRef, m.ServerMessage], None]
#: The SFU reports that a leg of this device's media died (room, device).
MediaFailed = Callable[[str, DeviceRef], None]
#: A participant's shared screen stopped: unpublished, died by itself, or left with it
#: (room, participant). The SFU has closed it already.
ScreenEnded = Callable[[str, str], None]


class Conference:
    """Runs SFU requests off the message path and routes their results to devices."""

    def __init__(
        self,
        rooms: MediaRooms,
        deliver: Deliver,
        media_failed: MediaFailed | None = None,
        screen_ended: ScreenEnded | None = None,
    ) -> None:
        self._rooms = rooms
        self._deliver = deliver
        self._media_failed = media_failed
        self._screen_ended = screen_ended
        self._tasks: set[asyncio.Task[None]] = set()
        # Per room: who is in it, by participant id, for offers and speaker announcements.
        self._devices: dict[str, dict[str, DeviceRef]] = {}
        self._speakers: dict[str, str | None] = {}
        # Per room: who shares a screen now (their screens go to everyone who subscribes), each
        # share with a serial, so that stats older than a share cannot end it (screen_watch.py).
        self._screens: dict[str, dict[str, int]] = {}
        self._share_serials = itertools.count(1)
        # The SFU's latest view of each participant's media, by room, for operators.
        self._stats: dict[str, dict[str, dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        # Per (room, participant): the last renegotiate revision delivered (sent once each).
        self._offered: dict[tuple[str, str], int] = {}
        # Subscriptions asked for and not yet answered by the SFU, per (room, subscriber); and
        # the bundled subscribers among them, whose offer is pulled when their batch is done.
        self._subscribing: Counter[tuple[str, str]] = Counter()
        self._bundled_batch: set[tuple[str, str]] = set()

    def start(self) -> None:
        """Start watching the rooms' speakers."""
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def open(self, room: str, max_participants: int) -> None:
        try:
            await self._rooms.create_room(room, max_participants)
        except Exception as exc:
            raise MediaUnavailable(str(exc)) from exc
        self._devices.setdefault(room, {})
        self.start()

    async def publish(
        self, room: str, participant: str, device: DeviceRef, offer: str, bundle: bool = False
    ) -> str:
        try:
            answer = await self._rooms.join(room, participant, offer, bundle)
        except Exception as exc:
            raise _failure(exc) from exc
        self._devices.setdefault(room, {})[participant] = device
        self._tell_speaker(room, device)
        return answer

    def _tell_speaker(self, room: str, device: DeviceRef) -> None:
        """The speaker is announced when it changes; a device that comes in later (its publish
        answered after the first announcement, or a resumed session that may have lost one)
        would wait for the next change, which two people talking steadily may never make."""
        speaker = self._speakers.get(room)
        if speaker is not None:
            self._deliver(device, m.ActiveSpeaker(call_id=room, participant=speaker))

    def subscribe(self, room: str, device: DeviceRef, subscriber: str, publisher: str) -> None:
        """Ask the SFU for ``publisher``'s media for ``subscriber`` (on ``device``): its
        camera, and its screen too while it shares one."""
        self._spawn_subscribe(room, device, subscriber, publisher)
        if publisher in self._screens.get(room, ()):
            self._spawn_subscribe(room, device, subscriber, publisher, "screen")

    def _spawn_subscribe(
        self,
        room: str,
        device: DeviceRef,
        subscriber: str,
        publisher: str,
        source: m.Source = "camera",
    ) -> None:
        # counted now, before any answer: the subscriber's offer waits for the whole batch
        self._subscribing[(room, subscriber)] += 1
        self._spawn(self._subscribe(room, device, subscriber, publisher, source))

    async def _subscribe(
        self,
        room: str,
        device: DeviceRef,
        subscriber: str,
        publisher: str,
        source: m.Source = "camera",
    ) -> None:
        key = (room, subscriber)
        try:
            subscription, offer = await self._rooms.subscribe(room, subscriber, publisher, source)
        except Exception:
            log.warning("the SFU could not offer a subscription", exc_info=True)
            subscription, offer = "", ""
        finally:
            self._subscribing[key] -= 1
        if offer is None:  # a bundled subscriber: it comes with that connection's next offer
            self._bundled_batch.add(key)
        if self._subscribing[key] <= 0:
            del self._subscribing[key]
            if key in self._bundled_batch:
                # the last of a batch (a join subscribes to everyone at once): one offer for all
                self._bundled_batch.discard(key)
                await self._renegotiate(room, subscriber)
        if not offer:
            return
        message = m.SubscribeOffer(
            call_id=room, subscription=subscription, participant=publisher, sdp=offer,
            source=source,
        )  # fmt: skip
        self._deliver(device, message)

    async def publish_screen(
        self, room: str, participant: str, offer: str, subscribers: dict[str, DeviceRef]
    ) -> str:
        """``participant`` shares its screen; each of ``subscribers`` (participant -> device,
        those whose own media is in) is offered it."""
        try:
            answer = await self._rooms.publish_screen(room, participant, offer)
        except Exception as exc:
            raise _failure(exc) from exc
        self._screens.setdefault(room, {})[participant] = next(self._share_serials)
        for subscriber, device in subscribers.items():
            if subscriber != participant:
                self._spawn_subscribe(room, device, subscriber, participant, "screen")
        return answer

    def sharing(self, room: str, participant: str) -> bool:
        return participant in self._screens.get(room, ())

    async def unpublish_screen(self, room: str, participant: str) -> bool:
        """``participant`` stops sharing; False when it was not sharing. A failed request to
        the SFU ends the share all the same: its uplink goes with the participant or the room."""
        if self._screens.get(room, {}).pop(participant, None) is None:
            return False
        await self._quietly(self._rooms.unpublish_screen(room, participant))
        self._renegotiate_all(room)
        self._tell_screen_ended(room, participant)
        return True

    def _tell_screen_ended(self, room: str, participant: str) -> None:
        if self._screen_ended is not None:
            self._screen_ended(room, participant)

    async def answer(self, room: str, subscriber: str, subscription: str, sdp: str) -> None:
        try:
            await self._rooms.answer(room, subscriber, subscription, sdp)
        except Exception as exc:
            raise _failure(exc) from exc

    async def set_view(
        self, room: str, subscriber: str, publisher: str, source: str, max_height: int | None
    ) -> None:
        try:
            await self._rooms.set_view(room, subscriber, publisher, source, max_height)
        except Exception as exc:
            raise _failure(exc) from exc

    def remove(self, room: str, participant: str) -> None:
        self._devices.get(room, {}).pop(participant, None)
        self._offered.pop((room, participant), None)
        self._spawn(self._leave(room, participant))
        if self._screens.get(room, {}).pop(participant, None) is not None:
            self._tell_screen_ended(room, participant)  # its screen leaves with it

    async def _leave(self, room: str, participant: str) -> None:
        await self._quietly(self._rooms.leave(room, participant))
        self._renegotiate_all(room)

    # --- one connection per participant (11.15.2) ---------------------------------------------

    def _renegotiate_all(self, room: str) -> None:
        """Someone's media went: each bundled participant's next offer drops it (an old-mode
        participant has no offer: the SFU closed its subscription's connection)."""
        for participant in list(self._devices.get(room, {})):
            self._spawn(self._renegotiate(room, participant))

    async def _renegotiate(self, room: str, participant: str, again: bool = False) -> None:
        """Deliver the participant's outstanding offer, if it has one not yet delivered (or
        ``again``: after a resume, the one it may have missed)."""
        try:
            offer = await self._rooms.offer(room, participant)
        except Exception:
            log.warning("the SFU could not make an offer", exc_info=True)
            return
        self._deliver_offer(room, participant, offer, again)

    def _deliver_offer(
        self, room: str, participant: str, offer: Offer | None, again: bool = False
    ) -> None:
        device = self._devices.get(room, {}).get(participant)
        key = (room, participant)
        if offer is None or device is None:
            return
        if not again and offer.revision <= self._offered.get(key, 0):
            return  # delivered already (two changes pulled the same outstanding offer)
        self._offered[key] = max(offer.revision, self._offered.get(key, 0))
        streams = [
            m.Stream(mid=s.mid, participant=s.participant, source=s.source.value, kind=s.kind.value)
            for s in offer.streams
        ]
        message = m.Renegotiate(
            call_id=room, revision=offer.revision, sdp=offer.sdp, streams=streams
        )
        self._deliver(device, message)

    async def answer_renegotiation(
        self, room: str, participant: str, revision: int, sdp: str
    ) -> None:
        """The device's answer to offer ``revision``; the next offer goes out if one is due."""
        try:
            offer = await self._rooms.answer_offer(room, participant, revision, sdp)
        except Exception as exc:
            raise _failure(exc) from exc
        self._deliver_offer(room, participant, offer)

    def resumed(self, room: str, participant: str) -> None:
        """The device resumed its session: an offer in flight may have been lost with it."""
        device = self._devices.get(room, {}).get(participant)
        if device is not None:
            self._spawn(self._renegotiate(room, participant, again=True))
            self._tell_speaker(room, device)

    def adopt(self, room: str, devices: dict[str, DeviceRef]) -> None:
        """A room that already lives on its media node (a call taken over from another signaling
        node): its participants' media keeps flowing; this node only learns who they are."""
        self._devices[room] = dict(devices)
        self.start()
        self._spawn(self._learn_screens(room))

    async def _learn_screens(self, room: str) -> None:
        """Who shares a screen in an adopted room: the SFU knows (the record does not), and
        without it here an ``unpublish``, or the screen's death, would reach nobody."""
        try:
            stats = await self._rooms.room_stats(room)
        except Exception:
            log.warning("the SFU could not say who shares a screen", exc_info=True)
            return
        devices, sharing = self._devices.get(room, {}), self._screens.setdefault(room, {})
        for participant in screens_shared(stats):
            if participant in devices and participant not in sharing:
                sharing[participant] = next(self._share_serials)

    def forget(self, room: str) -> None:
        """The room is gone with its media node: nothing to ask the SFU any more."""
        self._forget_offers(room)
        self._devices.pop(room, None)
        self._screens.pop(room, None)
        self._speakers.pop(room, None)
        self._stats.pop(room, None)

    def participant_stats(self, room: str) -> dict[str, dict[str, Any]]:
        return self._stats.get(room, {})

    def _forget_offers(self, room: str) -> None:
        for key in [k for k in self._offered if k[0] == room]:
            del self._offered[key]

    def close(self, room: str) -> None:
        self._forget_offers(room)
        self._devices.pop(room, None)
        self._screens.pop(room, None)
        self._speakers.pop(room, None)
        self._stats.pop(room, None)
        self._spawn(self._quietly(self._rooms.delete_room(room)))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(SPEAKER_POLL_S)
            for room, devices in list(self._devices.items()):
                if not devices:
                    continue
                with contextlib.suppress(Exception):
                    sharing = dict(self._screens.get(room, {}))  # as known before asking
                    stats = await self._rooms.room_stats(room)
                    if room in self._devices:
                        self._stats[room] = {
                            str(p.get("participant")): p for p in stats.get("participants", [])
                        }
                        self._report_failed(room, stats)
                        self._end_dead_screens(room, sharing, stats)
                    speaker = stats.get("active_speaker")
                    if speaker != self._speakers.get(room) and room in self._devices:
                        self._speakers[room] = speaker
                        announcement = m.ActiveSpeaker(call_id=room, participant=speaker)
                        for device in self._devices[room].values():
                            self._deliver(device, announcement)

    def _report_failed(self, room: str, stats: dict[str, Any]) -> None:
        """Participants whose uplink or a downlink died on the SFU (the rest of the room goes
        on): each device is reported once, and the call machine takes it out of the room."""
        devices = self._devices[room]
        for entry in stats.get("participants", []):
            if not entry.get("media_failed"):
                continue
            device = devices.pop(str(entry.get("participant")), None)
            if device is not None and self._media_failed is not None:
                self._media_failed(room, device)

    def _end_dead_screens(self, room: str, before: dict[str, int], stats: dict[str, Any]) -> None:
        """Screens whose connection died without ``unpublish`` (the SFU closed them already):
        ended as if unpublished, so the others' next offer drops them."""
        sharing = self._screens.get(room, {})
        for participant in screens_gone(before, sharing, stats):
            del sharing[participant]
            self._renegotiate_all(room)
            self._tell_screen_ended(room, participant)

    async def _quietly(self, request: Coroutine[object, object, None]) -> None:
        try:
            await request
        except Exception:
            log.warning("an SFU clean-up request failed", exc_info=True)

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        # The poll goes on after any error, so a cancellation an SFU request turns into a
        # timeout would leave it polling, and the node's shutdown waiting on it, for ever.
        tasks = [*self._tasks, *([self._poller] if self._poller is not None else [])]
        await asyncio.gather(*(cancel_until_done(task) for task in tasks))
