// The frame encryption of one SFU call (docs/e2ee.md §5), a module worker used through
// RTCRtpScriptTransform on every sender and receiver of that call. Keys come from the page
// (e2ee.js) as raw bytes; the worker derives the frame keys and never sends a key back.
//
//   page → worker: {type: "send_key", kid, baseKey}   our new sending key (CTR restarts at 0)
//                  {type: "receive_key", participant, kid, baseKey}
//                  {type: "forget", participant}       that participant left
//                  {type: "route", route, participant, source}  a routed receiver's sender now
//                  {type: "unroute", route}            that receiver carries no one
//                  {type: "stats", id}                 → {type: "stats", id, counts}
//   worker → page: {type: "key_request", participant, kid}  at most once a second per sender
//
// A frame that cannot be decrypted is dropped and counted, never passed on in clear.
//
// A receiver names its sender in its options (``participant``, ``source``: one connection per
// sender), or a ``route`` whose sender the page sets and changes (one connection for everyone,
// bundle.js: the SFU may give an m-section to another sender). Frames of a route that names no
// one are dropped (``unrouted``).

import { decryptFrame, deriveKey, encryptFrame, splitFrame } from "./sframe.js";
import { RequestLimiter, SenderKeys } from "./keyschedule.js";

const counts = {
  encrypted: 0,
  decrypted: 0,
  unknown_key: 0,
  auth_failed: 0,
  replayed: 0,
  malformed: 0,
  no_send_key: 0,
  unrouted: 0,
  encrypt_ms: 0, // time spent in encryptFrame, for the per-frame cost (docs/benchmarks.md)
};
let sending = null; // {kid, material}
let ctr = 0; // one counter per key, shared by audio and video
const receiving = new Map(); // participant → SenderKeys
const limiter = new RequestLimiter();
const starving = new Map(); // participant → receivers that dropped frames for lack of a key
const routes = new Map(); // route id → {participant, source}
let chain = Promise.resolve();

function keysOf(participant) {
  let keys = receiving.get(participant);
  if (!keys) {
    keys = new SenderKeys();
    receiving.set(participant, keys);
  }
  return keys;
}

async function handle(message) {
  switch (message.type) {
    case "send_key":
      sending = { kid: message.kid, material: await deriveKey(message.baseKey, message.kid) };
      ctr = 0;
      return;
    case "receive_key": {
      const material = await deriveKey(message.baseKey, message.kid);
      keysOf(message.participant).add(message.kid, material, performance.now());
      // Decoders that lost frames wait for a keyframe: ask for one now that frames decrypt.
      for (const transformer of starving.get(message.participant) ?? []) {
        transformer.sendKeyFrameRequest?.().catch(() => {});
      }
      starving.delete(message.participant);
      return;
    }
    case "forget":
      receiving.delete(message.participant);
      starving.delete(message.participant);
      limiter.forget(message.participant);
      return;
    case "stats":
      self.postMessage({ type: "stats", id: message.id, counts: { ...counts } });
      return;
    default:
  }
}

self.onmessage = (event) => {
  const message = event.data;
  // Routes change at once, not behind key derivations: the answer that starts the frames is
  // sent right after them.
  if (message.type === "route") {
    routes.set(message.route, { participant: message.participant, source: message.source });
  } else if (message.type === "unroute") {
    routes.delete(message.route);
  } else {
    chain = chain.then(() => handle(message)).catch((error) => console.error("e2ee:", error));
  }
};

function encryptor(kind) {
  return async (frame, controller) => {
    const key = sending;
    if (!key) {
      counts.no_send_key += 1; // nothing goes out in clear, not even before the first key
      return;
    }
    const frameCtr = ctr;
    ctr += 1;
    const started = performance.now();
    const data = await encryptFrame(key.material, frameCtr, kind, new Uint8Array(frame.data));
    counts.encrypt_ms += performance.now() - started;
    counts.encrypted += 1;
    frame.data = data.buffer;
    controller.enqueue(frame);
  };
}

function missingKey(participant, kid, transformer) {
  counts.unknown_key += 1;
  if (!starving.has(participant)) starving.set(participant, new Set());
  starving.get(participant).add(transformer);
  if (limiter.allow(participant, performance.now())) {
    self.postMessage({ type: "key_request", participant, kid });
  }
}

/** Who sent the frames of a receiver now: its own options, or its route's current entry. */
function senderOf(options) {
  if (options.route === undefined) return options;
  return routes.get(options.route) ?? null;
}

function decryptor(kind, options, transformer) {
  return async (frame, controller) => {
    const sender = senderOf(options);
    if (!sender) {
      counts.unrouted += 1;
      return;
    }
    const { participant, source } = sender;
    const parts = splitFrame(kind, new Uint8Array(frame.data));
    if (!parts) {
      counts.malformed += 1;
      return;
    }
    const { kid, ctr: frameCtr } = parts.header;
    const entry = receiving.get(participant)?.find(kid, performance.now());
    if (!entry) {
      missingKey(participant, kid, transformer);
      return;
    }
    const replay = entry.windows[source === "screen" ? "screen" : kind];
    if (!replay.fresh(frameCtr)) {
      counts.replayed += 1;
      return;
    }
    let clear;
    try {
      clear = await decryptFrame(entry.material, parts);
    } catch {
      counts.auth_failed += 1;
      return;
    }
    replay.accept(frameCtr);
    counts.decrypted += 1;
    frame.data = clear.buffer;
    controller.enqueue(frame);
  };
}

self.onrtctransform = (event) => {
  const transformer = event.transformer;
  const { operation, kind } = transformer.options;
  const transform =
    operation === "encrypt" ? encryptor(kind) : decryptor(kind, transformer.options, transformer);
  transformer.readable
    .pipeThrough(new TransformStream({ transform }))
    .pipeTo(transformer.writable)
    .catch(() => {}); // the connection closed
};
