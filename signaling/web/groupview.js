// Group calls on screen: the "Group call" form on the home screen, the invitation, and the call
// itself as a grid of tiles, one per participant. The protocol lives in group.js.

import {
  GROUP_WORDS,
  callErrorText,
  groupEndText,
  groupInviteTitle,
  problemText,
} from "./text.js";
import { paintSecurity, securityOf } from "./e2eeview.js";
import { CAMERA_OFF, MUTE, paintToggle } from "./toggles.js";
import { bindRoster, paintRoster } from "./roster.js";
import { SCREEN_FAILED } from "./screenshare.js";
import { showsVideo } from "./sdk/screenshare.js";
import { forgetTile, reportTiles, stopReporting } from "./tileviews.js";
import * as tones from "./tones.js";
import { $, avatar, formatDuration, h, handleHint, icon, toast, typedHandle } from "./ui.js";

const MAX_INVITEES = 15;

let ctx = null; // {client, state, isBusy, nameOf, onEnded}
let group = null; // the GroupCall on screen
let ticker = null;
let focusBefore = null;
const tiles = new Map(); // participant id → tile element

/** The group call on screen, if any (for app.js, calls.js and tests). */
export function activeGroup() {
  return group?.active ? group : null;
}

export function currentGroup() {
  return group;
}

/**
 * Wire the form and the screen. ``isBusy()``: whether a 1:1 call is on; ``nameOf(person)``:
 * the name to show for a person (a contact's nickname wins).
 */
export function bindGroup(context) {
  ctx = context;
  bindForm();
  $("#group-decline").addEventListener("click", () => group?.decline(false));
  $("#group-join").addEventListener("click", () => {
    tones.unlock();
    group?.accept();
  });
  $("#group-leave").addEventListener("click", () => group?.hangup());
  $("#group-mute").addEventListener("click", () => group?.toggleMute());
  $("#group-camera").addEventListener("click", () => group?.toggleCamera());
  bindRoster(() => group, (message) => toast(message, "error"));
  $("#group-screen").addEventListener("click", () => {
    group?.toggleScreen().catch(() => toast(SCREEN_FAILED, "error"));
  });
  $("#group-sound").addEventListener("click", () => {
    for (const video of document.querySelectorAll("#group-grid video")) video.play().catch(() => {});
    $("#group-sound").hidden = true;
  });
}

// --- the form on the home screen ---------------------------------------------------------------

/** "@bob, carol  dave" → ["bob", "carol", "dave"] (without repeats). */
export function parseHandles(text) {
  const out = [];
  for (const piece of text.split(/[\s,;]+/)) {
    const handle = typedHandle(piece);
    if (handle && !out.some((seen) => seen.toLowerCase() === handle.toLowerCase())) out.push(handle);
  }
  return out;
}

function formError(form, message, input = null) {
  const box = $(".form-error", form);
  box.textContent = message || "";
  box.hidden = !message;
  if (input && message) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
}

function bindForm() {
  const form = $("#form-group");
  const toggle = $("#group-toggle");
  const open = (yes) => {
    form.hidden = !yes;
    toggle.setAttribute("aria-expanded", String(yes));
    if (yes) form.elements.handles.focus();
    else {
      form.reset();
      formError(form, null);
    }
  };
  toggle.addEventListener("click", () => open(form.hidden));
  $("#group-cancel").addEventListener("click", () => open(false));
  form.addEventListener("input", () => {
    formError(form, null);
    form.elements.handles.removeAttribute("aria-invalid");
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = form.elements.handles;
    const handles = parseHandles(input.value);
    const me = ctx.state.me?.handle;
    if (!handles.length) return formError(form, "Type the handles of the people to invite.", input);
    if (handles.length > MAX_INVITEES) {
      return formError(form, `You can invite at most ${MAX_INVITEES} people.`, input);
    }
    for (const handle of handles) {
      const hint = handleHint(handle);
      if (hint) return formError(form, `@${handle} isn’t a valid handle. ${hint}`, input);
      if (me && handle.toLowerCase() === me) {
        return formError(form, "You’re in the call already: leave your own handle out.", input);
      }
    }
    const media = form.elements.media.value === "video" ? "video" : "audio";
    if (startGroupCall(handles, media)) open(false);
  });
}

// --- starting, ringing, ending ---------------------------------------------------------------

/** Host a group call; false if it can't start now. */
export function startGroupCall(handles, media) {
  if (activeGroup() || ctx.isBusy()) {
    toast("You’re already in a call.", "error");
    return false;
  }
  if (ctx.client.line.state !== "online") {
    toast("You’re not connected right now. Calls will work again once you’re back online.", "error");
    return false;
  }
  adopt(ctx.client.group(handles, { media }));
  openScreen();
  return true;
}

/** An invitation to a group call (the SDK's ``incoming`` with a GroupCall). */
export function onGroupIncoming(call) {
  if (activeGroup() || ctx.isBusy()) {
    // Already in a call: leave this one to ring out; it shows up as a missed call.
    ctx.client.release(call);
    toast(`${nameOf(call.host)} invites you to a group call.`);
    return;
  }
  adopt(call);
  openScreen();
}

