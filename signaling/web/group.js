// One group call on this device (docs/protocol.md 11.15), without any DOM.
//
//   host                                  server                          each invitee
//   group_invite {handles, media, ref} →           → incoming {group: true, caller: host}
//        ← joined {call_id, participant, ref}      ← accept {call_id}
//        ← participants [...] (on every change)    → joined, participants
//   publish {sdp} →  ← publish_answer               (media: see sfu.js)
//        ← subscribe_offer (one per other participant) → subscribe_answer
//        ← active_speaker {participant}
//   mute {audio_muted, video_muted, screen} →  (shown to everyone in ``participants``)
//   publish {source: "screen"} / unpublish → ; ← unpublished  (a shared screen: screenshare.js)
//   media_keys → / ← media_key, media_key_request   (end-to-end encryption: see e2ee.js)
//   hangup → ended {reason: "hangup"}
//
// Events: ``change`` (state, roster, speaker, flags), ``media`` (a stream came or went),
// ``ended`` (detail: {reason, error}), ``problem`` (detail: {reason, error}).

import { CallE2ee } from "./e2ee.js";
import { callKeys } from "./keystore.js";
import { Invitees } from "./roster.js";
import { ScreenShare, sfuPath } from "./screenshare.js";
import { audioConstraints, videoConstraints } from "./mediadevices.js";
import { SfuMedia } from "./sfu.js";

let refCounter = 0;

function nextRef() {
  refCounter += 1;
  return `g${Date.now().toString(36)}${refCounter}`;
}

/** Ended reasons of an invitation that never became a call on this device. */
const NOT_JOINED = new Set(["missed", "answered_elsewhere", "declined_elsewhere", "cancelled"]);

export class GroupCall extends EventTarget {
  constructor({ api, line, direction, media, host = null, callId = null }) {
    super();
    this.api = api;
    this.line = line;
    this.direction = direction; // "outgoing" (we host) | "incoming" (we are invited)
    this.media = media; // "audio" | "video"
    this.host = host; // person card of the host (incoming; set from ``joined`` otherwise)
    this.callId = callId;
    this.ref = direction === "outgoing" ? nextRef() : null;
    // starting → joined → ended (outgoing); incoming → joining → joined → ended (incoming)
    this.state = direction === "outgoing" ? "starting" : "incoming";
    this.me = null; // our participant id
    this.participants = []; // as the server last listed them
    this.invitees = new Invitees(); // whom we (the host) rang, and where each stands
    this.streams = new Map(); // participant id → MediaStream of what we receive from them
    this.screens = new Map(); // participant id → MediaStream of the screen they share
    this.speaker = null; // participant id of the active speaker
    this.localStream = null;
    this.sendsVideo = false;
    this.muted = false;
    this.cameraOff = false;
    this.sfu = null;
    // Our shared screen: a second track through the SFU, beside the camera (screenshare.js).
    this.screen = new ScreenShare(() => (this.sfu?.uplink ? sfuPath(this.sfu) : null));
    this.screen.addEventListener("change", () => {
      this._sendMute();
      this._emit();
    });
    this.e2ee = null; // CallE2ee once joined: keys, safety number, frame encryption
    this.endReason = null;
    this.endError = null;
    this.joinedAt = 0;
    this._chain = Promise.resolve();
  }

  get active() {
    return this.state !== "ended";
  }

  get hostLabel() {
    const p = this.host || {};
    return p.display_name || (p.handle ? `@${p.handle}` : "Someone");
  }

  /** Host a group call: microphone (and camera) first, then the invite. */
  async start(handles) {
    try {
      await this._getMedia();
    } catch (error) {
      this._finish("media", { error });
      return;
    }
    if (!this.active) return;
    this.invitees.ring(handles, Date.now());
    const invite = { type: "group_invite", handles, media: this.media, ref: this.ref };
    if (!this.line.send(invite)) this._finish("error", { error: { code: "unreachable" } });
  }

