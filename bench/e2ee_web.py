"""The browser's cost of end-to-end encryption per frame: SFrame (signaling/web/sframe.js) on
WebCrypto in a module worker of headless Chromium, as the call's E2EE worker runs it.

For each kind of frame (an Opus packet, a VP8 delta frame, a VP8 keyframe) the worker encrypts
N frames one after another, then decrypts them, timing each whole run with performance.now()
(whose resolution in a page that is not cross-origin isolated is too coarse for one frame):
a run's figure is its time divided by N, and the one printed is the median of R runs (the
machine is shared: one run can land on a busy moment). The worker does exactly what
e2ee-worker.js does per frame: encryptFrame / splitFrame + decryptFrame, each frame awaited
before the next.

Run from the repository root::

    .venv/bin/python -m bench.e2ee_web                 # 2000 frames of each kind, 5 runs
    .venv/bin/python -m bench.e2ee_web --frames 5000 --runs 9
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

from signaling import pages

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
KINDS = [
    ("Opus frame", "audio", 120, 0x78),
    ("VP8 delta frame", "video", 4_000, 0x31),
    ("VP8 keyframe", "video", 30_000, 0x50),
]

# A module worker made from a blob: it imports the client's own module from the page server.
WORKER = """
import * as sframe from "ORIGIN/static/sframe.js";
const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
self.onmessage = async ({data: {kinds, frames, runs}}) => {
  const runsOf = [];
  for (let run = 0; run < runs; run += 1) runsOf.push(await measure(kinds, frames));
  self.postMessage(runsOf[0].map((row, i) => ({
    ...row,
    encrypt_us: median(runsOf.map((r) => r[i].encrypt_us)),
    decrypt_us: median(runsOf.map((r) => r[i].decrypt_us)),
  })));
};
async function measure(kinds, frames) {
  const keys = await sframe.deriveKey(crypto.getRandomValues(new Uint8Array(16)), 1);
  let ctr = 0;
  const out = [];
  for (const [name, kind, size, first] of kinds) {
    const frame = crypto.getRandomValues(new Uint8Array(size));
    frame[0] = first;
    for (let i = 0; i < 500; i += 1) await sframe.encryptFrame(keys, ctr++, kind, frame); // warm-up
    const encrypted = [];
    let started = performance.now();
    for (let i = 0; i < frames; i += 1) {
      encrypted.push(await sframe.encryptFrame(keys, ctr++, kind, frame));
    }
    const encryptMs = performance.now() - started;
    started = performance.now();
    for (const data of encrypted) {
      await sframe.decryptFrame(keys, sframe.splitFrame(kind, data));
    }
    const decryptMs = performance.now() - started;
    out.push({name, size, encrypt_us: (encryptMs * 1000) / frames,
              decrypt_us: (decryptMs * 1000) / frames});
  }
  return out;
}
"""

RUN = """async ({code, kinds, frames, runs}) => {
  const url = URL.createObjectURL(new Blob([code], {type: "text/javascript"}));
  const worker = new Worker(url, {type: "module"});
  const result = await new Promise((resolve, reject) => {
    worker.onmessage = (event) => resolve(event.data);
    worker.onerror = (event) => reject(new Error(event.message));
    worker.postMessage({kinds, frames, runs});
  });
  worker.terminate();
  return result;
}"""


async def measure(frames: int, runs: int) -> list[dict[str, Any]]:
    app = web.Application()
    pages.install(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        origin = str(server.make_url("")).rstrip("/")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = await browser.new_page()
                await page.goto(origin + "/static/icon.svg")
                code = WORKER.replace("ORIGIN", origin)
                args = {"code": code, "kinds": KINDS, "frames": frames, "runs": runs}
                result: list[dict[str, Any]] = await page.evaluate(RUN, args)
                return result
            finally:
                await browser.close()
    finally:
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames of each kind")
    parser.add_argument("--runs", type=int, default=5, help="runs; the median is printed")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    options = parser.parse_args()
    rows = asyncio.run(measure(options.frames, options.runs))
    if options.json:
        print(json.dumps(rows))
        return
    print(f"{'frame':<18}{'bytes':>8}{'encrypt µs':>13}{'decrypt µs':>13}")
    for row in rows:
        print(
            f"{row['name']:<18}{row['size']:>8}{row['encrypt_us']:>13.1f}{row['decrypt_us']:>13.1f}"
        )


if __name__ == "__main__":
    main()
