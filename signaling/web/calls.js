// The calls on this device, between the SDK and the screens: placing one, an incoming one
// (call waiting; busy in a group call), how each ends, and the line's state (the status pill,
// "open in another tab", a call taken over after a reload).

import { closeCallScreen, closeCallScreenSoon, openCallScreen, renderCall, renderWaiting, attachMedia } from "./callscreen.js";
import { client, line, state } from "./context.js";
import { activeGroup, onGroupIncoming } from "./groupview.js";
import { recordCall } from "./history.js";
import { contactFor, contactName, refreshMissed } from "./home.js";
import { GroupCall } from "./sdk/callbook.js";
import { endText, problemText } from "./text.js";
import { $, toast } from "./ui.js";

const STATUS_WORDS = {
  connecting: "Connecting…",
  online: "Online",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  replaced: "Open elsewhere",
};

/** Wire the SDK's events: calls ringing here, messages for no call of ours, the line. */
export function bindCalls() {
  client.addEventListener("incoming", (event) => {
    const call = event.detail;
    if (call instanceof GroupCall) onGroupIncoming(call);
    else onIncoming(call);
  });
  client.addEventListener("unrouted", (event) => {
    const message = event.detail;
    if (message.type === "error") {
      if (message.code !== "already_authenticated") toast(problemText(message), "error");
    } else if (message.type === "ended" && message.reason === "missed") {
      refreshMissed();
    }
  });
  bindLine();
}

function bindLine() {
  line.addEventListener("state", (event) => {
    const status = event.detail;
    $("#status-pill").dataset.state = status;
    $("#status-text").textContent = STATUS_WORDS[status] || status;
    $("#status-pill").title =
      status === "online"
        ? "Connected: you can receive calls"
        : status === "replaced"
          ? "Callbook is open in another tab"
          : "Not connected: calls can’t reach you right now";
    if (status === "replaced") {
      banner("Callbook is open in another tab or window, so calls ring there.", "Use here");
      endAllCalls("peer_lost");
    } else if (status === "online") {
      $("#banner").hidden = true;
    }
  });
  line.addEventListener("welcome", (event) => {
    if (state.rejoin !== undefined) takeOver(state.rejoin, event.detail.resumed);
    if (state.me) refreshMissed();
  });
}

/** The call of the tab's previous page, now that the line knows whether the session resumed. */
function takeOver(kept, resumed) {
  state.rejoin = undefined;
  if (!kept) return;
  if (!resumed) {
    toast("Your call ended when the page reloaded.");
    return;
  }
  if (!kept.accepted) {
    if (kept.direction === "outgoing") line.send({ type: "hangup", call_id: kept.call_id });
    return; // a call ringing here rings again by itself (11.5.12)
  }
  if (kept.accepted.sfu) {
    // The SFU ends a relayed call once one side's media connection closes (protocol 11.16),
    // and a reload closes it: that call is over for both.
    toast("Your call ended when the page reloaded: a call relayed to hide an IP address can’t go on.");
    return;
  }
  const call = client.rejoin(kept);
  watch(call);
  state.current = call;
  openCallScreen();
}

function banner(text, action) {
  $("#banner-text").textContent = text;
  const button = $("#banner-action");
  button.hidden = !action;
  if (action) button.textContent = action;
  $("#banner").hidden = false;
}

/** Call a person ({handle} or {account_id}); ``label`` is what to show until they answer. */
export function startCall(target, media, label) {
  if (state.current?.active || activeGroup()) {
    toast("You’re already in a call.", "error");
    return;
  }
  if (line.state !== "online") {
    toast("You’re not connected right now. Calls will work again once you’re back online.", "error");
    return;
  }
  const peer = { account_id: target.account_id || null, handle: target.handle || null, display_name: null, label };
  const call = client.call(target, { media, peer });
  watch(call);
  state.current = call;
  openCallScreen();
}

/** A 1:1 call ringing here (the SDK already listed it). */
function onIncoming(call) {
  const contact = contactFor(call.peer.account_id);
  call.peer.label = contact ? contactName(contact) : null;
  watch(call);
  if (activeGroup()) {
    call.decline(true); // in a group call: the caller hears "busy"
    toast(`${call.label} called while you were in a group call.`);
    return;
  }
  if (state.current?.active) {
    if (state.waiting?.active) {
      call.decline(true); // already juggling two calls
      return;
    }
    state.waiting = call;
    renderWaiting();
    return;
  }
  state.current = call;
  openCallScreen();
}

function watch(call) {
  call.addEventListener("change", () => {
    if (call === state.current) renderCall();
    if (call === state.waiting) renderWaiting();
  });
  call.addEventListener("media", () => {
    if (call === state.current) attachMedia(call);
  });
  call.addEventListener("problem", (event) => {
    const { reason, error } = event.detail;
    toast(reason === "media" ? endText("media").text : problemText(error), "error");
  });
  call.addEventListener("ended", () => onCallEnded(call));
}

const QUIET_END = new Set(["declined_by_me", "gone"]);
const SHORT_END = new Set(["hangup", "cancelled", "answered_elsewhere", "declined_elsewhere", "missed", "glare"]);

function onCallEnded(call) {
  recordCall(call);
  if (call.endReason === "missed") refreshMissed();
  if (call === state.waiting) {
    state.waiting = null;
    renderWaiting();
    if (call.endReason === "missed") toast(`Missed call from ${call.label}.`);
    return;
  }
  if (call !== state.current) return;
  if (state.waiting?.active) {
    // Another call is ringing: it takes the screen at once; say how this one ended.
    if (!QUIET_END.has(call.endReason) && call.endReason !== "glare") {
      toast(`${endText(call.endReason, call.label).title} · ${call.label}`);
    }
    closeCallScreen();
    return;
  }
  if (QUIET_END.has(call.endReason)) {
    if (call.endReason === "gone") toast("That call has already ended.");
    closeCallScreen();
    return;
  }
  renderCall();
  closeCallScreenSoon(call, SHORT_END.has(call.endReason) ? 2500 : 8000);
}

/** End every call here (sign-out, erase); with ``reason``, as a lost session ends them. */
export function endAllCalls(reason = null) {
  client.endAll(Boolean(reason));
  state.waiting = null;
  closeCallScreen();
}
