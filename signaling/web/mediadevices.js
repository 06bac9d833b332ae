// Choosing the camera, microphone and speaker: a preview in settings, the choice kept in this
// browser (localStorage: device ids are random per site, and never sent anywhere), and a switch
// during a call. A switch swaps the track on the same RTCRtpSender (replaceTrack), so nothing is
// renegotiated and the sender keeps its end-to-end encryption transform (e2ee.js) in SFU calls.
// On phones the in-call sheet leads with two toggles: front/back camera and the speaker.

import { $, $$, h, toast } from "./ui.js";

const STORE_KEY = "callbook.media-devices";
const KINDS = ["audioinput", "videoinput", "audiooutput"];
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const FALLBACK = { audioinput: "Microphone", videoinput: "Camera", audiooutput: "Speaker" };

/** The chosen device id per kind ({audioinput, videoinput, audiooutput}), "" for the default. */
export function chosen() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_KEY) || "{}");
    return Object.fromEntries(KINDS.map((kind) => [kind, String(saved[kind] ?? "")]));
  } catch {
    return { audioinput: "", videoinput: "", audiooutput: "" };
  }
}

function remember(kind, deviceId) {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify({ ...chosen(), [kind]: deviceId }));
  } catch {
    // storage refused (private window): the choice lasts for this page only
  }
}

// Device ids present now (kept up to date): a chosen device is asked for ``exact``ly only while
// it is there, since Chromium treats a bare ``deviceId`` as a hint it may ignore, and an
// ``exact`` one that is gone would fail the call.
const present = new Set();

async function notePresent() {
  try {
    const all = await navigator.mediaDevices.enumerateDevices();
    present.clear();
    for (const device of all) present.add(device.deviceId);
  } catch {
    // no media devices at all: calls ask for the defaults
  }
}

function pick(deviceId, exact) {
  return deviceId && (exact || present.has(deviceId)) ? { deviceId: { exact: deviceId } } : null;
}

/** getUserMedia's ``audio`` for the chosen microphone (or ``deviceId``, with ``exact``). */
export function audioConstraints(deviceId = chosen().audioinput, exact = false) {
  return { ...AUDIO, ...pick(deviceId, exact) };
}

/** getUserMedia's ``video`` for the chosen camera (or the front one), at about this size. */
export function videoConstraints(width, height, deviceId = chosen().videoinput, exact = false) {
  const size = { width: { ideal: width }, height: { ideal: height } };
  return { ...size, ...(pick(deviceId, exact) ?? { facingMode: "user" }) };
}

async function listDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  present.clear();
  for (const device of all) present.add(device.deviceId);
  return Object.fromEntries(
    KINDS.map((kind) => [kind, all.filter((d) => d.kind === kind && d.deviceId)]),
  );
}

function fillSelect(select, devices, kind, current) {
  const options = devices.map((device, i) =>
    h("option", { value: device.deviceId }, device.label || `${FALLBACK[kind]} ${i + 1}`),
  );
  select.replaceChildren(...options);
  if (devices.some((d) => d.deviceId === current)) select.value = current;
  select.closest(".field").hidden = devices.length === 0;
}

// --- speaker --------------------------------------------------------------------------------

function canChooseSpeaker() {
  return "setSinkId" in HTMLMediaElement.prototype;
}

function applySpeaker(element, deviceId = chosen().audiooutput) {
  if (!canChooseSpeaker() || element.sinkId === deviceId) return;
  element.setSinkId(deviceId).catch(() => {
    // that output is gone: the browser keeps playing on the default one
  });
}

function useSpeaker(deviceId) {
  remember("audiooutput", deviceId);
  for (const element of $$("video, audio")) applySpeaker(element, deviceId);
}

// --- switching during a call ----------------------------------------------------------------

/** The track ``call`` (a Call or GroupCall) sends for ``kind`` ("audio" | "video"), or null. */
function sentTrack(call, kind) {
  return call?.localStream?.getTracks().find((t) => t.kind === kind && t.readyState === "live") ?? null;
}

/**
 * Send from another camera or microphone in a running call: the new track takes the old one's
 * place on its sender (same transceiver, same E2EE transform) and in ``call.localStream``.
 */
export async function switchInput(call, kind, deviceId) {
  const old = sentTrack(call, kind);
  if (!old) return false;
  const constraints =
    kind === "audio"
      ? { audio: audioConstraints(deviceId, true) }
      : { video: videoConstraints(1280, 720, deviceId, true) };
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(constraints);
  } catch {
    // Phones often open one camera at a time: let go of the old one and ask again.
    old.stop();
    stream = await navigator.mediaDevices.getUserMedia(constraints);
  }
  const track = stream.getTracks()[0];
  track.enabled = old.enabled; // muted stays muted, camera-off stays off
  const pc = call.sfu?.uplink ?? call.pc;
  for (const sender of pc?.getSenders() ?? []) {
    if (sender.track === old) await sender.replaceTrack(track);
  }
  call.localStream.removeTrack(old);
  call.localStream.addTrack(track);
  old.stop();
  remember(`${kind}input`, deviceId);
  return true;
}

// --- the settings card: choose and preview --------------------------------------------------

let preview = null; // the MediaStream shown in settings while previewing

async function refreshSettings() {
  const devices = await listDevices();
  const current = chosen();
  for (const kind of KINDS) fillSelect($(`#pick-${kind}`), devices[kind], kind, current[kind]);
  if (!canChooseSpeaker()) $("#pick-audiooutput").closest(".field").hidden = true;
}

