"""Choosing every subscriber's simulcast layers, a few times a second (``select_layers``).

Pure: no I/O, time passed in; it reads and updates the ``Forwarder``'s rooms and returns the
keyframe requests to send (one per layer that a subscription now waits to switch to). The
decisions themselves are ``media.simulcast``'s; this module gathers their inputs: per subscriber
its active subscriptions, the layers each publisher sends now, the height it asked for
(``set_view``), its bandwidth estimate (``media.bandwidth``, fed by the forwarder from REMB and
receiver reports) and its prober.
"""

from __future__ import annotations

from typing import Any

from media.bandwidth import usable
from media.forwarding import (
    ABS_SEND_TIME_URI,
    CLOCK_RATE,
    Forwarder,
    KeyframeRequest,
    Kind,
    Publication,
    Room,
    Source,
    Subscription,
    Target,
)
from media.probing import PADDING_SIZE, PaddingProbe
from media.rtp import abs_send_time_element, build_padding
from media.simulcast import PROBE_BACKOFF_S, Demand, Prober, allocate, layers_now

#: No padding before a subscriber's first REMBs have had this long to arrive.
PADDING_SETTLE_S = 1.0


def set_view(
    forwarder: Forwarder,
    room: str,
    subscriber: str,
    publisher: str,
    source: Source,
    max_height: int | None,
) -> None:
    """The largest height ``subscriber`` wants of ``publisher``'s ``source`` (None: any)."""
    found = forwarder.room(room)
    forwarder.participant(room, subscriber)
    forwarder.participant(room, publisher)  # views are kept per member: bounded by the room
    key = (subscriber, publisher, source)
    if max_height is None:
        found.views.pop(key, None)
    else:
        found.views[key] = max(0, max_height)


def select_layers(forwarder: Forwarder, now: float) -> list[KeyframeRequest]:
    requests: list[KeyframeRequest] = []
    forwarder.pacing = []  # refilled by the subscribers who pad now
    for room in forwarder.rooms.values():
        if not any(
            publication.layered is not None
            for participant in room.participants.values()
            for publication in participant.by_track.values()
        ):
            continue  # nobody in this room publishes simulcast
        by_subscriber: dict[str, list[Subscription]] = {}
        for sub in room.subscriptions.values():
            if sub.active:
                by_subscriber.setdefault(sub.subscriber, []).append(sub)
        for subscriber, subs in by_subscriber.items():
            requests += _select_for(forwarder, room, subscriber, subs, now)
    return requests


def _select_for(
    forwarder: Forwarder, room: Room, subscriber: str, subs: list[Subscription], now: float
) -> list[KeyframeRequest]:
    demands: list[Demand] = []
    targets: dict[str, tuple[Publication, Target]] = {}
    speaker = room.speaker.current
    for sub in subs:
        publisher = room.participants.get(sub.publisher)
        if publisher is None:
            continue
        publication = publisher.by_track.get((sub.source, Kind.VIDEO))
        target = publication.targets.get(sub.id) if publication is not None else None
        if publication is None or publication.layered is None or target is None:
            continue
        if target.layered is None:
            continue
        demand = Demand(
            sub.id,
            tuple(layers_now(publication.layered.meters, now)),
            room.views.get((subscriber, sub.publisher, sub.source)),
            target.layered.switch.current,
        )
        # The active speaker first: the last to lose its video when the budget is short.
        demands.insert(0, demand) if sub.publisher == speaker else demands.append(demand)
        targets[sub.id] = (publication, target)
    if not demands:
        return []
    choice = _choose(forwarder, room, subscriber, demands, targets, now)
    requests = []
    for demand in demands:
        publication, target = targets[demand.key]
        state = target.layered
        assert state is not None and publication.layered is not None
        state.switch.retarget(choice[demand.key])
        if state.switch.pending and state.switch.target is not None:
            request = forwarder.layer_keyframe(publication, state.switch.target, now)
            if request is not None:
                requests.append(request)
    return requests


def _choose(
    forwarder: Forwarder,
    room: Room,
    subscriber: str,
    demands: list[Demand],
    targets: dict[str, tuple[Publication, Target]],
    now: float,
) -> dict[str, int | None]:
    """The allocation within the estimate, or one layer more while a probe runs.

    The estimate is a budget for video alone: a receiver's REMB measures only the packets
    that carry abs-send-time, which the SFU writes on video (Chromium estimates from video
    packets only without transport-cc, and aiortc runs its estimator on video receivers).
    Taking audio off it as well counted audio twice: a 300 kbit/s downlink then could never
    earn two quarter layers, as one flowing layer's REMB grows to 1.5 x that layer only.
    """
    estimate = room.estimates.get(subscriber)
    sending = _cost(demands, {d.key: d.current for d in demands})
    value = (
        usable(estimate.value(now), sending, estimate.congested(now), estimate.rising(now))
        if estimate is not None
        else None
    )
    loss = estimate.worst_loss(now) if estimate is not None else 0.0
    plain = allocate(value, 0.0, demands)
    if value is None:
        return plain
    prober = room.probers.get(subscriber)
    if prober is None:  # the first estimate: let it settle before any probe
        prober = room.probers[subscriber] = Prober(next_at=now + PROBE_BACKOFF_S)
    prober.settle(value, loss, now)
    if prober.probing(now):
        return allocate(value, 0.0, demands, extra_steps=1, probe_key=prober.key)
    more = allocate(value, 0.0, demands, extra_steps=1)
    up = next((key for key in more if more[key] != plain[key]), None)
    needed = _cost(demands, more)
    # Not ``congested``: a loss cap outlives the losses (it lifts only as reports come in), and
    # padding is what lets the estimate grow past it. Recent losses still stop a probe.
    fell = estimate is not None and estimate.fell_lately(now)
    rtx = targets[up][1] if up is not None and forwarder.padding_probes else None
    padding = (
        None if up is None else needed,
        rtx.subscription if rtx is not None and rtx.leg.rtx_ssrc is not None else None,
    )
    if _pad(forwarder, room, subscriber, value, sending, padding, loss, fell, now):
        return plain  # padding lets the estimate grow to the next layer: no trial needed
    if more == plain:
        return plain  # everyone already has all it wants
    if prober.start(True, loss, needed, now, value):
        prober.key = next(key for key in more if more[key] != plain[key])
        forwarder.counters.probes += 1
        room.counters.probes += 1
        return more
    return plain


