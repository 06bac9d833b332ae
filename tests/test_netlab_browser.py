"""Headless Chromium behind one cone NAT calls an aiortc device behind another, in the network
lab, with nothing configured: peer to peer through the server's built-in STUN.

Chromium runs inside its lab host (``ip netns exec`` around Debian's binary); Playwright drives
it over its pipe from the test's own namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.netlab import Host, Lab
from tests.netlab_calls import Deployment, Person, sign_up, start_server, until
from tests.test_browser import CHROMIUM, FLAGS, Browsers, add_contact, stats, until_frames
from tests.test_browser import sign_up as sign_up_in_page

pytestmark = [
    pytest.mark.netlab,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


@contextlib.asynccontextmanager
async def chromium_in(host: Host, url: str, tmp_path: Path) -> AsyncIterator[Browser]:
    wrapper = tmp_path / f"chromium-in-{host.name}"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {host.namespace} {CHROMIUM} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    # The lab's addresses are not a secure context the way 127.0.0.1 is; WebCrypto and the
    # camera need one. Loopback candidates are left out: the lab has real interfaces.
    flags = [f for f in FLAGS if f != "--allow-loopback-in-peer-connection"]
    flags.append(f"--unsafely-treat-insecure-origin-as-secure={url}")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(wrapper), args=flags)
        try:
            yield browser
        finally:
            await browser.close()


async def test_chromium_behind_a_cone_nat_calls_an_aiortc_device_peer_to_peer(
    netlab: Lab, tmp_path: Path
) -> None:
    inet = netlab.internet()
    public = netlab.host("server")
    netlab.link(inet, public)
    a, _ = netlab.behind_nat(inet, "a", "cone")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    deployment: Deployment = await start_server(public, tmp_path)
    robot = await sign_up(b, deployment.url, "robot", video=True)
    async with chromium_in(a, deployment.url, tmp_path) as browser:
        browsers = Browsers(browser)
        page = await browsers.page()
        await sign_up_in_page(page, deployment, "alice")  # type: ignore[arg-type]  # has .url
        await add_contact(page, "robot")
        await b.run(robot.client.add_contact("alice"))  # mutual contacts: peer to peer
        await b.run(robot.phone.line.open())
        answering = asyncio.ensure_future(b.run(robot.phone.answer(duration_s=None)))
        try:
            await page.fill("#dial-handle", "robot")
            await page.click("#dial-video")
            await expect(page.locator("#screen-call")).to_have_attribute(
                "data-state", "connected", timeout=30_000
            )
            page_stats = await until_frames(page)
            assert page_stats["audio"] > 0
            await page.get_by_role("button", name="End call").click()
            summary = await asyncio.wait_for(answering, 30)
        finally:
            answering.cancel()
            await browsers.close()
            await b.run(robot.phone.close())
            await b.run(robot.client.close())
        assert browsers.errors == []
    assert summary.outcome == "connected", summary.as_event()
    assert summary.media.video_frames_received > 0
    local, remote = robot.event("connected")["path"]
    assert local == "host" and remote in ("srflx", "prflx"), (local, remote)


#: The web client gives a broken call 25 s (RECOVER_WITHIN_MS in call.js) before it hangs up.
RECOVER_S = 30.0


async def test_a_browser_that_moves_to_another_network_mid_call_gets_its_media_back(
    netlab: Lab, tmp_path: Path
) -> None:
    """Alice's device leaves its home router for another one (new address, new NAT) during a
    call with Bob; her browser restarts ICE, and Bob sees her video again. Her WebSocket died
    with the old address without her browser noticing: the call checks it as soon as its media
    path breaks (line.js ``probe``), else the restart offer would go into the dead socket and
    the call be given up before the next keepalive noticed."""
    inet = netlab.internet()
    public = netlab.host("server")
    netlab.link(inet, public)
    a, _ = netlab.behind_nat(inet, "a", "cone")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    mobile = netlab.host("a-mobile", router=True)
    mobile.nat(netlab.link(inet, mobile).down, "cone")
    moved = netlab.link(mobile, a, private=True)  # a second interface, not used yet
    deployment = await start_server(public, tmp_path)
    async with (
        chromium_in(a, deployment.url, tmp_path) as browser_a,
        chromium_in(b, deployment.url, tmp_path) as browser_b,
    ):
        pages = Browsers(browser_a), Browsers(browser_b)
        alice, bob = await pages[0].page(), await pages[1].page()
        try:
            await sign_up_in_page(alice, deployment, "alice")  # type: ignore[arg-type]  # .url
            await sign_up_in_page(bob, deployment, "bob")  # type: ignore[arg-type]
            await add_contact(alice, "bob")
            await add_contact(bob, "alice")
            await alice.fill("#dial-handle", "bob")
            await alice.click("#dial-video")
            await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "incoming")
            await bob.get_by_role("button", name="Answer with video").click()
            await until_frames(bob)
            loop = asyncio.get_running_loop()
            before = (await stats(bob))["video"]
            changed = loop.time()
            a.sh("ip", "addr", "flush", "dev", a.uplink)
            a.sh("ip", "route", "replace", "default", "via", moved.up_address)
            # Frames stop, then come back through the new network.
            while (await stats(bob)).get("video", 0) <= before + 30:
                assert loop.time() < changed + RECOVER_S, f"no media {RECOVER_S:g} s after the move"
                await asyncio.sleep(0.25)
            await expect(alice.locator("#screen-call")).to_have_attribute("data-state", "connected")
        finally:
            for pool in pages:
                await pool.close()


async def test_an_aiortc_device_takes_the_ice_restart_of_a_browser_that_moved(
    netlab: Lab, tmp_path: Path
) -> None:
    """The browser that moved restarts ICE; aiortc cannot restart ICE on a connection (its
    setRemoteDescription raised, and the softphone's call ended), so the softphone answers on
    a new connection in the same call, and the browser's media reaches it again."""
    inet = netlab.internet()
    public = netlab.host("server")
    netlab.link(inet, public)
    a, _ = netlab.behind_nat(inet, "a", "cone")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    mobile = netlab.host("a-mobile", router=True)
    mobile.nat(netlab.link(inet, mobile).down, "cone")
    moved = netlab.link(mobile, a, private=True)
    deployment = await start_server(public, tmp_path)
    robot = await sign_up(b, deployment.url, "robot", video=True)
    async with chromium_in(a, deployment.url, tmp_path) as browser:
        browsers = Browsers(browser)
        page = await browsers.page()
        await b.run(robot.phone.line.open())
        answering = asyncio.ensure_future(b.run(robot.phone.answer(duration_s=None)))
        try:
            await sign_up_in_page(page, deployment, "alice")  # type: ignore[arg-type]  # .url
            await add_contact(page, "robot")
            await b.run(robot.client.add_contact("alice"))  # contacts: peer to peer
            await page.fill("#dial-handle", "robot")
            await page.click("#dial-video")
            await until_frames(page)
            received = robot.phone.received
            assert received is not None
            before = received.video_frames_received
            loop = asyncio.get_running_loop()
            changed = loop.time()
            a.sh("ip", "addr", "flush", "dev", a.uplink)
            a.sh("ip", "route", "replace", "default", "via", moved.up_address)
            while received.video_frames_received <= before + 30:
                assert not answering.done(), answering.result().as_event()
                assert loop.time() < changed + RECOVER_S, f"no media {RECOVER_S:g} s after the move"
                await asyncio.sleep(0.25)
            await page.get_by_role("button", name="End call").click()
            summary = await asyncio.wait_for(answering, 30)
        finally:
            answering.cancel()
            await browsers.close()
            await b.run(robot.phone.close())
            await b.run(robot.client.close())
    assert summary.outcome == "connected" and summary.reason == "hangup", summary.as_event()


async def test_an_aiortc_device_that_moves_mid_call_with_a_browser_gets_its_media_back(
    netlab: Lab, tmp_path: Path
) -> None:
    """The aiortc device is the one that moves (behind another NAT): it resumes its WebSocket
    and, though the callee, offers from a new connection (protocol 11.5.10); the browser sees
    a new session, answers from a new connection of its own, and each gets the other's media
    again."""
    inet = netlab.internet()
    public = netlab.host("server")
    netlab.link(inet, public)
    a, _ = netlab.behind_nat(inet, "a", "cone")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    mobile = netlab.host("b-mobile", router=True)
    mobile.nat(netlab.link(inet, mobile).down, "cone")
    carrier = netlab.link(mobile, b, private=True)
    b.sh("ip", "addr", "flush", "dev", carrier.down)  # one network at a time
    deployment = await start_server(public, tmp_path)
    robot = await sign_up(b, deployment.url, "robot", video=True)
    async with chromium_in(a, deployment.url, tmp_path) as browser:
        browsers = Browsers(browser)
        page = await browsers.page()
        await b.run(robot.phone.line.open())
        answering = asyncio.ensure_future(b.run(robot.phone.answer(duration_s=None)))
        try:
            await sign_up_in_page(page, deployment, "alice")  # type: ignore[arg-type]  # .url
            await add_contact(page, "robot")
            await b.run(robot.client.add_contact("alice"))  # contacts: peer to peer
            await page.fill("#dial-handle", "robot")
            await page.click("#dial-video")
            await until_frames(page)
            received = robot.phone.received
            assert received is not None
            # Media both ways before the move (on a loaded machine the robot decodes later).
            await until(lambda: received.video_frames_received > 0, "the robot's media")
            before, seen = received.video_frames_received, (await stats(page))["video"]
            loop = asyncio.get_running_loop()
            changed = loop.time()
            b.switch(carrier)
            while (
                received.video_frames_received <= before + 30
                or (await stats(page)).get("video", 0) <= seen + 30
            ):
                assert not answering.done(), (answering.result().as_event(), robot.events)
                assert loop.time() < changed + RECOVER_S, f"no media {RECOVER_S:g} s after the move"
                await asyncio.sleep(0.25)
            await expect(page.locator("#screen-call")).to_have_attribute("data-state", "connected")
            await page.get_by_role("button", name="End call").click()
            summary = await asyncio.wait_for(answering, 30)
        finally:
            answering.cancel()
            await browsers.close()
            await b.run(robot.phone.close())
            await b.run(robot.client.close())
        assert browsers.errors == []
    assert summary.outcome == "connected" and summary.reason == "hangup", summary.as_event()
    assert robot.phone.line.losses  # its WebSocket was resumed
    assert next(e["why"] for e in robot.events if e["event"] == "reconnecting") == "network"


async def test_chromium_behind_a_symmetric_nat_falls_back_to_the_sfu_with_an_aiortc_device(
    netlab: Lab, tmp_path: Path
) -> None:
    """Contacts (peer to peer by policy), Chromium behind a symmetric NAT, the aiortc device
    behind a port-restricted one, no TURN: no direct pair works, so the call moves to the SFU
    (protocol 11.9.1) and both get the other's media through it, end-to-end encrypted."""
    inet = netlab.internet()
    public = netlab.host("server")
    netlab.link(inet, public)
    a, _ = netlab.behind_nat(inet, "a", "symmetric")
    b, _ = netlab.behind_nat(inet, "b", "cone")
    deployment = await start_server(public, tmp_path)
    robot = await sign_up(b, deployment.url, "robot", video=True)
    async with chromium_in(a, deployment.url, tmp_path) as browser:
        browsers = Browsers(browser)
        page = await browsers.page()
        await b.run(robot.phone.line.open())
        answering = asyncio.ensure_future(b.run(robot.phone.answer(duration_s=None)))
        try:
            await sign_up_in_page(page, deployment, "alice")  # type: ignore[arg-type]  # .url
            await add_contact(page, "robot")
            await b.run(robot.client.add_contact("alice"))  # contacts: peer to peer
            await page.fill("#dial-handle", "robot")
            await page.click("#dial-video")
            await expect(page.locator("#screen-call")).to_have_attribute(
                "data-state", "connected", timeout=30_000
            )
            await page.wait_for_function(SFU_FRAMES_JS, polling=250, timeout=20_000)
            # And the other way: on a loaded machine the robot may decode later than the page.
            await until(lambda: _through_sfu_received(robot) > 0, "media through the SFU")
            await page.get_by_role("button", name="End call").click()
            summary = await asyncio.wait_for(answering, 30)
        finally:
            answering.cancel()
            await browsers.close()
            await b.run(robot.phone.close())
            await b.run(robot.client.close())
        assert browsers.errors == []
    assert (robot.event("accepted")["sfu"], robot.event("relayed")["sfu"]) == (False, True)
    assert summary.outcome == "connected" and summary.participants_received == 1
    assert summary.media.video_frames_received > 0


def _through_sfu_received(person: Person) -> int:
    """Participants whose audio and video the person's call through the SFU has decoded."""
    session = person.phone.session
    return 0 if session is None else session.participants_received(video=True)


#: Whether the page's call through the SFU decodes the other's video (its received tracks).
SFU_FRAMES_JS = """async () => {
  const sfu = window.callbook.call?.sfu;
  let frames = 0;
  for (const { receiver } of sfu?.receiving() ?? []) {
    (await receiver.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
    });
  }
  return frames > 0;
}"""