function adopt(call) {
  group = call;
  tiles.clear();
  $("#group-grid").replaceChildren();
  call.addEventListener("change", () => call === group && render());
  call.addEventListener("media", () => call === group && render());
  call.addEventListener("problem", (event) => {
    const { reason, error } = event.detail;
    toast(reason === "media" ? groupEndText("media").text : problemText(error), "error");
  });
  call.addEventListener("ended", () => onEnded(call));
}

function onEnded(call) {
  if (call !== group) return;
  const reason = call.endReason;
  if (reason === "error") toast(callErrorText(call.endError), "error");
  else if (reason === "missed") toast(`Missed group call from ${nameOf(call.host)}.`);
  else if (!(reason === "hangup" && call.endedBySelf) && reason !== "declined_by_me") {
    const text = groupEndText(reason);
    toast([text.title, text.text].filter(Boolean).join(" · "));
  }
  closeScreen();
  ctx.onEnded?.(call);
}

function nameOf(person) {
  return ctx.nameOf(person);
}

// --- the screen --------------------------------------------------------------------------------

function openScreen() {
  const screen = $("#screen-group");
  if (screen.hidden) focusBefore = document.activeElement;
  screen.hidden = false;
  document.body.dataset.call = "open";
  $("#screen-home").inert = true;
  render();
  const target = group.state === "incoming" ? $("#group-join") : $("#group-title");
  requestAnimationFrame(() => target.focus());
  clearInterval(ticker);
  ticker = setInterval(() => {
    if (!group) return;
    renderStatus();
    paintRoster(group); // "Ringing…" turns into "No answer" with time
  }, 1000);
}

function closeScreen() {
  clearInterval(ticker);
  tones.stop();
  group = null;
  stopReporting();
  for (const tile of tiles.values()) for (const v of tile.querySelectorAll("video")) v.srcObject = null;
  tiles.clear();
  $("#group-grid").replaceChildren();
  $("#group-sound").hidden = true;
  $("#screen-group").hidden = true;
  if ($("#screen-call").hidden) {
    delete document.body.dataset.call;
    $("#screen-home").inert = false;
  }
  $("#group-announce").textContent = "";
  document.title = "Callbook";
  if (focusBefore && document.contains(focusBefore)) focusBefore.focus();
  focusBefore = null;
}

function render() {
  const call = group;
  if (!call) return;
  const screen = $("#screen-group");
  const s = call.state;
  screen.dataset.state = s;
  const ringing = s === "incoming" || s === "joining";
  const video = call.media === "video";
  $("#group-kind").replaceChildren(
    icon(video ? "video" : "users"),
    h("span", {}, ringing ? GROUP_WORDS.incoming(video) : GROUP_WORDS.kind(video)),
  );
  $("#group-title").textContent = ringing
    ? groupInviteTitle(nameOf(call.host))
    : call.host && call.direction === "incoming"
      ? GROUP_WORDS.hostedBy(nameOf(call.host))
      : GROUP_WORDS.yours;
  $("#group-invite").hidden = !ringing;
  if (ringing) {
    $("#group-invite").replaceChildren(avatar(nameOf(call.host), call.host?.account_id, "xl"));
  }
  $("#group-grid").hidden = ringing;
  $("#group-controls-incoming").hidden = !ringing;
  $("#group-controls-incall").hidden = ringing;
  $("#group-join").disabled = s === "joining";
  $("#group-decline").disabled = s === "joining";
  renderControls(call);
  renderStatus();
  paintRoster(call);
  renderTiles(call);
  paintSecurity("group", securityOf({ live: s === "joined", connected: false, e2ee: call.e2ee }));
  if (s === "incoming") tones.start("ring");
  else tones.stop();
  const spoken = ringing ? `${groupInviteTitle(nameOf(call.host))}` : s === "joined" ? GROUP_WORDS.joined : "";
  if ($("#group-announce").dataset.said !== spoken) {
    $("#group-announce").dataset.said = spoken;
    $("#group-announce").textContent = spoken;
  }
}

function renderStatus() {
  const call = group;
  if (!call) return;
  let status = "";
  if (call.state === "starting" || call.state === "joining") status = GROUP_WORDS.connecting;
  if (call.state === "joined") {
    const count = call.participants.length || 1;
    status = `${formatDuration(call.duration())} · ${GROUP_WORDS.people(count)}`;
  }
  $("#group-status").textContent = status;
  document.title =
    call.state === "incoming" ? `Group call · ${nameOf(call.host)}` : status ? `${status} · Group call` : "Callbook";
}

function renderControls(call) {
  paintToggle($("#group-mute"), $("#group-lbl-mute"), { ...MUTE, pressed: call.muted });
  $("#group-camera-wrap").hidden = !call.sendsVideo;
  paintToggle($("#group-camera"), $("#group-lbl-camera"), { ...CAMERA_OFF, pressed: call.cameraOff });
  const sharing = call.screen.sharing;
  $("#group-screen-wrap").hidden = !call.screen.possible;
  $("#group-screen").setAttribute("aria-pressed", String(sharing));
  $("#group-lbl-screen").textContent = sharing ? "Stop sharing" : "Share";
}