  /** Join a group call we were invited to. */
  async accept() {
    if (this.state !== "incoming") return;
    this.state = "joining";
    this._emit();
    try {
      await this._getMedia();
    } catch (error) {
      this.state = "incoming";
      this._emit();
      this.dispatchEvent(new CustomEvent("problem", { detail: { reason: "media", error } }));
      return;
    }
    if (!this.active) {
      this._stopLocal();
      return;
    }
    this.line.send({ type: "accept", call_id: this.callId });
  }

  /** Host only: ring more people into the running call. */
  add(handles) {
    if (this.state !== "joined" || !handles.length) return;
    if (this.line.send({ type: "group_add", call_id: this.callId, handles })) {
      this.invitees.ring(handles, Date.now());
      this._emit();
    }
  }

  decline(busy = false) {
    if (!this.active) return;
    this.line.send({ type: "decline", call_id: this.callId, busy });
    this._finish("declined_by_me");
  }

  /** Leave the call (or decline it while it rings). */
  hangup() {
    if (!this.active) return;
    if (this.state === "incoming" || this.state === "joining") {
      this.decline(false);
      return;
    }
    if (this.callId) this.line.send({ type: "hangup", call_id: this.callId });
    else this._leaveWhenNamed = true;
    this._finish("hangup", { self: true });
  }

  toggleMute() {
    this.muted = !this.muted;
    for (const track of this.localStream?.getAudioTracks() ?? []) track.enabled = !this.muted;
    this._sendMute();
    this._emit();
  }

  toggleCamera() {
    this.cameraOff = !this.cameraOff;
    for (const track of this.localStream?.getVideoTracks() ?? []) track.enabled = !this.cameraOff;
    this._sendMute();
    this._emit();
  }

  /** Share the screen (beside the camera), or stop sharing. */
  async toggleScreen() {
    if (this.state === "joined") await this.screen.toggle();
  }

  _sendMute() {
    if (this.state !== "joined") return;
    const screen = this.screen.sharing;
    this.line.send({
      type: "mute",
      call_id: this.callId,
      audio_muted: this.muted,
      video_muted: this.cameraOff || !this.sendsVideo,
      screen,
    });
  }

  /** Our own WebSocket came back as a new session: the server took us out of the call. */
  lost() {
    this._finish("peer_lost", { self: true });
  }

  /** Our session resumed: the SFU legs never depended on the WebSocket. */
  resumed() {}

  /** Milliseconds since we joined (0 before). */
  duration() {
    return this.joinedAt ? Date.now() - this.joinedAt : 0;
  }

  /** The person card and flags of a participant, or null. */
  participant(id) {
    return this.participants.find((p) => p.participant === id) || null;
  }

  // --- from the server ---------------------------------------------------------------------

  receive(message) {
    this._chain = this._chain
      .then(() => this._receive(message))
      .catch((error) => {
        console.error("group: could not handle", message.type, error);
        this.dispatchEvent(new CustomEvent("problem", { detail: { reason: "media", error } }));
      });
  }

  async _receive(message) {
    if (!this.active) return;
    switch (message.type) {
      case "joined":
        await this._onJoined(message);
        return;
      case "participants":
        this._onParticipants(message.participants);
        this.e2ee?.receive(message);
        return;
      case "media_key":
      case "media_key_request":
        this.e2ee?.receive(message);
        return;
      case "active_speaker":
        this.speaker = message.participant ?? null;
        this._emit();
        return;
      case "publish_answer":
        await this.sfu?.onPublishAnswer(message);
        return;
      case "subscribe_offer":
        await this.sfu?.onSubscribeOffer(message);
        return;
      case "unpublished":
        this.sfu?.onUnpublished(message);
        return;
      case "ended":
        this._finish(message.reason);
        return;
      case "error":
        this._onError(message);
        return;
      default:
    }
  }

