// What the other person of a 1:1 call sends, as their device told ours (peer_mute, protocol
// 11.5.13): shown under their name, and their avatar instead of a black picture when their
// camera is off.

import { $ } from "./ui.js";

/** "Bob is muted", "Bob’s camera is off", both, or "" when they send everything. */
export function peerStateText(call) {
  const name = call.label;
  if (call.peerMuted && call.peerCameraOff) return `${name} is muted and their camera is off`;
  if (call.peerMuted) return `${name} is muted`;
  if (call.peerCameraOff && call.media === "video") return `${name}’s camera is off`;
  return "";
}

/** Whether their picture is worth showing: not while they turned their camera off. */
export function showsPeerVideo(call) {
  return !call.peerCameraOff;
}

export function paintPeerState(call, live) {
  const box = $("#call-peer-state");
  const text = live ? peerStateText(call) : "";
  box.textContent = text;
  box.hidden = !text;
  box.dataset.muted = String(live && call.peerMuted);
}
