// Simulcast publishing (docs/protocol.md 11.15.3): the camera's video goes to the SFU in three
// VP8 layers of 1/4, 1/2 and full resolution, named by RTP stream id and listed lowest first
// (the SFU takes them in the order offered). The SFU forwards each subscriber the layer that
// fits its downlink and the tile size it asks for with ``view`` (view.js). A browser limits the layers
// by resolution and drops the *top* ones (Chromium at 640x480 would send 1/4 and 1/2 only), so
// the layers are chosen from the camera's height: three from 540 lines, the top two from 360,
// else one encoding (no simulcast). Audio and shared screens are sent as one encoding.

// The quarter layer is what a weak downlink gets of every other person at once: lean enough
// that two of them and their audio fit in 300 kbit/s (at 150 kbit/s one of two was paused).
export const LAYERS = Object.freeze([
  Object.freeze({ rid: "q", scaleResolutionDownBy: 4, maxBitrate: 75_000, maxFramerate: 15 }),
  Object.freeze({ rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 }),
]);

let enabled = true;
let forcedLayers = null;

/**
 * Turn simulcast publishing off (or on again) for connections made from now on; ``layers``
 * (1-3) forces that many whatever the camera's size (for a browser told to send them all).
 */
export function setSimulcast(on, { layers = null } = {}) {
  enabled = Boolean(on);
  forcedLayers = layers;
}

/** How many layers a camera track of this height gets (Chromium's own limits). */
export function layerCount(track) {
  if (forcedLayers) return Math.max(1, Math.min(LAYERS.length, forcedLayers));
  const height = track?.getSettings?.().height ?? 0;
  return height >= 540 ? 3 : height >= 360 ? 2 : 1;
}

export function simulcastEnabled() {
  return enabled;
}

/**
 * The ``addTransceiver`` init for one of our camera's tracks: video gets the layers.
 * ``direction``: "sendonly" on a publish-only connection, "sendrecv" on a bundled one.
 */
export function cameraTransceiverInit(track, stream, direction = "sendonly") {
  const init = { direction, streams: stream ? [stream] : [] };
  const count = enabled && track.kind === "video" ? layerCount(track) : 1;
  if (count > 1) init.sendEncodings = LAYERS.slice(LAYERS.length - count).map((layer) => ({ ...layer }));
  return init;
}

// Asking for a size per publisher (``view``) lives in view.js; these stay importable from here.
export { sendView, viewReporter } from "./view.js";
