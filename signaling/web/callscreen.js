// The 1:1 call screen: who, the state in words and sounds, the peer's mute and camera, the
// controls for each state, call waiting, and the end-of-call screen.

import { startCall } from "./calls.js";
import { line, state } from "./context.js";
import { paintSecurity, securityOf } from "./e2eeview.js";
import { focusBack } from "./focus.js";
import { paintPeerState, peerStateText, showsPeerVideo } from "./peerstate.js";
import { openReport } from "./reports.js";
import { bindScreenButton, paintCallStage, paintScreenButton } from "./screenshare.js";
import { callErrorText, endText } from "./text.js";
import { CAMERA_OFF, MUTE, paintToggle } from "./toggles.js";
import * as tones from "./tones.js";
import { $, clearToasts, formatDuration, h, icon, paintAvatar } from "./ui.js";

const NO_AGAIN = new Set(["cancelled", "answered_elsewhere", "declined_elsewhere", "glare"]);

let endedTimer = null;
let ticker = null;
let focusBefore = null;

export function openCallScreen() {
  const screen = $("#screen-call");
  clearTimeout(endedTimer);
  if (screen.hidden) {
    focusBefore = document.activeElement;
    clearToasts();
  }
  screen.hidden = false;
  document.body.dataset.call = "open";
  $("#screen-home").inert = true;
  attachMedia(state.current);
  renderCall();
  renderWaiting();
  const call = state.current;
  const target = call.state === "incoming" ? $("#btn-answer-audio") : $("#call-name");
  requestAnimationFrame(() => target.focus());
  clearInterval(ticker);
  ticker = setInterval(() => {
    if (state.current) renderCall();
  }, 1000);
}

export function closeCallScreen() {
  clearTimeout(endedTimer);
  clearInterval(ticker);
  tones.stop();
  const screen = $("#screen-call");
  const waiting = state.waiting;
  state.current = null;
  $("#remote-video").srcObject = null;
  $("#remote-screen").srcObject = null;
  $("#local-video").srcObject = null;
  $("#btn-sound").hidden = true;
  document.title = "Callbook";
  if (waiting?.active) {
    // The call on screen ended while another one rang: that one takes the screen.
    state.waiting = null;
    state.current = waiting;
    openCallScreen();
    return;
  }
  screen.hidden = true;
  delete document.body.dataset.call;
  $("#screen-home").inert = false;
  $("#call-announce").textContent = "";
  focusBack(focusBefore);
  focusBefore = null;
}

export function attachMedia(call) {
  if (!call) return;
  const remote = $("#remote-video");
  if (remote.srcObject !== call.remoteStream) {
    remote.srcObject = call.remoteStream;
  }
  if (call.remoteStream.getTracks().length) {
    remote.play().then(
      () => {
        $("#btn-sound").hidden = true;
      },
      () => {
        $("#btn-sound").hidden = !call.active;
      },
    );
  }
  const local = $("#local-video");
  const stream = call.localStream;
  if (local.srcObject !== stream) local.srcObject = stream && stream.getVideoTracks().length ? stream : null;
  renderCall();
}

/** Leave the end-of-call screen up for ``ms`` (unless another call took the screen). */
export function closeCallScreenSoon(call, ms) {
  clearTimeout(endedTimer);
  endedTimer = setTimeout(() => {
    if (state.current === call) closeCallScreen();
  }, ms);
}

function hasRemoteVideo(call) {
  return call.remoteStream.getVideoTracks().some((track) => track.readyState === "live" && !track.muted);
}

