// What the call screens say about encryption, honestly for each kind of call:
// - a peer-to-peer 1:1 call is end-to-end encrypted by DTLS-SRTP between the two devices
//   (a TURN relay forwards only SRTP) as soon as it connects;
// - a call through the SFU (group, or a 1:1 it relays) only once frame keys are in place
//   (our key sent, a key from everyone else): until then "Setting up encryption…". Its
//   safety number lets the participants check that no one else holds the keys.

import { icon } from "./ui.js";

export const SECURITY_WORDS = {
  encrypted: "End-to-end encrypted",
  pending: "Setting up end-to-end encryption…",
};

/** What to show for a call: {state: "hidden" | "pending" | "encrypted", safety: string}. */
export function securityOf({ live, connected, e2ee }) {
  if (!live) return { state: "hidden", safety: "" };
  if (!e2ee) return { state: connected ? "encrypted" : "hidden", safety: "" };
  return { state: e2ee.encrypted ? "encrypted" : "pending", safety: e2ee.safetyNumber };
}

/** Paint ``view`` into the screen's elements ``#<prefix>-e2ee`` and ``#<prefix>-safety``. */
export function paintSecurity(prefix, view) {
  const badge = document.getElementById(`${prefix}-e2ee`);
  const safety = document.getElementById(`${prefix}-safety`);
  badge.hidden = view.state === "hidden";
  badge.dataset.state = view.state;
  const words = view.state === "encrypted" ? SECURITY_WORDS.encrypted : SECURITY_WORDS.pending;
  if (badge.dataset.words !== words) {
    badge.dataset.words = words;
    badge.replaceChildren(icon("lock"), document.createTextNode(words));
  }
  safety.hidden = view.state === "hidden" || !view.safety;
  const number = document.getElementById(`${prefix}-safety-number`);
  if (number.textContent !== view.safety) number.textContent = view.safety;
}
