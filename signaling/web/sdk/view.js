// The picture we want of each participant (docs/protocol.md 11.15.3, ``view``): the SFU forwards
// a simulcast publisher in the highest layer no taller than the height we ask for, so a small
// tile gets a small layer even with bandwidth to spare, and a hidden tab or a tile scrolled off
// screen (height 0) gets no video at all while its audio goes on.
//
// The height asked for is the height of the *tile* in device pixels, never the <video> element's
// own size: a video element sized by what it receives would shrink with the layer it is sent,
// and ask for a smaller one again. The pure part (what to ask for, whether it changed enough to
// be worth a message) is separate from the observers that feed it.

/** Heights a layer commonly has: 1/4, 1/2 and all of 360-, 480-, 540-, 720- and 1080-line
 * cameras (simulcast.js). Crossing one may change the layer the SFU picks. */
export const LAYER_HEIGHTS = Object.freeze([90, 120, 135, 180, 240, 270, 360, 480, 540, 720, 1080]);

/** The largest ``max_height`` the protocol takes. */
export const MAX_HEIGHT = 8192;

/** How long size changes are gathered into one check (a window being dragged fires many). */
export const DELAY_MS = 250;

/**
 * The ``max_height`` to ask for a tile ``cssHeight`` CSS pixels high: its height in device
 * pixels, or 0 when nobody can see it (the tab is hidden or the tile is off screen).
 */
export function wantedHeight({ cssHeight, pixelRatio = 1, visible = true, onScreen = true }) {
  if (!visible || !onScreen) return 0;
  const height = Math.round((Number(cssHeight) || 0) * (Number(pixelRatio) || 1));
  return Math.max(0, Math.min(MAX_HEIGHT, height));
}

/**
 * Whether asking for ``now`` after having asked for ``before`` (undefined: nothing asked yet;
 * null: no limit) is worth a message: always from nothing, between shown and hidden, to or
 * from no limit, across a common layer height, or by more than a quarter.
 */
export function worthSending(before, now) {
  if (before === undefined) return true;
  if (before === now) return false;
  if (before === null || now === null) return true;
  if ((before === 0) !== (now === 0)) return true;
  const low = Math.min(before, now);
  const high = Math.max(before, now);
  // The SFU picks the highest layer of height <= max_height: a layer of height h changes hands
  // when max_height moves across h.
  if (LAYER_HEIGHTS.some((h) => low < h && h <= high)) return true;
  return high - low > low / 4;
}

/**
 * Ask for at most ``maxHeight`` pixels of ``participant``'s ``source`` (its tile's height;
 * 0 while hidden; null for no limit). ``line``: the call WebSocket (anything with ``send``).
 */
export function sendView(line, callId, participant, maxHeight, source = "camera") {
  const height =
    maxHeight === null || maxHeight === undefined ? null : Math.min(MAX_HEIGHT, Math.max(0, Math.round(maxHeight)));
  return line.send({ type: "view", call_id: callId, participant, source, max_height: height });
}

/** The height a watched element shows its video at, in CSS pixels (by default its own). */
function ownHeight(element) {
  return element.clientHeight;
}

/**
 * Keep the SFU told of the height each participant's video is shown at. ``watch`` a tile
 * element per participant and source; the reporter observes its size (ResizeObserver), whether
 * it is on screen (IntersectionObserver) and whether the tab is visible (visibilitychange), and
 * sends ``view`` when what it should ask for changes enough (``worthSending``). Size changes are
 * gathered for ``delayMs``; the tab hiding or showing is sent at once (a hidden tab's timers
 * are slowed down).
 *
 * Returns ``{watch(participant, element, source, measure), unwatch(participant, source,
 * {lift}), update(), close()}``: ``measure(element)`` gives the CSS height the video is shown
 * at when that is not the element's own (a camera shown small in a corner of a shared screen's
 * tile); ``unwatch`` sends nothing unless ``lift`` (then ``null``: no limit); ``update()``
 * checks again now (after the app changed a tile's layout without resizing it).
 */
export function viewReporter(line, callId, { delayMs = DELAY_MS, doc = globalThis.document, win = globalThis } = {}) {
  const views = new Map(); // "participant/source" -> {participant, source, element, measure, onScreen, sent}
  const onScreen = new WeakMap(); // element -> whether any of it is in the viewport
  let timer = null;

  const check = () => {
    clearTimeout(timer);
    timer = null;
    const visible = doc?.visibilityState !== "hidden";
    const pixelRatio = win?.devicePixelRatio || 1;
    for (const view of views.values()) {
      const cssHeight = view.measure(view.element);
      const now = wantedHeight({ cssHeight, pixelRatio, visible, onScreen: onScreen.get(view.element) ?? true });
      if (!worthSending(view.sent, now)) continue;
      view.sent = now;
      sendView(line, callId, view.participant, now, view.source);
    }
  };
  const soon = () => {
    if (timer === null) timer = setTimeout(check, delayMs);
  };
  const resizes = typeof ResizeObserver === "function" ? new ResizeObserver(soon) : null;
  const crossings =
    typeof IntersectionObserver === "function"
      ? new IntersectionObserver((entries) => {
          for (const entry of entries) onScreen.set(entry.target, entry.isIntersecting);
          soon();
        })
      : null;
  doc?.addEventListener?.("visibilitychange", check);

  const elementInUse = (element) => [...views.values()].some((view) => view.element === element);
  const forget = (key) => {
    const view = views.get(key);
    views.delete(key);
    if (view && !elementInUse(view.element)) {
      resizes?.unobserve(view.element);
      crossings?.unobserve(view.element);
    }
    return view;
  };

  return {
    watch(participant, element, source = "camera", measure = ownHeight) {
      const key = `${participant}/${source}`;
      const before = views.get(key);
      if (before?.element === element) {
        before.measure = measure;
        soon();
        return;
      }
      if (before) forget(key);
      views.set(key, { participant, source, element, measure, sent: before?.sent });
      resizes?.observe(element);
      crossings?.observe(element);
      soon();
    },
    unwatch(participant, source = "camera", { lift = false } = {}) {
      const view = forget(`${participant}/${source}`);
      if (lift && view && view.sent !== undefined && view.sent !== null) {
        sendView(line, callId, participant, null, source);
      }
    },
    update: soon,
    close() {
      clearTimeout(timer);
      timer = null;
      resizes?.disconnect();
      crossings?.disconnect();
      doc?.removeEventListener?.("visibilitychange", check);
      views.clear();
    },
  };
}