export function renderCall() {
  const call = state.current;
  if (!call) return;
  const screen = $("#screen-call");
  const s = call.state;
  screen.dataset.state = s;
  screen.dataset.direction = call.direction;
  const ended = s === "ended";
  const live = s === "connecting" || s === "connected" || s === "reconnecting";
  const video = !ended && live && hasRemoteVideo(call) && showsPeerVideo(call);
  screen.dataset.video = video ? "on" : "off";
  paintCallStage(call, !ended && live); // their shared screen, large (screenshare.js)
  const name = call.label;
  paintWho(call, name);
  const kind = paintKind(call, s);
  const { status, note } = statusOf(call, s, name, ended);
  $("#call-status").textContent = status;
  announce(s, [
    s === "incoming" ? `${kind} from ${name}` : s === "connected" ? `Connected with ${name}` : status,
    live ? peerStateText(call) : "",
    note,
  ]);
  paintPeerState(call, live);
  $("#call-note").textContent = note;
  $("#call-note").hidden = !note;
  paintSecurity(
    "call",
    securityOf({ live, connected: s === "connected", e2ee: call.sfu ? call.e2ee : null }),
  );
  paintControls(call, s, live, ended);
  paintLocal(call, live, ended);
  soundAndTitle(s, live, ended, status, name, call.busy);
}

function paintWho(call, name) {
  $("#call-name").textContent = name;
  const handle = call.peer?.handle ? `@${call.peer.handle}` : "";
  $("#call-handle").textContent = handle && handle !== name ? handle : "";
  paintAvatar($("#call-avatar"), name, call.peer?.account_id || name);
}

/** "Incoming video call", "Audio call" …: painted, and returned for the announcement. */
function paintKind(call, s) {
  const kindIcon = call.media === "video" ? "video" : "phone";
  let kind;
  if (call.direction === "incoming" && (s === "incoming" || s === "answering")) {
    kind = `${call.busy ? "Call waiting · " : ""}Incoming ${call.media === "video" ? "video" : "audio"} call`;
  } else {
    kind = call.media === "video" ? "Video call" : "Audio call";
  }
  $("#call-kind").replaceChildren(icon(kindIcon), h("span", {}, kind));
  return kind;
}

/** The status line (the clock while connected) and the note under it. */
function statusOf(call, s, name, ended) {
  let status = "";
  let note = "";
  switch (s) {
    case "dialing":
      status = "Calling…";
      break;
    case "ringing":
      status = "Ringing…";
      break;
    case "answering":
    case "connecting":
      status = call.throughRelay ? "Connecting through relay…" : "Connecting…";
      break;
    case "connected":
      status = call.peerReconnecting ? "Reconnecting…" : formatDuration(call.duration());
      break;
    case "reconnecting":
      status = "Reconnecting…";
      break;
    case "ended":
      return endedStatus(call, name);
    default:
  }
  if (!ended && call.peerReconnecting) note = `${name}’s connection dropped. Waiting for them to come back…`;
  if (!ended && line.state === "reconnecting") note = "Your connection dropped. Reconnecting…";
  return { status, note };
}

function endedStatus(call, name) {
  const text = endText(call.endReason, name, call.endedBySelf ? "self" : "peer");
  let status = text.title;
  let note = text.text;
  if (call.endReason === "error") {
    status = "Couldn’t place the call";
    note = callErrorText(call.endError);
  }
  if (call.connectedAt) status = `${status} · ${formatDuration(call.endedAt - call.connectedAt)}`;
  return { status, note };
}

/** Screen readers hear each change of state once, not every tick of the clock. */
function announce(s, parts) {
  const spoken = parts.filter(Boolean).join(". ");
  if ($("#call-announce").dataset.said !== `${s}|${spoken}`) {
    $("#call-announce").dataset.said = `${s}|${spoken}`;
    $("#call-announce").textContent = spoken;
  }
}

