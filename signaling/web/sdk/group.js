// One group call on this device (docs/protocol.md 11.15), without any DOM.
//
//   host                                  server                          each invitee
//   group_invite {handles, media, ref} →           → incoming {group: true, caller: host}
//        ← joined {call_id, participant, ref}      ← accept {call_id}
//        ← participants [...] (on every change)    → joined, participants
//   publish {sdp, bundle: true} →  ← publish_answer   (media: see sfu.js)
//        ← renegotiate (whenever who sends what changes) → renegotiate_answer
//        (a server that does not bundle: ← subscribe_offer per participant → subscribe_answer)
//        ← active_speaker {participant}
//   mute {audio_muted, video_muted, screen} →  (shown to everyone in ``participants``)
//   publish {source: "screen"} / unpublish → ; ← unpublished  (a shared screen: screenshare.js)
//   media_keys → / ← media_key, media_key_request   (end-to-end encryption: see e2ee.js)
//   hangup → ended {reason: "hangup"}
//
// Events: ``change`` (state, roster, speaker, flags), ``media`` (a stream came or went),
// ``ended`` (detail: {reason, error}), ``problem`` (detail: {reason, error}). Joining,
// declining, leaving, mute and the end are shared with 1:1 calls (session.js).

import { CallE2ee } from "./e2ee.js";
import { iceServersOf } from "./ice.js";
import { Invitees } from "./invitees.js";
import { callKeys } from "./keystore.js";
import { sfuPath } from "./screenshare.js";
import { Session } from "./session.js";
import { SfuMedia } from "./sfu.js";

let refCounter = 0;

function nextRef() {
  refCounter += 1;
  return `g${Date.now().toString(36)}${refCounter}`;
}

/** Ended reasons of an invitation that never became a call on this device. */
const NOT_JOINED = new Set(["missed", "answered_elsewhere", "declined_elsewhere", "cancelled"]);

export class GroupCall extends Session {
  /** ``host``: the person card of the host (incoming; set from ``joined`` otherwise); the rest
   * as for Session (session.js): direction "outgoing" (we host) | "incoming" (we are invited). */
  constructor({ host = null, ...options }) {
    super(options);
    this.host = host;
    this.ref = this.direction === "outgoing" ? nextRef() : null;
    // starting → joined → ended (outgoing); incoming → joining → joined → ended (incoming)
    this.state = this.direction === "outgoing" ? "starting" : "incoming";
    this.me = null; // our participant id
    this.participants = []; // as the server last listed them
    this.invitees = new Invitees(); // whom we (the host) rang, and where each stands
    this.streams = new Map(); // participant id → MediaStream of what we receive from them
    this.screens = new Map(); // participant id → MediaStream of the screen they share
    this.speaker = null; // participant id of the active speaker
    this.sfu = null;
    this.e2ee = null; // CallE2ee once joined: keys, safety number, frame encryption
    this.joinedAt = 0;
  }

  get answeringState() {
    return "joining";
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
  accept() {
    return this._accept(this.media === "video");
  }

  /** Host only: ring more people into the running call. */
  add(handles) {
    if (this.state !== "joined" || !handles.length) return;
    if (this.line.send({ type: "group_add", call_id: this.callId, handles })) {
      this.invitees.ring(handles, Date.now());
      this._emit();
    }
  }

  /** Share the screen (beside the camera), or stop sharing. */
  async toggleScreen() {
    if (this.state === "joined") await this.screen.toggle();
  }

  /** A screen goes through the SFU on a connection of its own, once ours is up. */
  _screenPath() {
    return this.sfu?.uplink ? sfuPath(this.sfu) : null;
  }

  _tellMute() {
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

  /** Our session resumed: the SFU's connection never depended on the WebSocket (the server
   * repeats an offer we may not have answered). */
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
      case "renegotiate":
        await this.sfu?.onRenegotiate(message);
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
        this._onError(message, this.state === "starting");
        return;
      default:
    }
  }

  async _onJoined(message) {
    if (!this._named(message.call_id)) return;
    this.me = message.participant;
    this.media = message.media;
    if (message.host) this.host = message.host;
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
      bundle: this.bundle,
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
    if (this.muted || this.cameraOff) this._tellMute();
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

  // --- media ---------------------------------------------------------------------------------

  _getMedia(wantVideo = this.media === "video") {
    return super._getMedia(wantVideo, 640, 480);
  }

  _iceServers() {
    return iceServersOf(this.api);
  }

  // --- bookkeeping ---------------------------------------------------------------------------

  /** Whether this invitation ended before we ever took part (a missed or answered ring). */
  get neverJoined() {
    return !this.joinedAt && NOT_JOINED.has(this.endReason);
  }

  _release() {
    this.sfu?.close();
    this.e2ee?.close();
    this.streams.clear();
    this.screens.clear();
  }
}