def _pad(
    forwarder: Forwarder,
    room: Room,
    subscriber: str,
    estimate_bps: float,
    sending_bps: float,
    wanted: tuple[float | None, str | None],
    loss: float,
    fell: bool,
    now: float,
) -> bool:
    """Plan ``subscriber``'s padding probe (``wanted``: what one layer more costs, and the
    subscription whose RTX stream can carry padding; ``fell``: its REMB fell lately); True
    while it pads."""
    padding = room.paddings.get(subscriber)
    if padding is None:  # the first estimate: let it settle before padding
        padding = room.paddings[subscriber] = PaddingProbe(next_at=now + PADDING_SETTLE_S)
    started = padding.started
    target_bps, sub_id = wanted
    rate = padding.plan(now, estimate_bps, sending_bps, target_bps, loss, fell, sub_id)
    if padding.started != started:
        forwarder.counters.padding_probes += 1
        room.counters.padding_probes += 1
    if rate > 0:
        forwarder.pacing.append((room, padding))
    return rate > 0


def padding_due(forwarder: Forwarder, now: float) -> list[tuple[str, bytes]]:
    """(subscription, padding-only packet) to send now: call every few milliseconds."""
    out: list[tuple[str, bytes]] = []
    for room, padding in forwarder.pacing:
        count = padding.take(now)
        sub = forwarder.subscriptions.get(padding.sub_id or "")
        if count <= 0 or sub is None:
            continue
        leg = sub.legs.get(Kind.VIDEO)
        if leg is None or leg.rtx_ssrc is None or leg.rtx_payload_type is None:
            continue
        send_time_id = leg.extensions.get(ABS_SEND_TIME_URI)
        # the receiver's delay-based estimator counts only packets that carry a send time
        element = abs_send_time_element(send_time_id, now) if send_time_id else None
        timestamp = int(now * CLOCK_RATE[Kind.VIDEO]) & 0xFFFFFFFF
        for _ in range(count):
            packet = build_padding(
                leg.rtx_ssrc, leg.rtx_payload_type, padding.next_sequence(), timestamp,
                element, PADDING_SIZE,
            )  # fmt: skip
            out.append((sub.id, packet))
        size = count * len(out[-1][1])
        for c in (forwarder.counters, room.counters):
            c.probe_padding_packets += count
            c.probe_padding_bytes += size
    return out


def _cost(demands: list[Demand], choice: dict[str, int | None]) -> float:
    total = 0.0
    for demand in demands:
        layer = choice.get(demand.key)
        total += sum(x.bps for x in demand.layers if x.index == layer)
    return total


def simulcast_stats(forwarder: Forwarder, now: float) -> dict[str, Any]:
    """Node stats: subscriptions whose simulcast video is paused, every subscriber's estimate."""
    return {
        "video_paused": paused_videos(forwarder),
        "subscriber_estimates_bps": [round(v) for v in estimates(forwarder, now)],
    }


#: REMB to simulcast publishers: a browser trusts a REMB in its first 2 s and starts sending
#: at that rate instead of climbing from 300 kbit/s by 8 % a second (so all layers flow at
#: once); later ones only cap it. Sent every tick while a publisher starts, then every second.
PUBLISHER_REMB_START_S = 3.0


def publisher_rembs(
    forwarder: Forwarder, now: float, every_second: bool
) -> list[tuple[str, str, Source, list[int], int]]:
    """(room, publisher, source, layer SSRCs, bit/s) of the REMBs to send simulcast publishers
    now: the node's video cap, which a browser lowers to its own maximum."""
    cap = int(forwarder.cap_kbps[Kind.VIDEO] * 1000)
    out = []
    for room in forwarder.rooms.values():
        for participant in room.participants.values():
            for publication in participant.by_track.values():
                layered = publication.layered
                if layered is None or layered.started_at is None or not layered.ssrc_of:
                    continue
                starting = now - layered.started_at < PUBLISHER_REMB_START_S
                if starting or every_second:
                    ssrcs = sorted(layered.ssrc_of.values())
                    out.append((room.name, participant.name, publication.source, ssrcs, cap))
    return out


def paused_videos(forwarder: Forwarder) -> int:
    """Subscriptions to a simulcast video that forward nothing now (by choice or budget)."""
    paused = 0
    for room in forwarder.rooms.values():
        for participant in room.participants.values():
            for publication in participant.by_track.values():
                for target in publication.targets.values():
                    if target.layered is not None and target.layered.switch.target is None:
                        paused += 1
    return paused


def estimates(forwarder: Forwarder, now: float) -> list[float]:
    """Every subscriber's current estimate (bits per second), for ``/metrics``."""
    out = []
    for room in forwarder.rooms.values():
        for estimate in room.estimates.values():
            value = estimate.value(now)
            if value is not None:
                out.append(value)
    return out