function paintControls(call, s, live, ended) {
  $("#controls-incoming").hidden = !(s === "incoming" || s === "answering");
  $("#controls-outgoing").hidden = !(s === "dialing" || s === "ringing");
  $("#controls-incall").hidden = !live;
  $("#controls-ended").hidden = !ended;

  const isVideo = call.media === "video";
  $("#answer-video-wrap").hidden = !isVideo;
  $("#lbl-answer-audio").textContent = isVideo ? "Audio only" : "Answer";
  $("#btn-answer-audio").setAttribute("aria-label", isVideo ? "Answer with audio only" : "Answer");
  $("#btn-answer-video").setAttribute("aria-label", "Answer with video");
  $("#btn-answer-audio").disabled = s === "answering";
  $("#btn-answer-video").disabled = s === "answering";
  $("#btn-decline").setAttribute("aria-label", "Decline");
  $("#btn-cancel").setAttribute("aria-label", "Cancel call");
  $("#btn-hangup").setAttribute("aria-label", "End call");

  paintToggle($("#btn-mute"), $("#lbl-mute"), { ...MUTE, pressed: call.muted });
  $("#camera-wrap").hidden = !call.sendsVideo;
  paintToggle($("#btn-camera"), $("#lbl-camera"), { ...CAMERA_OFF, pressed: call.cameraOff });
  paintScreenButton($("#btn-screen"), $("#lbl-screen"), call);

  const again = ended && call.target && !NO_AGAIN.has(call.endReason);
  $("#again-wrap").hidden = !again;
  $("#lbl-again").textContent = call.direction === "outgoing" ? "Call again" : "Call back";
  $("#report-wrap").hidden = !(ended && call.peer?.handle);
}

/** Our own camera: a preview before the call, a corner picture during it. */
function paintLocal(call, live, ended) {
  const local = $("#local-video");
  local.hidden = ended || !call.sendsVideo || !local.srcObject;
  $("#screen-call").dataset.preview = !local.hidden && !live ? "on" : "off";
  local.classList.toggle("is-off", call.cameraOff);
}

/** Sounds and the tab title follow the state. */
function soundAndTitle(s, live, ended, status, name, busy) {
  if (s === "incoming" && !busy) tones.start("ring");
  else if (s === "ringing") tones.start("ringback");
  else tones.stop();
  document.title =
    s === "incoming"
      ? `Incoming call · ${name}`
      : live
        ? `${status ? `${status} · ` : ""}${name}`
        : ended
          ? "Callbook"
          : `Calling ${name}…`;
}

export function renderWaiting() {
  const call = state.waiting;
  const box = $("#call-waiting");
  if (!call?.active) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  $("#waiting-name").textContent = `${call.label} ${call.media === "video" ? "(video)" : ""}`.trim();
  paintAvatar($("#waiting-avatar"), call.label, call.peer?.account_id);
}

export function bindCallScreen() {
  $("#btn-answer-audio").addEventListener("click", () => {
    tones.unlock();
    state.current?.answer(false);
  });
  $("#btn-answer-video").addEventListener("click", () => {
    tones.unlock();
    state.current?.answer(true);
  });
  $("#btn-decline").addEventListener("click", () => state.current?.decline(false));
  $("#btn-cancel").addEventListener("click", () => state.current?.hangup());
  $("#btn-hangup").addEventListener("click", () => state.current?.hangup());
  $("#btn-mute").addEventListener("click", () => state.current?.toggleMute());
  $("#btn-camera").addEventListener("click", () => state.current?.toggleCamera());
  bindScreenButton($("#btn-screen"), () => state.current);
  $("#btn-close").addEventListener("click", () => closeCallScreen());
  $("#btn-report").addEventListener("click", () => {
    const call = state.current;
    if (call) openReport({ handle: call.peer?.handle, name: call.label, callId: call.callId });
  });
  // Someone reaching for a button on the end-of-call screen keeps it open.
  $("#controls-ended").addEventListener("focusin", () => clearTimeout(endedTimer));
  $("#btn-again").addEventListener("click", () => {
    const call = state.current;
    if (!call?.target) return;
    closeCallScreen();
    startCall(call.target, call.media, call.peer?.label || null);
  });
  $("#btn-sound").addEventListener("click", () => {
    $("#remote-video").play().catch(() => {});
    $("#btn-sound").hidden = true;
  });
  $("#waiting-decline").addEventListener("click", () => state.waiting?.decline(true));
  $("#waiting-answer").addEventListener("click", () => {
    const next = state.waiting;
    const previous = state.current;
    if (!next?.active) return;
    state.waiting = null;
    state.current = next;
    if (previous?.active) previous.hangup();
    openCallScreen();
    next.answer(next.media === "video");
  });
  // Wherever focus is (after a hang-up it may be nowhere), Escape closes the end-of-call screen.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || $("#screen-call").hidden) return;
    if (state.current?.state === "ended") closeCallScreen();
  });
}
