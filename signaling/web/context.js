// What every screen of the web client shares: the SDK's client (its API and call WebSocket)
// and the page's state. The app is the SDK's first user: protocol lives there (sdk/), words,
// screens and sounds here.

import { currentGroup } from "./groupview.js";
import { audioConstraints, videoConstraints } from "./mediadevices.js";
import { Callbook } from "./sdk/callbook.js";

export const client = new Callbook({
  constraints: { audio: () => audioConstraints(), video: (w, h) => videoConstraints(w, h) },
});
export const api = client.api;
export const line = client.line;

export const state = {
  identity: null,
  me: null,
  contacts: [],
  blocks: [],
  missed: [],
  rejoin: undefined, // the call the tab's previous page was in, until the line says if it resumed
  current: null, // the Call on screen
  waiting: null, // an incoming Call while `current` is active ("call waiting")
  signingOut: false,
};

// For tests and debugging: the live peer connection and the pieces behind it.
window.callbook = {
  client,
  api,
  line,
  state,
  get call() {
    return state.current;
  },
  get pc() {
    return state.current?.pc ?? null;
  },
  /** The group call on screen (sdk/group.js), with its SfuMedia in ``group.sfu``. */
  get group() {
    return currentGroup();
  },
};
