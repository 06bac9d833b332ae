// What a 1:1 call (call.js) and a group call (group.js) share on this device: answering with the
// microphone (and camera) first, declining, hanging up — also before the server named the call —
// mute and camera toggles, the ``receive`` queue that handles server messages strictly in order,
// and the end of the call (timers, local tracks, screen share).
//
// Events: ``change`` (state or flags), ``media`` (a stream came or went), ``ended`` (detail:
// {reason, error}), ``problem`` (detail: {reason, error}: something failed, the call goes on).

import { ScreenShare } from "./screenshare.js";

/** Errors that mean "this call is over as far as the server knows" (docs/protocol.md 11.13). */
export const GONE_CODES = new Set(["unknown_call", "not_ringing", "call_ended", "not_in_call"]);

export class Session extends EventTarget {
  /**
   * ``api``/``line``: the REST client and call WebSocket; ``direction``: "outgoing" |
   * "incoming"; ``media``: "audio" | "video"; ``constraints``: {audio(), video(width, height)}
   * giving getUserMedia constraints (the devices a person chose); ``bundle``: media through the
   * SFU on one connection (sfu.js; false: one receiving connection per sender, the old way).
   */
  constructor({ api, line, direction, media, callId = null, constraints = {}, bundle = true }) {
    super();
    this.api = api;
    this.line = line;
    this.direction = direction;
    this.media = media;
    this.callId = callId;
    this.localStream = null;
    this.sendsVideo = false;
    this.muted = false;
    this.cameraOff = false;
    this.endReason = null;
    this.endError = null;
    this.endedBySelf = false;
    this.endedAt = 0;
    this._constraints = constraints;
    this.bundle = bundle;
    this._chain = Promise.resolve();
    this._hangupWhenNamed = false; // hung up before the server named the call
    this._timers = new Map();
    // Our shared screen: a second video track beside the camera, sent the way ``_screenPath``
    // says (screenshare.js).
    this.screen = new ScreenShare(() => this._screenPath());
    this.screen.addEventListener("change", () => this._screenChanged());
  }

  /** The state an incoming call is in between "answer" and the server's answer. */
  get answeringState() {
    return "answering";
  }

  get active() {
    return this.state !== "ended";
  }

  /** Ringing on this device, answered or not yet. */
  get ringingHere() {
    return this.direction === "incoming" && (this.state === "incoming" || this.state === this.answeringState);
  }

  /** Answer: microphone (and camera) first, then ``accept``; a refusal leaves it ringing. */
  async _accept(withVideo) {
    if (this.state !== "incoming") return;
    this.state = this.answeringState;
    this._emit();
    try {
      await this._getMedia(withVideo);
    } catch (error) {
      this.state = "incoming";
      this._emit();
      this._problem("media", error);
      return;
    }
    if (!this.active) {
      this._stopLocal();
      return;
    }
    this.line.send({ type: "accept", call_id: this.callId });
  }

  /** Decline a ringing call (``busy`` tells the caller you are on another call). */
  decline(busy = false) {
    if (!this.active) return;
    this.line.send({ type: "decline", call_id: this.callId, busy });
    this._finish("declined_by_me");
  }

  /** Hang up (or leave), cancel a call still ringing out, or decline one ringing here. */
  hangup() {
    if (!this.active) return;
    if (this.ringingHere) {
      this.decline(false);
      return;
    }
    if (this.callId) this.line.send({ type: "hangup", call_id: this.callId });
    else this._hangupWhenNamed = true; // sent as soon as the server names the call
    const [reason, self] = this._hangupEnd();
    this._finish(reason, { self });
  }

  /** How a hang-up here ends the call: [reason, ended by this side]. */
  _hangupEnd() {
    return ["hangup", true];
  }

  /** The server named the call: false (and the call is left) if we hung up meanwhile. */
  _named(callId) {
    this.callId = callId;
    if (!this._hangupWhenNamed) return true;
    this.line.send({ type: "hangup", call_id: callId });
    return false;
  }

