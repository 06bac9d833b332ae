"""One connection per participant in the web client (issue 15, docs/protocol.md 11.15): a
Chromium participant of a four-person group call sends its own media and receives everyone
else's audio and video over the one RTCPeerConnection it publishes on, renegotiated by the SFU
as people join and leave (``renegotiate`` / ``renegotiate_answer``); and the SDK's old way, one
receiving connection per sender (``new Callbook({bundle: false})``), still works.

The page counts every RTCPeerConnection it ever makes (an init script wraps the constructor), so
"one connection" is what the browser did, not what the SDK says it did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from signaling.protocol import messages as m
from tests.conftest import Server
from tests.test_browser import CHROMIUM, Browsers, screenshot, sign_up
from tests.test_browser import browsers as _browsers  # noqa: F401 (the ``browsers`` fixture)
from tests.test_browser_group import (
    RecordingSession,
    bot,
    holds,
    until,
    until_decoding,
)
from tests.test_browser_group import sessions as _sessions  # noqa: F401 (the ``sessions`` fixture)
from tests.test_sdk_js import SIGN_UP_JS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

# Every RTCPeerConnection the page makes, kept in window.__peerConnections.
COUNT_PEER_CONNECTIONS = """(() => {
  const Native = window.RTCPeerConnection;
  const made = [];
  window.__peerConnections = made;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      made.push(this);
    }
  };
})();"""

# The page's group call as the browser sees it: connections made and open, the transports and
# inbound RTP streams of the one that publishes, and what the SDK maps its mids to.
CONNECTION_JS = """async () => {
  const group = window.callbook.group;
  const sfu = group.sfu;
  const pc = sfu.uplink;
  const open = window.__peerConnections.filter((c) => c.connectionState !== "closed");
  const out = {made: window.__peerConnections.length, open: open.length,
               openIsUplink: open.length === 1 && open[0] === pc, mode: sfu.mode,
               revision: sfu.bundled.revision, transports: 0, inbound: {}, receiving: []};
  (await pc.getStats()).forEach((s) => {
    if (s.type === "transport") out.transports += 1;
    if (s.type === "inbound-rtp") {
      out.inbound[s.mid] = {kind: s.kind, packets: s.packetsReceived || 0,
                            frames: s.framesDecoded || 0};
    }
  });
  for (const r of sfu.receiving()) {
    out.receiving.push({participant: r.participant, source: r.source, kind: r.kind,
                        mid: r.mid, onUplink: r.pc === pc,
                        live: r.receiver.track.readyState === "live"});
  }
  return out;
}"""


# Hand the page's group call its last ``renegotiate`` again, as the server does after a resume;
# window.__repeat records the answers sent, the errors received and the call's problems.
REPEAT_OFFER_JS = """() => {
  const group = window.callbook.group;
  const offer = group.sfu.bundled.lastOffer;
  const probe = {revision: offer.revision, answered: group.sfu.bundled.answer, answers: [],
                 errors: [], problems: []};
  window.__repeat = probe;
  const send = group.line.send.bind(group.line);
  group.line.send = (message) => {
    if (message.type === "renegotiate_answer") probe.answers.push(message);
    return send(message);
  };
  group.line.addEventListener("message", (event) => {
    if (event.detail.type === "error") probe.errors.push(event.detail.code);
  });
  group.addEventListener("problem", (event) => probe.problems.push(String(event.detail.reason)));
  group.receive(offer);
}"""


@pytest.fixture
def browsers(_browsers: Browsers) -> Browsers:  # noqa: F811 (the imported fixture)
    return _browsers


@pytest.fixture
def sessions(_sessions: list[RecordingSession]) -> list[RecordingSession]:  # noqa: F811
    return _sessions


async def connection(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(CONNECTION_JS)
    return result


def check_one_connection(seen: dict[str, Any], senders: set[str]) -> None:
    """Everything ``senders`` send arrives over the page's one connection, and flows."""
    assert seen["mode"] == "bundle", seen
    assert seen["made"] == 1 and seen["open"] == 1 and seen["openIsUplink"], seen
    assert seen["transports"] == 1, seen  # one ICE/DTLS transport for it all
    received = seen["receiving"]
    assert all(r["onUplink"] and r["live"] and r["source"] == "camera" for r in received), seen
    pairs = sorted((r["participant"], r["kind"]) for r in received)
    assert pairs == sorted((p, k) for p in senders for k in ("audio", "video")), seen
    for r in received:
        flowing = seen["inbound"].get(r["mid"], {})
        assert flowing.get("kind") == r["kind"], (r, seen["inbound"])
        assert flowing["packets"] > 0, (r, seen["inbound"])
        if r["kind"] == "video":
            assert flowing["frames"] > 0, (r, seen["inbound"])


