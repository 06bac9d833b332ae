"""A device that changes networks mid-call: how long until its media flows again.

In the network lab (tests/netlab.py), Alice's Chromium behind one cone NAT calls Bob's Chromium
behind another (no configuration; peer to peer through the server's STUN). Then Alice's device
moves ``--moves`` times between two home routers (its address on one link removed, the other
link's address and default route taken; new NAT, new public address), waiting for media each
time. Each figure runs from the move to Bob having decoded 30 more of her video frames (the
fake camera sends 30 per second, fewer on a loaded machine).

Needs root. Run from the repository root::

    sudo .venv/bin/python -m bench.netlab_move --moves 6
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import statistics
import tempfile

from playwright.async_api import Page, expect

from tests.netlab import Host, Lab, Link, lab_reason
from tests.netlab_calls import Deployment, start_server
from tests.test_browser import Browsers, add_contact, stats, until_frames
from tests.test_browser import sign_up as sign_up_in_page
from tests.test_netlab_browser import chromium_in

FRAMES = 30
LIMIT_S = 60.0


def _move(a: Host, leave: Link, take: Link) -> None:
    a.sh("ip", "addr", "flush", "dev", leave.down)
    a.sh("ip", "addr", "replace", f"{take.down_address}/24", "dev", take.down)
    a.sh("ip", "route", "replace", "default", "via", take.up_address)


async def _media_back(bob: Page, before: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIMIT_S
    while (await stats(bob)).get("video", 0) <= before + FRAMES:
        if loop.time() > deadline:
            raise TimeoutError(f"no media {LIMIT_S:g} s after the move")
        await asyncio.sleep(0.1)


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


async def _call(alice: Page, bob: Page, deployment: Deployment) -> None:
    await sign_up_in_page(alice, deployment, "alice")  # type: ignore[arg-type]
    await sign_up_in_page(bob, deployment, "bob")  # type: ignore[arg-type]
    await add_contact(alice, "bob")
    await add_contact(bob, "alice")  # contacts: peer to peer
    await alice.fill("#dial-handle", "bob")
    await alice.click("#dial-video")
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "incoming")
    await bob.get_by_role("button", name="Answer with video").click()
    await until_frames(bob)


async def main(moves: int) -> list[float]:
    lab = Lab()
    try:
        with tempfile.TemporaryDirectory(prefix="callbook-move-") as tmp:
            public, a, links, b = _network(lab)
            deployment = await start_server(public, Path(tmp))
            async with (
                chromium_in(a, deployment.url, Path(tmp)) as browser_a,
                chromium_in(b, deployment.url, Path(tmp)) as browser_b,
            ):
                pools = Browsers(browser_a), Browsers(browser_b)
                alice, bob = await pools[0].page(), await pools[1].page()
                await _call(alice, bob, deployment)
                figures = []
                loop = asyncio.get_running_loop()
                for move in range(moves):
                    before = (await stats(bob))["video"]
                    changed = loop.time()
                    _move(a, links[move % 2], links[(move + 1) % 2])
                    await _media_back(bob, before)
                    figures.append(loop.time() - changed)
                    print(f"move {move + 1}: media back after {figures[-1]:.1f} s", flush=True)
                for pool in pools:
                    await pool.close()
                return figures
    finally:
        await lab.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--moves", type=int, default=6, help="moves in the one call (6)")
    args = parser.parse_args()
    reason = lab_reason()
    if reason is not None:
        sys.exit(reason)
    figures = asyncio.run(main(args.moves))
    print(
        f"Chromium: media back after a move: median {statistics.median(figures):.1f} s, "
        f"min {min(figures):.1f} s, max {max(figures):.1f} s ({len(figures)} moves)"
    )


if __name__ == "__main__":
    cli()