  toggleMute() {
    this.muted = !this.muted;
    for (const track of this.localStream?.getAudioTracks() ?? []) track.enabled = !this.muted;
    this._tellMute();
    this._emit();
  }

  toggleCamera() {
    this.cameraOff = !this.cameraOff;
    for (const track of this.localStream?.getVideoTracks() ?? []) track.enabled = !this.cameraOff;
    this._tellMute();
    this._emit();
  }

  /** Share the screen beside the camera, or stop sharing. */
  async toggleScreen() {
    await this.screen.toggle();
  }

  /** Tell the other side(s) what we send; each kind of call knows when and how. */
  _tellMute() {}

  /** How a screen would be sent now (screenshare.js's ``sfuPath``/``peerPath``), or null. */
  _screenPath() {
    return null;
  }

  _screenChanged() {
    this._tellMute();
    this._emit();
  }

  /** Our own WebSocket came back as a new session: the server ended our calls. */
  lost() {
    this._finish("peer_lost", { self: true });
  }

  // --- from the server ---------------------------------------------------------------------

  /** A server message for this call; handled strictly in order. */
  receive(message) {
    this._chain = this._chain
      .then(() => this._receive(message))
      .catch((error) => this._failed(message, error));
  }

  _failed(message, error) {
    console.error("call: could not handle", message.type, error);
    this._problem("media", error);
  }

  /** An ``error`` about this call: over if the server no longer knows it; fatal while placing. */
  _onError(error, placing) {
    if (error.code === "stale_offer") return; // a repeated answer crossed the next offer: harmless
    if (GONE_CODES.has(error.code)) {
      this._finish("gone");
      return;
    }
    if (placing) {
      this._finish("error", { error });
      return;
    }
    this._problem("error", error);
  }

  _problem(reason, error) {
    this.dispatchEvent(new CustomEvent("problem", { detail: { reason, error } }));
  }

  // --- media ---------------------------------------------------------------------------------

  /** The microphone, and the camera if wanted and there is one (audio only without). */
  async _getMedia(wantVideo, width, height) {
    const audio = this._constraints.audio ? this._constraints.audio() : true;
    let stream = null;
    if (wantVideo) {
      const video = this._constraints.video
        ? this._constraints.video(width, height)
        : { width: { ideal: width }, height: { ideal: height } };
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio, video });
      } catch (error) {
        if (error && error.name === "NotAllowedError") throw error;
        stream = null; // no camera: carry on with audio only
      }
    }
    if (!stream) stream = await navigator.mediaDevices.getUserMedia({ audio, video: false });
    this.localStream = stream;
    this.sendsVideo = stream.getVideoTracks().length > 0;
    this._emitMedia();
  }

  _stopLocal() {
    for (const track of this.localStream?.getTracks() ?? []) track.stop();
  }

  // --- bookkeeping ---------------------------------------------------------------------------

  _finish(reason, { error = null, self = false } = {}) {
    if (this.state === "ended") return;
    this.state = "ended";
    this.endedAt = Date.now();
    this.endReason = reason;
    this.endError = error;
    this.endedBySelf = self;
    for (const key of [...this._timers.keys()]) this._clearTimer(key);
    this.screen.stop();
    this._stopLocal();
    this._release();
    this.dispatchEvent(new CustomEvent("ended", { detail: { reason, error } }));
    this._emit();
  }

  /** Close this call's connections (each kind of call has its own). */
  _release() {}

  _timer(key, ms, action) {
    this._clearTimer(key);
    this._timers.set(
      key,
      setTimeout(() => {
        this._timers.delete(key);
        action();
      }, ms),
    );
  }

  _clearTimer(key) {
    clearTimeout(this._timers.get(key));
    this._timers.delete(key);
  }

  _emit() {
    this.dispatchEvent(new CustomEvent("change"));
  }

  _emitMedia() {
    this.dispatchEvent(new CustomEvent("media"));
  }
}
