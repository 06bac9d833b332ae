// Screen sharing in a call (1:1 or group): the shared screen takes the camera's place on the
// call's video sender, so it needs no renegotiation and, through the SFU, goes through the same
// end-to-end encryption transform (installed on the sender, not the track). Stopping — from the
// call's button or the browser's own "Stop sharing" — puts the camera back.
//
// Events: ``change`` (sharing started or stopped).

import { toast } from "./ui.js";

export const SCREEN_FAILED = "Your screen could not be shared.";

export class ScreenShare extends EventTarget {
  /** ``sender()``: the call's video RTCRtpSender now, or null while there is none. */
  constructor(sender) {
    super();
    this.sender = sender;
    this.track = null; // the screen's track while sharing
    this.camera = null; // what the sender carried before
  }

  get sharing() {
    return this.track !== null;
  }

  /** Whether this call can share now (it sends video and the browser can capture). */
  get possible() {
    return Boolean(this.sender() && navigator.mediaDevices?.getDisplayMedia);
  }

  async toggle() {
    if (this.sharing) await this.stop();
    else await this.start();
  }

  /** Ask for a screen and send it; a refusal (the person cancels the picker) changes nothing. */
  async start() {
    const sender = this.sender();
    if (!sender || this.sharing) return;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
    } catch (error) {
      if (error?.name === "NotAllowedError" || error?.name === "AbortError") return;
      throw error;
    }
    const [track] = stream.getVideoTracks();
    track.contentHint = "detail"; // text stays sharp: keep resolution, drop frames instead
    this.camera = sender.track;
    this.track = track;
    track.addEventListener("ended", () => this.stop());
    await sender.replaceTrack(track);
    this.dispatchEvent(new CustomEvent("change"));
  }

  async stop() {
    const track = this.track;
    if (!track) return;
    this.track = null;
    track.stop();
    const sender = this.sender();
    if (sender) await sender.replaceTrack(this.camera).catch(() => {});
    this.camera = null;
    this.dispatchEvent(new CustomEvent("change"));
  }
}

/** The video sender of a connection (whatever track it carries now), or null. */
export function videoSender(pc) {
  if (!pc || pc.connectionState === "closed") return null;
  const transceiver = pc.getTransceivers().find((t) => t.receiver.track?.kind === "video");
  return transceiver?.sender ?? null;
}

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
