// Everything the client says to people about errors and call outcomes, in plain words.
// Branch on the server's stable ``code``; fall back to its ``detail`` sentence for codes this
// client does not know yet (the protocol adds codes within v1).

const PROBLEMS = {
  unreachable: "Can’t reach Callbook. Check your connection and try again.",
  handle_taken: "That handle is already taken. Try another one.",
  invalid_handle:
    "Handles are 3–32 characters: letters, numbers and _, with single dots between them.",
  handle_reserved: "That handle is reserved. Please pick another one.",
  not_found: "No one found with that handle.",
  bad_recovery_code: "The handle or recovery code is wrong.",
  too_many_devices:
    "This account already has 10 devices. Remove one from another device, or sign out your other devices.",
  invalid_public_key: "This browser made a key the server cannot use. Try another browser.",
  device_revoked: "This browser was signed out of the account.",
  unknown_device: "This browser was signed out of the account.",
  bad_challenge: "Signing in took too long. Please try again.",
  bad_signature: "This browser’s key was not accepted. Sign in again with your recovery code.",
  token_missing: "Your session ended. Signing in again…",
  token_invalid: "Your session ended. Signing in again…",
  token_expired: "Your session ended. Signing in again…",
  forbidden_origin: "This page may not connect to the call service from here.",
  overloaded: "Callbook is very busy right now. Try again in a moment.",
  puzzle_required: "Callbook is very busy right now. Try again in a moment.",
  unavailable: "Callbook is temporarily unavailable. Try again in a moment.",
  internal: "Something went wrong on our side. Please try again.",
  payload_too_large: "That is too long.",
  // Call WebSocket errors
  invalid_target: "You can’t call yourself.",
  account_suspended:
    "Your account is suspended, so you can’t place calls.",
  not_ringing: "That call has already ended.",
  unknown_call: "That call has already ended.",
  call_ended: "That call has already ended.",
  not_in_call: "That call has already ended.",
  invalid_sdp: "This browser’s call setup was not accepted. Try joining again.",
  auth_timeout: "The call service didn’t hear back in time. Reconnecting…",
  already_authenticated: null,
  unexpected_message: null,
};

/** A sentence for a problem ``{code, detail, retryAfter}``. */
export function problemText(problem) {
  if (!problem) return "Something went wrong.";
  const { code, detail } = problem;
  if (code === "rate_limited") {
    const wait = problem.retryAfter ?? problem.retry_after;
    return wait
      ? `Too many attempts. Try again in ${wait} second${wait === 1 ? "" : "s"}.`
      : "You’re going a bit fast. Wait a moment and try again.";
  }
  if (code === "invalid_value" && detail) return friendlyDetail(detail);
  if (code === "invalid_request" || code === "invalid_message") {
    return `Something in that request isn’t valid${detail ? `: ${friendlyDetail(detail)}` : "."}`;
  }
  if (Object.hasOwn(PROBLEMS, code) && PROBLEMS[code]) return PROBLEMS[code];
  return friendlyDetail(detail) || "Something went wrong. Please try again.";
}

function friendlyDetail(detail) {
  if (!detail) return "";
  const text = String(detail).trim();
  return /[.!?…]$/.test(text) ? text : `${text}.`;
}

/** Why an invite was refused (a WebSocket ``error`` answering it). */
export function callErrorText(error) {
  if (error?.code === "invalid_handle") return "No one can have that handle, so there’s no one to call.";
  return problemText(error);
}

/** Title and sentence for how a call ended; ``who`` is the other person's name. */
export function endText(reason, who, direction) {
  const name = who || "They";
  switch (reason) {
    case "hangup":
      return { title: "Call ended", text: "" };
    case "cancelled":
      return { title: "Call cancelled", text: "" };
    case "declined":
      return { title: "Call declined", text: `${name} can’t take your call right now.` };
    case "busy":
      return { title: "Line busy", text: `${name} is on another call. Try again later.` };
    case "no_answer":
      return { title: "No answer", text: `${name} didn’t pick up.` };
    case "missed":
      return { title: "Missed call", text: `You missed a call from ${name}.` };
    case "answered_elsewhere":
      return { title: "Answered on another device", text: "" };
    case "declined_elsewhere":
      return { title: "Declined on another device", text: "" };
    case "peer_lost":
      return {
        title: "Connection lost",
        text:
          direction === "self"
            ? "Your connection dropped and the call couldn’t be resumed."
            : `The connection to ${name} was lost.`,
      };
    case "glare":
      return {
        title: "You called each other",
        text: "You both called at the same moment, so one call goes through.",
      };
    case "operator":
      return { title: "Call ended by Callbook", text: "An operator of this server ended the call." };
    case "failed":
      return { title: "Call failed", text: "The call couldn’t be connected." };
    case "media":
      return {
        title: "Microphone unavailable",
        text: "Callbook needs your microphone (and camera for video). Allow access in your browser and try again.",
      };
    case "no_route":
      return {
        title: "Couldn’t connect",
        text: "The media connection could not be set up. A firewall may be blocking it.",
      };
    case "no_relay":
      return {
        title: "Couldn’t connect privately",
        text: "Hide my IP needs a relay server, and this server has none configured.",
      };
    default:
      return { title: "Call ended", text: "" };
  }
}

export const AUDIENCE_HELP = {
  discoverable: {
    everyone: "Anyone who types your exact handle can find you.",
    contacts: "Only people in your contacts can find you by handle.",
    nobody: "No one can find you by handle. You can still call out.",
  },
  who_can_call: {
    everyone: "Anyone you haven’t blocked can ring you.",
    contacts: "Only people in your contacts can ring you.",
    nobody: "No one can ring you. Calls go nowhere, silently.",
  },
  relay_calls: {
    strangers:
      "Calls with people who aren’t your contacts go through a relay, so they never learn your IP address. Calls with your contacts connect directly.",
    always: "Every call goes through a relay, so no one you call learns your IP address. May add a little delay.",
    never: "Calls connect directly unless the other person relays them, so they may learn your IP address.",
  },
};

// --- group calls ---------------------------------------------------------------------------------

/** "Bob invites you to a group call" */
export function groupInviteTitle(host) {
  return `${host || "Someone"} invites you to a group call`;
}

export const GROUP_WORDS = {
  incoming: (video) => `Incoming group ${video ? "video" : "audio"} call`,
  kind: (video) => `Group ${video ? "video" : "audio"} call`,
  yours: "Your group call",
  hostedBy: (host) => `${host}’s group call`,
  connecting: "Connecting…",
  joined: "You joined the group call",
  reconnecting: "Reconnecting…",
  people: (n) => `${n} ${n === 1 ? "person" : "people"}`,
};

/** Title and sentence for how a group call ended for this device. */
export function groupEndText(reason) {
  switch (reason) {
    case "hangup":
      return { title: "Group call ended", text: "" };
    case "answered_elsewhere":
      return { title: "Joined on another device", text: "" };
    case "declined_elsewhere":
      return { title: "Declined on another device", text: "" };
    case "cancelled":
      return { title: "Group call ended", text: "The host left before you joined." };
    case "gone":
      return { title: "That group call has already ended", text: "" };
    default:
      return endText(reason, "the group call");
  }
}