  async _onJoined(message) {
    this.callId = message.call_id;
    this.me = message.participant;
    this.media = message.media;
    if (message.host) this.host = message.host;
    if (this._leaveWhenNamed) {
      this.line.send({ type: "hangup", call_id: this.callId });
      return;
    }
    this.state = "joined";
    this.joinedAt = Date.now();
    this.invitees.started(message.ring_timeout_s, this.joinedAt);
    this.e2ee = new CallE2ee({
      line: this.line,
      callId: this.callId,
      me: this.me,
      identity: await callKeys(this.api.identity),
    });
    this.e2ee.addEventListener("change", () => this._emit());
    this._emit();
    if (!this.localStream) await this._getMedia();
    const turn = await this._iceServers();
    if (!this.active) return;
    this.sfu = new SfuMedia({
      line: this.line,
      callId: this.callId,
      e2ee: this.e2ee,
      iceServers: turn,
    });
    this.sfu.addEventListener("track", (event) => {
      const { participant, stream, source } = event.detail;
      (source === "screen" ? this.screens : this.streams).set(participant, stream);
      this._emitMedia();
    });
    this.sfu.addEventListener("closed", (event) => {
      const { participant, source } = event.detail;
      (source === "screen" ? this.screens : this.streams).delete(participant);
      this._emitMedia();
    });
    await this.sfu.publish(this.localStream);
    if (this.muted || this.cameraOff) this._sendMute();
    this._emit(); // the screen can be shared now
  }

  _onParticipants(list) {
    this.participants = list;
    this.invitees.update(list);
    const present = new Set(list.map((p) => p.participant));
    this.sfu?.keepOnly(present);
    for (const id of [...this.streams.keys()]) if (!present.has(id)) this.streams.delete(id);
    for (const id of [...this.screens.keys()]) if (!present.has(id)) this.screens.delete(id);
    if (this.speaker && !present.has(this.speaker)) this.speaker = null;
    this._emit();
  }

  _onError(error) {
    if (["unknown_call", "not_ringing", "call_ended", "not_in_call"].includes(error.code)) {
      this._finish("gone");
      return;
    }
    if (this.state === "starting") {
      this._finish("error", { error });
      return;
    }
    this.dispatchEvent(new CustomEvent("problem", { detail: { reason: "error", error } }));
  }

  // --- media ---------------------------------------------------------------------------------

  async _getMedia() {
    const audio = audioConstraints(); // the devices chosen in settings (mediadevices.js)
    let stream = null;
    if (this.media === "video") {
      try {
        stream = await navigator.mediaDevices.getUserMedia({
          audio,
          video: videoConstraints(640, 480),
        });
      } catch (error) {
        if (error && error.name === "NotAllowedError") throw error;
      }
    }
    if (!stream) stream = await navigator.mediaDevices.getUserMedia({ audio, video: false });
    this.localStream = stream;
    this.sendsVideo = stream.getVideoTracks().length > 0;
    this._emitMedia();
  }

  async _iceServers() {
    try {
      const turn = await this.api.turn();
      return (turn.ice_servers || []).map((server) => {
        const entry = { urls: server.urls };
        if (server.username) entry.username = server.username;
        if (server.credential) entry.credential = server.credential;
        return entry;
      });
    } catch {
      return [];
    }
  }

  _stopLocal() {
    for (const track of this.localStream?.getTracks() ?? []) track.stop();
  }

  // --- bookkeeping ---------------------------------------------------------------------------

  /** Whether this invitation ended before we ever took part (a missed or answered ring). */
  get neverJoined() {
    return !this.joinedAt && NOT_JOINED.has(this.endReason);
  }

  _finish(reason, { error = null, self = false } = {}) {
    if (this.state === "ended") return;
    this.state = "ended";
    this.endReason = reason;
    this.endError = error;
    this.endedBySelf = self;
    this._stopLocal();
    this.screen.stop();
    this.sfu?.close();
    this.e2ee?.close();
    this.streams.clear();
    this.screens.clear();
    this.dispatchEvent(new CustomEvent("ended", { detail: { reason, error } }));
    this._emit();
  }

  _emit() {
    this.dispatchEvent(new CustomEvent("change"));
  }

  _emitMedia() {
    this.dispatchEvent(new CustomEvent("media"));
  }
}