async def group_with_bob_and_carol(
    page: Page, what: str, within: float, context: Callable[[], object] = lambda: ""
) -> dict[str, Any]:
    """Start a video group call with bob and carol from the SDK test page and wait until both
    are decoded, audio and video; what SEPARATE_JS then sees (``context`` adds to a failure)."""
    await page.evaluate(
        "() => { window.sdkTest.call = window.sdkTest.cb.group(['bob', 'carol'],"
        " {media: 'video'}); }"
    )
    last: dict[str, Any] = {}

    async def decoding() -> dict[str, Any] | None:
        nonlocal last
        last = await page.evaluate(SEPARATE_JS)
        good = [p for p in last["participants"].values() if p["video"] and p["audio"]]
        return last if len(good) == 2 else None

    try:
        return await until(decoding, what, within=within)  # type: ignore[no-any-return]
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last}; {context()}") from None


async def test_a_chromium_participant_of_four_receives_everyone_on_one_connection(
    server: Server, browsers: Browsers, sessions: list[RecordingSession]
) -> None:
    page = await browsers.page()
    await page.add_init_script(COUNT_PEER_CONNECTIONS)
    await sign_up(page, server, "alice", "Alice Liddell")
    bots = [
        await bot(server, "bob", "Bob Builder"),
        await bot(server, "carol", "Carol Danvers"),
        await bot(server, "dave", "Dave Bowman"),
    ]
    bob, carol, dave = bots
    answering = [asyncio.create_task(b.answer(120.0)) for b in bots]
    try:
        # Alice hosts Bob and Carol, then rings Dave into the running call: every change comes
        # to her as a new offer on the connection she already has.
        await page.get_by_role("button", name="Group call").click()
        await page.fill("#group-handles", "bob carol")
        await page.locator("#form-group").get_by_role("radio", name="Video", exact=True).check()
        await page.click("#group-start")
        tiles = page.locator("#group-grid .tile")
        await expect(tiles).to_have_count(3, timeout=30_000)
        await until_decoding(page, 2)
        first = await connection(page)
        await page.evaluate("() => window.callbook.group.add(['dave'])")
        await expect(tiles).to_have_count(4, timeout=30_000)
        await until_decoding(page, 3)

        me = await page.evaluate("() => window.callbook.group.me")
        others = {
            p["participant"]
            for p in await page.evaluate("() => window.callbook.group.participants")
            if p["participant"] != me
        }
        assert len(others) == 3
        seen = await connection(page)
        check_one_connection(seen, others)
        assert seen["revision"] > first["revision"] >= 1, (first, seen)
        await expect(page.locator('#group-grid .tile[data-video="on"]')).to_have_count(4)
        await expect(page.locator("#group-e2ee")).to_have_text("End-to-end encrypted")
        e2ee = await page.evaluate("() => window.callbook.group.e2ee.stats()")
        assert e2ee["decrypted"] > 0 and e2ee["auth_failed"] == e2ee["unrouted"] == 0, e2ee

        # The bots decode Alice too (each receives the three others).
        def decoding_alice(s: RecordingSession) -> bool:
            return me in s.received and s.received[me].video_frames_received > 0

        await holds(
            lambda: len(sessions) == 3 and all(decoding_alice(s) for s in sessions),
            "the bots decoding Alice",
            within=30.0,
        )
        await page.wait_for_function(  # every tile's video has a picture for the screenshot
            """() => [...document.querySelectorAll("#group-grid video.tile-video")]
                 .every((v) => v.readyState >= 2 && v.videoWidth > 0)""",
            timeout=20_000,
        )
        await screenshot(page, "group-call-one-connection.png")

        # The server repeats an offer after a resume (11.15.2): one already answered gets the
        # same answer again, the server's ``stale_offer`` for it is no problem, media goes on.
        await page.evaluate(REPEAT_OFFER_JS)

        async def repeated() -> dict[str, Any] | None:
            probe: dict[str, Any] = await page.evaluate("() => window.__repeat")
            return probe if probe["errors"] else None

        probe = await until(repeated, "the server's stale_offer", within=20.0)
        assert [a["revision"] for a in probe["answers"]] == [probe["revision"]], probe
        assert probe["answers"][0]["sdp"] == probe["answered"], probe
        assert probe["errors"] == ["stale_offer"] and probe["problems"] == [], probe
        await until_decoding(page, 3)
        assert (await connection(page))["made"] == 1

        # Dave hangs up: his tile and tracks go, the connection stays the one it was.
        call_id = await page.evaluate("() => window.callbook.group.callId")
        dave_id = next(
            p["participant"]
            for p in await page.evaluate("() => window.callbook.group.participants")
            if p["person"]["handle"] == "dave"
        )
        await dave.line.send(m.Hangup(call_id=call_id))
        await expect(tiles).to_have_count(3, timeout=30_000)

        async def without_dave() -> dict[str, Any] | None:
            now = await connection(page)
            gone = all(r["participant"] != dave_id for r in now["receiving"])
            return now if gone and now["revision"] > seen["revision"] else None

        after = await until(without_dave, "Dave's tracks gone after a new offer", within=30.0)
        assert after["made"] == 1 and after["open"] == 1 and after["openIsUplink"], after
        # Bob and Carol keep flowing on it.
        before = {r["mid"]: after["inbound"][r["mid"]]["packets"] for r in after["receiving"]}
        assert len(before) == 4, after

        async def still_flowing() -> bool:
            now = await connection(page)
            return all(now["inbound"][mid]["packets"] > n for mid, n in before.items())

        await until(still_flowing, "Bob's and Carol's media after Dave left", within=20.0)
        await page.get_by_role("button", name="Leave group call").click()
        await expect(page.locator("#screen-group")).to_be_hidden()
    finally:
        for task in answering:
            task.cancel()
        for b in (bob, carol, dave):
            await b.close()


