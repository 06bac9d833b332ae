// What "hide my IP" does on this server, said next to the setting (protocol 11.9, 11.10): with a
// TURN relay nothing needs saying; without one, calls that hide an IP address go through the
// server's own media server (SFU), end-to-end encrypted; only with neither can they not connect.

import { hasTurn } from "./sdk/ice.js";

/** ``{kind: "info" | "warning", text}`` for ``relay_calls`` on a server whose
 * ``GET /v1/turn`` answered ``turn``, or null when there is nothing to say. */
export function relayNote(turn, relayCalls) {
  if (relayCalls === "never" || hasTurn(turn)) return null;
  if (turn.sfu) {
    return {
      kind: "info",
      text:
        relayCalls === "always"
          ? "Every call goes through this server’s media server, so the other person only sees the server’s address. It passes on your audio and video end-to-end encrypted: it can’t see or hear them."
          : "Calls with people who aren’t your contacts go through this server’s media server, so they only see the server’s address. It passes on your audio and video end-to-end encrypted: it can’t see or hear them.",
    };
  }
  return {
    kind: "warning",
    text: "This server has no relay, so calls that hide your IP address can’t connect.",
  };
}
