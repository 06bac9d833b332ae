// The group view tells the SFU how large it shows each participant's video (sdk/view.js): the
// tile's height for their camera (or the small corner it gets beside their shared screen) and
// for their screen, 0 while the tab is hidden or the tile is off screen. Only videos we receive
// are reported: the SFU knows no other.

import { viewReporter } from "./sdk/view.js";

let reporter = null;
let reporting = null; // the GroupCall the reporter speaks for

/** The CSS height a tile shows its camera at: all of it, or its corner beside a screen. */
function cameraHeight(tile) {
  if (!tile.classList.contains("is-screen")) return tile.clientHeight;
  return tile.querySelector("video.tile-video")?.clientHeight ?? 0;
}

/** After each render: watch the tiles of what ``call`` receives (``tiles``: participant → li). */
export function reportTiles(call, tiles) {
  if (call.state !== "joined" || !call.callId) return;
  if (reporting !== call) {
    stopReporting();
    reporter = viewReporter(call.line, call.callId);
    reporting = call;
  }
  for (const [id, tile] of tiles) {
    if (tile.dataset.self === "yes") continue;
    if (call.streams.has(id)) reporter.watch(id, tile, "camera", cameraHeight);
    else reporter.unwatch(id, "camera");
    if (call.screens.has(id)) reporter.watch(id, tile, "screen");
    else reporter.unwatch(id, "screen");
  }
  reporter.update(); // a tile's layout may have changed without a resize (a screen came or went)
}

/** A tile went away (its participant left): the SFU forgets their view by itself. */
export function forgetTile(id) {
  reporter?.unwatch(id, "camera");
  reporter?.unwatch(id, "screen");
}

export function stopReporting() {
  reporter?.close();
  reporter = null;
  reporting = null;
}