async function startPreview() {
  stopPreview();
  const current = chosen();
  try {
    preview = await navigator.mediaDevices.getUserMedia({
      audio: audioConstraints(current.audioinput),
      video: videoConstraints(640, 480, current.videoinput),
    });
  } catch (error) {
    toast(
      error?.name === "NotAllowedError"
        ? "Callbook isn’t allowed to use your camera and microphone. Allow them in the browser’s site settings."
        : "Couldn’t open that camera or microphone.",
      "error",
    );
    return;
  }
  $("#media-preview").srcObject = preview;
  $("#media-preview").hidden = false;
  $("#preview-btn").textContent = "Stop preview";
  $("#preview-btn").setAttribute("aria-pressed", "true");
  await refreshSettings(); // with permission the devices now have names
}

function stopPreview() {
  for (const track of preview?.getTracks() ?? []) track.stop();
  preview = null;
  $("#media-preview").srcObject = null;
  $("#media-preview").hidden = true;
  $("#preview-btn").textContent = "Preview";
  $("#preview-btn").setAttribute("aria-pressed", "false");
}

function bindSettings() {
  $("#preview-btn").addEventListener("click", () => (preview ? stopPreview() : startPreview()));
  for (const kind of ["audioinput", "videoinput"]) {
    $(`#pick-${kind}`).addEventListener("change", (event) => {
      remember(kind, event.target.value);
      if (preview) startPreview();
    });
  }
  $("#pick-audiooutput").addEventListener("change", (event) => useSpeaker(event.target.value));
  const onRoute = () => {
    if (location.hash === "#settings") refreshSettings();
    else stopPreview();
  };
  window.addEventListener("hashchange", onRoute);
  onRoute();
}

// --- the in-call sheet ----------------------------------------------------------------------

let activeCall = () => null;

/** What the call on screen uses now, per kind ("" where it sends none, or for the default). */
function inUse() {
  const call = activeCall();
  return {
    audioinput: sentTrack(call, "audio")?.getSettings().deviceId ?? "",
    videoinput: sentTrack(call, "video")?.getSettings().deviceId ?? "",
    audiooutput: chosen().audiooutput || "default", // the browser's name for its default
  };
}

async function openSheet() {
  const call = activeCall();
  if (!call) return;
  const devices = await listDevices();
  const sending = inUse();
  for (const kind of KINDS) fillSelect($(`#call-pick-${kind}`), devices[kind], kind, sending[kind]);
  $("#call-pick-videoinput").closest(".field").hidden = !sentTrack(call, "video");
  if (!canChooseSpeaker()) $("#call-pick-audiooutput").closest(".field").hidden = true;
  paintToggles(devices, sending);
  $("#dialog-media").showModal();
}

function paintToggles(devices, sending) {
  const flip = $("#flip-camera");
  flip.hidden = devices.videoinput.length < 2 || !sending.videoinput;
  const speaker = $("#toggle-speaker");
  speaker.hidden = !canChooseSpeaker() || devices.audiooutput.length < 2;
  const output = devices.audiooutput.find((d) => d.deviceId === sending.audiooutput);
  const name = output?.label || "Default speaker";
  $("#toggle-speaker-label").textContent = name;
  speaker.setAttribute("aria-label", `Sound plays on ${name}. Switch to the next speaker`);
}

/** The next device of a kind after ``current``, round the list (front → back → front). */
function nextOf(list, current) {
  const at = list.findIndex((d) => d.deviceId === current);
  return list[(at + 1) % list.length];
}

async function switchFromSheet(kind, deviceId) {
  const call = activeCall();
  if (!call || !deviceId) return;
  try {
    await switchInput(call, kind, deviceId);
  } catch {
    toast(`Couldn’t switch to that ${kind === "audio" ? "microphone" : "camera"}.`, "error");
  }
  call.dispatchEvent(new CustomEvent("media")); // the preview tiles show the new track
}

function bindSheet() {
  $("#call-pick-audioinput").addEventListener("change", (e) => switchFromSheet("audio", e.target.value));
  $("#call-pick-videoinput").addEventListener("change", (e) => switchFromSheet("video", e.target.value));
  $("#call-pick-audiooutput").addEventListener("change", (e) => useSpeaker(e.target.value));
  $("#flip-camera").addEventListener("click", async () => {
    const devices = await listDevices();
    const current = sentTrack(activeCall(), "video")?.getSettings().deviceId ?? "";
    await switchFromSheet("video", nextOf(devices.videoinput, current)?.deviceId);
    $("#call-pick-videoinput").value = inUse().videoinput;
  });
  $("#toggle-speaker").addEventListener("click", async () => {
    const devices = await listDevices();
    const next = nextOf(devices.audiooutput, inUse().audiooutput);
    useSpeaker(next.deviceId);
    $("#call-pick-audiooutput").value = next.deviceId;
    paintToggles(devices, inUse());
  });
  $("#media-done").addEventListener("click", () => $("#dialog-media").close());
  for (const button of $$("[data-open-media]")) button.addEventListener("click", openSheet);
}

/** ``current()``: the call on screen (1:1 or group), whose tracks a switch replaces. */
export function bindMediaDevices(current) {
  activeCall = current;
  notePresent();
  navigator.mediaDevices?.addEventListener("devicechange", notePresent);
  bindSettings();
  bindSheet();
  // Every video or audio element plays on the chosen speaker, also tiles made later.
  for (const element of $$("video, audio")) applySpeaker(element);
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node instanceof HTMLMediaElement) applySpeaker(node);
        else if (node instanceof Element) for (const el of $$("video, audio", node)) applySpeaker(el);
      }
    }
  }).observe(document.body, { childList: true, subtree: true });
}
