// The Callbook JavaScript SDK: sign-up and sign-in by device key (WebCrypto Ed25519), the
// address book, and 1:1 and group calls over the call WebSocket (docs/sdk-js.md).
// A plain ES module: import it from /static/sdk/callbook.js or copy this folder; no build step.
// Types: callbook.d.ts (the API) and protocol.d.ts (the wire messages, from docs/asyncapi.json).

export { Api, ApiError, signinMessage } from "./api.js";
export { Call } from "./call.js";
export { Callbook } from "./client.js";
export { GroupCall } from "./group.js";
export { hasTurn, iceServersOf } from "./ice.js";
export { Invitees } from "./invitees.js";
export * as keystore from "./keystore.js";
export { Line } from "./line.js";
export { ScreenShare, showsVideo } from "./screenshare.js";
export * as simulcast from "./simulcast.js";
export * as view from "./view.js";
export { GONE_CODES, Session } from "./session.js";
export { SfuMedia } from "./sfu.js";
