// Simulcast publishing (docs/protocol.md 11.15.3): the camera's video goes to the SFU in three
// VP8 layers of 1/4, 1/2 and full resolution, named by RTP stream id and listed lowest first
// (the SFU takes them in the order offered). The SFU forwards each subscriber the layer that
// fits its downlink and the tile size it asks for with ``view``. A browser limits the layers
// by resolution and drops the *top* ones (Chromium at 640x480 would send 1/4 and 1/2 only), so
// the layers are chosen from the camera's height: three from 540 lines, the top two from 360,
// else one encoding (no simulcast). Audio and shared screens are sent as one encoding.

export const LAYERS = Object.freeze([
  Object.freeze({ rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
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

/**
 * Ask for at most ``maxHeight`` pixels of ``participant``'s ``source`` (its tile's height;
 * 0 while hidden; null for no limit). ``line``: the call WebSocket (anything with ``send``).
 */
export function sendView(line, callId, participant, maxHeight, source = "camera") {
  const height = maxHeight === null || maxHeight === undefined ? null : Math.max(0, Math.round(maxHeight));
  line.send({ type: "view", call_id: callId, participant, source, max_height: height });
}

/**
 * Keep the SFU told of the height each participant's video is shown at: observes the video
 * elements and sends ``view`` when a tile's height changes by more than a quarter (or it is
 * hidden). Returns ``{watch(participant, element, source), unwatch(participant, source),
 * close()}``.
 */
export function viewReporter(line, callId) {
  const sent = new Map(); // "participant/source" -> height sent
  const watched = new Map(); // element -> {participant, source}
  const report = (participant, source, height) => {
    const key = `${participant}/${source}`;
    const before = sent.get(key);
    const changed =
      before === undefined || (height === 0) !== (before === 0) || Math.abs(height - before) > before / 4;
    if (!changed) return;
    sent.set(key, height);
    sendView(line, callId, participant, height, source);
  };
  const observer =
    typeof ResizeObserver === "function"
      ? new ResizeObserver((entries) => {
          for (const entry of entries) {
            const who = watched.get(entry.target);
            if (who) report(who.participant, who.source, Math.round(entry.contentRect.height * devicePixelRatio));
          }
        })
      : null;
  return {
    watch(participant, element, source = "camera") {
      watched.set(element, { participant, source });
      observer?.observe(element);
    },
    unwatch(participant, source = "camera") {
      for (const [element, who] of watched) {
        if (who.participant === participant && who.source === source) {
          observer?.unobserve(element);
          watched.delete(element);
        }
      }
      sent.delete(`${participant}/${source}`);
    },
    close() {
      observer?.disconnect();
      watched.clear();
    },
  };
}
