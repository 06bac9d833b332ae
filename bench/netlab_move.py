"""A device that changes networks mid-call: how long until its media flows again, per client.

In the network lab (tests/netlab.py), Alice behind one cone NAT calls Bob behind another (no
configuration; peer to peer through the server's STUN), both with the same kind of client:

- ``chromium``: the web client in headless Chromium (ICE restart);
- ``aiortc``: the SDK's softphone (aiortc has no ICE restart: the moved device resumes its
  WebSocket and offers from a new peer connection in the same call).

Then Alice's device moves ``--moves`` times between two home routers (its address on one link
removed, the other link's address and default route taken; new NAT, new public address),
waiting for media each time. Each figure runs from the move to Bob having decoded a second's
worth more of her video frames (Chromium's fake camera sends 30 a second, the softphone 15).

Needs root. Run from the repository root::

    sudo .venv/bin/python -m bench.netlab_move --moves 8     # --client aiortc (repeatable)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Awaitable, Callable

from playwright.async_api import Page, expect

from tests.netlab import Host, Lab, Link, lab_reason
from tests.netlab_calls import Deployment, Person, befriend, call, signed_up, start_server
from tests.test_browser import Browsers, add_contact, stats, until_frames
from tests.test_browser import sign_up as sign_up_in_page
from tests.test_netlab_browser import chromium_in

CLIENTS = ("chromium", "aiortc")
#: A second's worth of video frames, per client.
FRAMES = {"chromium": 30, "aiortc": 15}
LIMIT_S = 60.0


async def _media_back(frames: Callable[[], Awaitable[int]], before: int, wanted: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIMIT_S
    while await frames() <= before + wanted:
        if loop.time() > deadline:
            raise TimeoutError(f"no media {LIMIT_S:g} s after the move")
        await asyncio.sleep(0.05)


def _network(lab: Lab) -> tuple[Host, Host, list[Link], Host]:
    """(the server's host, Alice's, her two links (home, mobile), Bob's)."""
    inet = lab.internet()
    public = lab.host("server")
    lab.link(inet, public)
    home = lab.host("a-nat", router=True)
    home.nat(lab.link(inet, home).down, "cone")
    a = lab.host("a")
    links = [lab.link(home, a, private=True)]
    mobile = lab.host("a-mobile", router=True)
    mobile.nat(lab.link(inet, mobile).down, "cone")
    links.append(lab.link(mobile, a, private=True))
    a.sh("ip", "addr", "flush", "dev", links[1].down)  # one network at a time
    b, _ = lab.behind_nat(inet, "b", "cone")
    return public, a, links, b


async def _moves(
    a: Host, links: list[Link], moves: int, frames: Callable[[], Awaitable[int]], wanted: int
) -> list[float]:
    figures = []
    loop = asyncio.get_running_loop()
    for move in range(moves):
        before = await frames()
        changed = loop.time()
        a.switch(links[(move + 1) % 2])
        await _media_back(frames, before, wanted)
        figures.append(loop.time() - changed)
        print(f"move {move + 1}: media back after {figures[-1]:.1f} s", flush=True)
    return figures


async def _call_in_pages(alice: Page, bob: Page, deployment: Deployment) -> None:
    await sign_up_in_page(alice, deployment, "alice")  # type: ignore[arg-type]
    await sign_up_in_page(bob, deployment, "bob")  # type: ignore[arg-type]
    await add_contact(alice, "bob")
    await add_contact(bob, "alice")  # contacts: peer to peer
    await alice.fill("#dial-handle", "bob")
    await alice.click("#dial-video")
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "incoming")
    await bob.get_by_role("button", name="Answer with video").click()
    await until_frames(bob)


async def _chromium(moves: int, tmp: Path, lab: Lab) -> list[float]:
    public, a, links, b = _network(lab)
    deployment = await start_server(public, tmp)
    async with (
        chromium_in(a, deployment.url, tmp) as browser_a,
        chromium_in(b, deployment.url, tmp) as browser_b,
    ):
        pools = Browsers(browser_a), Browsers(browser_b)
        try:
            alice, bob = await pools[0].page(), await pools[1].page()
            await _call_in_pages(alice, bob, deployment)

            async def frames() -> int:
                return int((await stats(bob)).get("video", 0))

            return await _moves(a, links, moves, frames, FRAMES["chromium"])
        finally:
            for pool in pools:
                await pool.close()


async def _aiortc(moves: int, tmp: Path, lab: Lab) -> list[float]:
    public, a, links, b = _network(lab)
    deployment = await start_server(public, tmp)
    async with signed_up(deployment, (a, "alice"), (b, "bob"), video=True) as people:
        alice, bob = people
        await befriend(alice, bob)  # contacts: peer to peer
        calling = asyncio.ensure_future(call(alice, bob, duration_s=None))
        try:

            async def frames() -> int:
                return _video(bob)

            await _media_back(frames, 0, FRAMES["aiortc"])
            figures = await _moves(a, links, moves, frames, FRAMES["aiortc"])
            await a.run(alice.phone.hang_up())
            summaries = await asyncio.wait_for(calling, 30)
        finally:
            calling.cancel()
    for summary in summaries:
        if summary.reason != "hangup":
            raise RuntimeError(f"the call did not go on: {summary.as_event()}")
    return figures


def _video(person: Person) -> int:
    received = person.phone.received
    return 0 if received is None else received.video_frames_received


async def main(client: str, moves: int) -> list[float]:
    lab = Lab()
    try:
        with tempfile.TemporaryDirectory(prefix="callbook-move-") as tmp:
            run = _chromium if client == "chromium" else _aiortc
            return await run(moves, Path(tmp), lab)
    finally:
        await lab.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--moves", type=int, default=8, help="moves in the one call (8)")
    parser.add_argument("--client", choices=CLIENTS, action="append",
                        help="the client kind (repeatable; default: all)")  # fmt: skip
    args = parser.parse_args()
    reason = lab_reason()
    if reason is not None:
        sys.exit(reason)
    summary = []
    for client in args.client or CLIENTS:
        print(f"{client}:", flush=True)
        figures = asyncio.run(main(client, args.moves))
        summary.append(
            f"{client}: media back after a move: median {statistics.median(figures):.1f} s, "
            f"min {min(figures):.1f} s, max {max(figures):.1f} s ({len(figures)} moves)"
        )
    print("\n".join(summary))


if __name__ == "__main__":
    cli()
