// Screen sharing on the call screens: the share button and the 1:1 call's stage. What sharing
// does on the wire — a second video track, through the SFU or peer to peer — is the SDK's
// (sdk/screenshare.js).

import { showsVideo } from "./sdk/screenshare.js";
import { toast } from "./ui.js";

export const SCREEN_FAILED = "Your screen could not be shared.";

/** The 1:1 call screen's share button: wired once, then ``paintScreenButton`` on each render. */
export function bindScreenButton(button, currentCall) {
  button.addEventListener("click", () => {
    currentCall()?.screen.toggle().catch(() => toast(SCREEN_FAILED, "error"));
  });
}

export function paintScreenButton(button, label, call) {
  const sharing = call.screen.sharing;
  button.closest(".control").hidden = !call.screen.possible;
  button.setAttribute("aria-pressed", String(sharing));
  label.textContent = sharing ? "Stop sharing" : "Share";
}

/**
 * The 1:1 call's stage: the other side's screen large (``#remote-screen``) and their camera
 * small, while they share; their camera large otherwise. ``live``: the call has media now.
 */
export function paintCallStage(call, live) {
  const screen = document.getElementById("screen-call");
  const video = document.getElementById("remote-screen");
  if (!screen || !video) return;
  const shown = live && showsVideo(call.screenStream);
  if (video.srcObject !== call.screenStream) video.srcObject = call.screenStream;
  if (shown) video.play().catch(() => {});
  screen.dataset.screen = shown ? "on" : "off";
  video.hidden = !shown;
  video.setAttribute("aria-label", shown ? `${call.label}'s shared screen` : "");
}
