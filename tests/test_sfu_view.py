"""The control API's ``view`` (the largest height a subscriber wants of a publisher) and the
simulcast figures on ``/metrics``, in-process, with real aiortc publishers."""

from __future__ import annotations

import aiohttp
import pytest

from media.bandwidth import SubscriberEstimate
from media.control import NODE, MediaControlError
from media.forwarding import Source
from tests.test_sfu_control import SECRET, StartSfu, _offer, start_sfu  # noqa: F401 (fixture)


async def test_a_view_is_kept_per_subscriber_and_publisher_and_checked(
    start_sfu: StartSfu,  # noqa: F811
) -> None:
    server, control = await start_sfu()
    await control.create_room("r")
    await control.join("r", "a", await _offer())
    await control.join("r", "b", await _offer())
    await control.set_view("r", "b", "a", "camera", 180)
    await control.set_view("r", "a", "b", "screen", 0)
    views = server.app[NODE].forwarder.rooms["r"].views
    assert views == {("b", "a", Source.CAMERA): 180, ("a", "b", Source.SCREEN): 0}
    await control.set_view("r", "b", "a", "camera", None)  # lifted
    assert ("b", "a", Source.CAMERA) not in views
    for args, status, code in (
        (("r", "b", "nobody", "camera", 180), 404, "participant_not_found"),
        (("r", "nobody", "a", "camera", 180), 404, "participant_not_found"),
        (("gone", "b", "a", "camera", 180), 404, "room_not_found"),
        (("r", "b", "a", "camera", -1), 400, "invalid_request"),
        (("r", "b", "a", "mouth", 10), 400, "invalid_request"),
    ):
        with pytest.raises(MediaControlError) as raised:
            await control.set_view(*args)  # type: ignore[arg-type]
        assert (raised.value.status, raised.value.code) == (status, code), args
    await control.leave("r", "a")
    assert views == {}  # gone with the participant


async def test_metrics_carry_the_simulcast_figures(start_sfu: StartSfu) -> None:  # noqa: F811
    server, control = await start_sfu()
    stats = await control.stats()
    assert stats["layer_switches"] == 0 and stats["probes"] == 0
    assert stats["video_paused"] == 0 and stats["subscriber_estimates_bps"] == []
    node = server.app[NODE]
    await control.create_room("r")
    for name in ("a", "b", "c"):
        await control.join("r", name, await _offer())
    room = node.forwarder.rooms["r"]
    for subscriber, bps in (("a", 300_000), ("b", 2_000_000), ("c", 900_000)):
        room.estimates[subscriber] = SubscriberEstimate()
        room.estimates[subscriber].remb([1], bps, node._loop.time())
    url = str(server.make_url("/metrics"))
    headers = {"Authorization": f"Bearer {SECRET}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        text = await response.text()
    lines = set(text.splitlines())
    assert "callbook_sfu_layer_switches_total 0.0" in lines
    for padding in ("padding_probes", "probe_padding_packets", "probe_padding_bytes"):
        assert f"callbook_sfu_{padding}_total 0.0" in lines  # beside probes (media/probing.py)
    assert "callbook_sfu_video_paused 0.0" in lines
    assert "callbook_sfu_subscribers_estimated 3.0" in lines
    assert 'callbook_sfu_subscriber_estimate_bps{quantile="0"} 300000.0' in lines
    assert 'callbook_sfu_subscriber_estimate_bps{quantile="0.5"} 900000.0' in lines
    assert 'callbook_sfu_subscriber_estimate_bps{quantile="1"} 2e+06' in lines