// --- tiles ---------------------------------------------------------------------------------------

/** Everyone the server lists; before the first list, just us. */
function roster(call) {
  if (call.participants.length) return call.participants;
  if (call.state !== "joined" && call.state !== "starting") return [];
  const me = ctx.state.me;
  return [
    {
      participant: call.me || "me",
      person: { account_id: me?.id, handle: me?.handle, display_name: me?.display_name },
      audio_muted: call.muted,
      video_muted: call.cameraOff,
      connected: true,
    },
  ];
}

function renderTiles(call) {
  const grid = $("#group-grid");
  // Someone else's shared screen comes first, shown large (screenshare.js).
  const shown = (p) => Number(p.participant !== call.me && showsVideo(call.screens.get(p.participant)));
  const list = roster(call).toSorted((a, b) => shown(b) - shown(a));
  const present = new Set(list.map((p) => p.participant));
  for (const [id, tile] of [...tiles]) {
    if (present.has(id)) continue;
    for (const v of tile.querySelectorAll("video")) v.srcObject = null;
    tile.remove();
    tiles.delete(id);
    forgetTile(id);
  }
  list.forEach((entry, index) => {
    let tile = tiles.get(entry.participant);
    if (!tile) {
      tile = makeTile(entry, entry.participant === call.me || entry.participant === "me");
      tiles.set(entry.participant, tile);
    }
    if (grid.children[index] !== tile) grid.insertBefore(tile, grid.children[index] || null);
    updateTile(call, tile, entry);
  });
  grid.dataset.count = String(list.length);
  reportTiles(call, tiles); // the size each video is shown at, for the SFU's choice of layer
}

function makeTile(entry, self) {
  const name = self ? "You" : nameOf(entry.person);
  const video = h("video.tile-video", { autoplay: true, playsinline: true, muted: self });
  video.muted = self; // the attribute alone does not mute a media element
  return h(
    "li.tile",
    { dataset: { participant: entry.participant, self: self ? "yes" : "no" } },
    video,
    h("div.tile-avatar", {}, avatar(name, entry.person?.account_id, "lg")),
    screenVideo(),
    h(
      "div.tile-label",
      {},
      h("span.tile-name", {}, name),
      h("span.tile-muted", { hidden: true }, icon("mic-off", "Microphone off")),
    ),
    h("span.tile-badge", { hidden: true }, GROUP_WORDS.reconnecting),
  );
}

/** A tile's second video: the participant's shared screen, over their camera (made small). */
function screenVideo() {
  const video = h("video.tile-screen", { autoplay: true, playsinline: true, muted: true, hidden: true });
  video.muted = true; // its sound, if any, would echo: the camera's stream carries the voice
  return video;
}

function updateScreen(call, tile, entry, self) {
  const stream = self ? null : call.screens.get(entry.participant) || null;
  const video = $("video.tile-screen", tile);
  if (video.srcObject !== stream) {
    video.srcObject = stream;
    if (stream) video.play().catch(() => {});
  }
  const shown = showsVideo(stream);
  video.hidden = !shown;
  tile.classList.toggle("is-screen", shown);
  return shown;
}

function updateTile(call, tile, entry) {
  const self = tile.dataset.self === "yes";
  const name = self ? "You" : nameOf(entry.person);
  const stream = self ? call.localStream : call.streams.get(entry.participant) || null;
  const video = $("video.tile-video", tile);
  if (video.srcObject !== stream) {
    video.srcObject = stream;
    if (stream && !self) {
      video.play().catch(() => {
        $("#group-sound").hidden = false;
      });
    }
  }
  const audioMuted = self ? call.muted : entry.audio_muted;
  const videoOff = self ? call.cameraOff || !call.sendsVideo : entry.video_muted;
  const flowing = (t) => t.readyState === "live" && (self || !t.muted);
  const showsVideo = Boolean(stream?.getVideoTracks().some(flowing)) && !videoOff;
  tile.dataset.video = showsVideo ? "on" : "off";
  const screen = updateScreen(call, tile, entry, self);
  $(".tile-muted", tile).hidden = !audioMuted;
  $(".tile-badge", tile).hidden = entry.connected !== false;
  tile.classList.toggle("is-reconnecting", entry.connected === false);
  const speaking = call.speaker === entry.participant;
  tile.classList.toggle("is-speaking", speaking);
  if (speaking) tile.setAttribute("aria-current", "true");
  else tile.removeAttribute("aria-current");
  const states = [
    screen || (entry.screen && !self) ? "sharing their screen" : "",
    audioMuted ? "microphone off" : "",
    entry.connected === false ? "reconnecting" : "",
    speaking ? "speaking" : "",
  ].filter(Boolean);
  const handle = entry.person?.handle && !self ? ` (@${entry.person.handle})` : "";
  tile.setAttribute("aria-label", `${name}${handle}${states.length ? `: ${states.join(", ")}` : ""}`);
}