# Without bundle: the SDK's received tracks per connection, and what they decoded.
SEPARATE_JS = """async () => {
  const sfu = window.sdkTest.call.sfu;
  if (!sfu) return {participants: {}};
  const out = {mode: sfu.mode, connections: sfu.connections().length,
               downlinks: sfu.downlinks.size, participants: {}};
  for (const r of sfu.receiving()) {
    const entry = out.participants[r.participant] ?? {video: 0, audio: 0, onUplink: false};
    entry.onUplink ||= r.pc === sfu.uplink;
    (await r.receiver.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") entry.video += s.framesDecoded || 0;
      if (s.type === "inbound-rtp" && s.kind === "audio") entry.audio += s.packetsReceived || 0;
    });
    out.participants[r.participant] = entry;
  }
  return out;
}"""


async def test_the_sdk_without_bundle_receives_each_sender_on_its_own_connection(
    server: Server, browsers: Browsers
) -> None:
    page = await browsers.page()
    await page.goto(server.url + "/")
    old_way = SIGN_UP_JS.replace("new sdk.Callbook()", "new sdk.Callbook({ bundle: false })")
    assert old_way != SIGN_UP_JS
    await page.evaluate(old_way, "oldway")
    bots = [await bot(server, "bob", "Bob Builder"), await bot(server, "carol", "Carol Danvers")]
    answering = [asyncio.create_task(b.answer(120.0)) for b in bots]
    try:
        seen = await group_with_bob_and_carol(page, "both bots decoded", 30.0)
        assert seen["mode"] == "separate", seen
        assert seen["downlinks"] == 2 and seen["connections"] == 3, seen
        assert not any(p["onUplink"] for p in seen["participants"].values()), seen
        await page.evaluate("() => window.sdkTest.call.hangup()")
    finally:
        for task in answering:
            task.cancel()
        for b in bots:
            await b.close()


# bundle.js's pure planner: (what each mid carried, the server's new list) → [drop, take].
PLAN_JS = """async (cases) => {
  const { planStreams } = await import("/static/sdk/bundle.js");
  return cases.map(([current, streams]) => {
    const { drop, take } = planStreams(new Map(Object.entries(current)), streams);
    return [drop, take.map((e) => [e.mid, e.participant, e.source])];
  });
}"""

A0 = {"participant": "A", "source": "camera", "kind": "audio"}
A1 = {"participant": "A", "source": "camera", "kind": "video"}


# (what each mid carried, the server's new list) → (mids dropped, [mid, participant, source] taken)
PLANS: dict[str, tuple[dict[str, Any], list[dict[str, Any]], list[str], list[list[str]]]] = {
    "nothing": ({}, [], [], []),
    "new": ({}, [{"mid": "2", "participant": "A", "kind": "audio"}], [], [["2", "A", "camera"]]),
    "same": ({"2": A0}, [{"mid": "2", "participant": "A", "source": "camera"}], [], []),
    "gone": ({"2": A0, "3": A1}, [{"mid": "3", "participant": "A"}], ["2"], []),
    "recycled": ({"2": A0}, [{"mid": "2", "participant": "B"}], ["2"], [["2", "B", "camera"]]),
    "now a screen": ({"3": A1}, [{"mid": "3", "participant": "A", "source": "screen"}], ["3"],
                     [["3", "A", "screen"]]),
    "all gone": ({"2": A0}, [], ["2"], []),
    "no mid": ({}, [{"participant": "A"}, {"mid": "4", "participant": "C", "source": "screen"}],
               [], [["4", "C", "screen"]]),
}  # fmt: skip


async def test_the_mids_plan_follows_the_servers_list(server: Server, browsers: Browsers) -> None:
    page = await browsers.page()
    await page.goto(server.url + "/")
    cases = [[current, streams] for current, streams, _, _ in PLANS.values()]
    got = dict(zip(PLANS, await page.evaluate(PLAN_JS, cases), strict=True))
    assert got == {name: [drop, take] for name, (_, _, drop, take) in PLANS.items()}
