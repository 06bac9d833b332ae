"""The web SDK's view reporting (signaling/web/sdk/view.js, docs/protocol.md 11.15.3), run in
Node: the pure choice of what height to ask for and when it is worth a message, and the reporter
fed by a document whose tab hides and shows and tiles whose height changes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

VIEW_JS = Path(__file__).resolve().parent.parent / "signaling" / "web" / "sdk" / "view.js"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs node")


def run_module(body: str) -> Any:
    """Run ``body`` as an ES module with view.js imported as ``view``; returns what it prints."""
    script = f'import * as view from "{VIEW_JS.as_uri()}";\n{body}'
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


TILE_CASES: list[tuple[dict[str, Any], int]] = [
    ({"cssHeight": 300}, 300),
    ({"cssHeight": 300, "pixelRatio": 2}, 600),  # device pixels: a phone's sharp screen
    ({"cssHeight": 240.4}, 240),
    ({"cssHeight": 300, "visible": False}, 0),  # a hidden tab
    ({"cssHeight": 300, "onScreen": False}, 0),  # a tile scrolled away
    ({"cssHeight": 0}, 0),
    ({"cssHeight": -5}, 0),
    ({"cssHeight": 10_000}, 8192),  # the protocol's largest
    ({"cssHeight": "nonsense"}, 0),
]


def test_the_height_asked_for_a_tile() -> None:
    tiles = json.dumps([tile for tile, _ in TILE_CASES])
    got = run_module(f"console.log(JSON.stringify({tiles}.map((t) => view.wantedHeight(t))));")
    assert list(zip(TILE_CASES, got, strict=True)) == [(case, case[1]) for case in TILE_CASES]


WORTH_CASES: list[tuple[int | str | None, int | None, bool]] = [
    ("never", 300, True),  # the first report
    ("never", 0, True),
    (300, 300, False),
    (300, 0, True),  # hidden
    (0, 300, True),  # shown again
    (300, None, True),  # lifted
    (None, 300, True),
    (None, None, False),
    (250, 260, False),  # a few pixels, no layer crossed
    (235, 245, True),  # across 240, a half layer of a 480-line camera
    (479, 480, True),  # across 480
    (500, 520, False),  # within a quarter, no common layer height between
    (500, 620, True),  # across 540, the full layer of a 540-line camera
    (1200, 1600, True),  # by more than a quarter
    (1600, 1300, False),  # less than a quarter of the smaller
]


def test_when_a_new_height_is_worth_a_message() -> None:
    pairs = ", ".join(
        f"[{'undefined' if before == 'never' else json.dumps(before)}, {json.dumps(now)}]"
        for before, now, _ in WORTH_CASES
    )
    worth = f"[{pairs}].map(([before, now]) => view.worthSending(before, now))"
    got = run_module(f"console.log(JSON.stringify({worth}));")
    assert list(zip(WORTH_CASES, got, strict=True)) == [(case, case[2]) for case in WORTH_CASES]


REPORTER_JS = """
const sent = [];
const line = {send: (message) => { sent.push(message); return true; }};
const doc = new EventTarget();
doc.visibilityState = "visible";
const settle = () => new Promise((resolve) => setTimeout(resolve, 30));
const reporter = view.viewReporter(line, "c1", {delayMs: 5, doc, win: {devicePixelRatio: 1}});
const alice = {clientHeight: 500};
const shared = {clientHeight: 700};
reporter.watch("alice", alice);
reporter.watch("bob", shared, "screen");
reporter.watch("bob", shared, "camera", () => 100);  // a camera in a screen tile's corner
await settle();
const steps = {first: sent.splice(0)};
alice.clientHeight = 490;  reporter.update(); await settle();
steps.small = sent.splice(0);
alice.clientHeight = 200;  reporter.update(); await settle();
steps.shrunk = sent.splice(0);
doc.visibilityState = "hidden"; doc.dispatchEvent(new Event("visibilitychange"));
steps.hidden = sent.splice(0);  // at once: a hidden tab's timers are slowed down
doc.visibilityState = "visible"; doc.dispatchEvent(new Event("visibilitychange"));
steps.shown = sent.splice(0);
reporter.unwatch("bob", "screen");
reporter.unwatch("alice", "camera", {lift: true});
steps.unwatched = sent.splice(0);
reporter.close();
doc.visibilityState = "hidden"; doc.dispatchEvent(new Event("visibilitychange"));
steps.closed = sent.splice(0);
console.log(JSON.stringify(steps));
"""


def _heights(messages: list[dict[str, Any]]) -> list[tuple[str, str, int | None]]:
    for message in messages:
        assert message["type"] == "view" and message["call_id"] == "c1", message
    return [(m["participant"], m["source"], m["max_height"]) for m in messages]


def test_the_reporter_sends_what_changed_and_hides_with_the_tab() -> None:
    steps = run_module(REPORTER_JS)
    assert sorted(_heights(steps["first"])) == [
        ("alice", "camera", 500),
        ("bob", "camera", 100),
        ("bob", "screen", 700),
    ]
    assert steps["small"] == []  # 10 pixels less: the same layer
    assert _heights(steps["shrunk"]) == [("alice", "camera", 200)]
    assert sorted(_heights(steps["hidden"])) == [
        ("alice", "camera", 0),
        ("bob", "camera", 0),
        ("bob", "screen", 0),
    ]
    assert sorted(_heights(steps["shown"])) == [
        ("alice", "camera", 200),
        ("bob", "camera", 100),
        ("bob", "screen", 700),
    ]
    # A screen that stopped is forgotten without a word; a lifted view says null.
    assert _heights(steps["unwatched"]) == [("alice", "camera", None)]
    assert steps["closed"] == []
