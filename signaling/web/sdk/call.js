// One 1:1 call: the call protocol of signaling/protocol/messages.py driving an RTCPeerConnection.
//
//   caller                         server                        callee (every device)
//   invite {handle, media, ref} →           → incoming {call_id, caller, media, busy}
//        ← ringing {call_id, ref}           ← accept {call_id}
//        ← accepted {role: caller}          → accepted {role: callee}
//   sdp {kind: offer}           →           → sdp {kind: offer}
//        ← sdp {kind: answer}               ← sdp {kind: answer}
//   ice {candidate} ⇄ (trickled both ways; an empty candidate ends gathering)
//   hangup / decline → ended {reason} to the other side(s)
//
// Only the caller makes offers (also for ICE restarts), so the two sides never offer at once.
// Works with any peer that follows docs/protocol.md: trickle or not, audio-only or video.
//
// Events: ``change`` (state, peer, flags), ``ended`` (detail: {reason, error}), ``media``
// (local or remote stream changed), ``problem``. Answering, declining, hanging up, mute and the
// end are shared with group calls (session.js).
//
// A call the server relays through its SFU (``accepted`` with ``sfu: true``: hide-my-IP without
// a TURN relay, 11.9) has no peer-to-peer sdp/ice: both sides ``publish`` and receive the other
// on that same connection (``renegotiate``; a server that does not bundle: one
// ``subscribe_offer``), as in a group call (sfu.js). Its frames are end-to-end
// encrypted as a group call's are (e2ee.js): ``accepted`` names our participant and lists both
// devices with their keys (``participants``), which never change during the call.

import { CallE2ee } from "./e2ee.js";
import { armFallback, askForRelay, onRelayed } from "./fallback.js";
import { hasTurn } from "./ice.js";
import { callKeys } from "./keystore.js";
import { sendQuality } from "./quality.js";
import {
  dropScreenTrack,
  peerPath,
  sfuPath,
  showScreenTrack,
  takeScreenTrack,
} from "./screenshare.js";
import { Session } from "./session.js";
import { SfuMedia } from "./sfu.js";

const CONNECT_TIMEOUT_MS = 30_000;
const RECOVER_WITHIN_MS = 25_000;
const RESTART_AFTER_DISCONNECT_MS = 4_000;
const MAX_RESTARTS = 3;
// How long a description waits for ICE gathering, so that it carries the candidates itself
// (peers that do not trickle still connect); later candidates are trickled.
const GATHER_WAIT_MS = 400;

let refCounter = 0;

/** foundation, component, transport, priority, address, port: what identifies a candidate. */
function candidateKey(candidate) {
  return candidate.trim().split(/\s+/).slice(0, 6).join(" ").toLowerCase();
}

/** The session id of a description's o= line: a new one means a new peer connection. */
function sessionOf(sdp) {
  const match = /^o=\S+ (\S+)/m.exec(sdp || "");
  return match ? match[1] : null;
}

function nextRef() {
  refCounter += 1;
  return `r${Date.now().toString(36)}${refCounter}`;
}

// How often a connected call reports its media quality (the server keeps at most one per 2 s).
const QUALITY_INTERVAL_MS = 5000;

export class Call extends Session {
  /** ``peer``: {account_id, handle, display_name, label}; ``busy``: rings while this device is
   * in another call; the rest as for Session (session.js). */
  constructor({ peer, busy = false, ...options }) {
    super(options);
    // direction: "outgoing" | "incoming"; media: "audio" | "video": what the call was placed as
    this.peer = peer;
    this.busy = busy; // incoming while this device is in another call ("call waiting")
    // Echoed in ``ringing`` (or an ``error``) so the answer finds this call before it has an id.
    this.ref = this.direction === "outgoing" ? nextRef() : null;
    this.state = this.direction === "outgoing" ? "dialing" : "incoming";
    this.role = this.direction === "outgoing" ? "caller" : "callee";
    this.relayOnly = false;
    this.iceServers = [];
    this.pc = null;
    this.sfu = null; // SfuMedia when the server relays this call through its SFU
    this.e2ee = null; // its CallE2ee
    this.remoteStream = new MediaStream();
    this.screenStream = new MediaStream(); // the other side's shared screen (screenshare.js)
    this.peerSharing = false; // the other device said it shares its screen (peer_mute)
    this.peerReconnecting = false;
    this.peerMuted = false; // what the other device said it sends (peer_mute)
    this.peerCameraOff = false;
    this.connectedAt = 0;
    this._pendingIce = [];
    this._localIce = []; // our candidates, held until the description they belong to is sent
    this._localReady = false;
    this._tracksAdded = false;
    this._restarts = 0;
    this._turn = null;
    this._accepted = null; // what ``accepted`` said, for a rejoin after a reload
    this._rejoining = false; // this page took the call over after a reload: it offers afresh
    this._remoteSession = null; // the o= session id of the other side's description
  }

  get label() {
    const p = this.peer || {};
    return p.label || p.display_name || (p.handle ? `@${p.handle}` : "Someone");
  }

  /** Place the call: microphone (and camera) first, then the invite. */
  async dial(target) {
    this._turn = this._fetchTurn();
    try {
      await this._getMedia(this.media === "video");
    } catch (error) {
      this._finish("media", { error });
      return;
    }
    if (!this.active) return;
    const invite = { type: "invite", media: this.media, ref: this.ref };
    if (target.account_id) invite.account_id = target.account_id;
    else invite.handle = target.handle;
    if (!this.line.send(invite)) {
      this._finish("error", { error: { code: "unreachable" } });
      return;
    }
    this._emit();
  }

  /** Answer an incoming call, with the camera on or off. */
  async answer(withVideo) {
    if (this.state !== "incoming") return;
    this._turn = this._fetchTurn();
    await this._accept(withVideo && this.media === "video");
  }

  /** A hang-up before the other side answered cancels the call. */
  _hangupEnd() {
    const ringing = this.state === "dialing" || this.state === "ringing";
    return [ringing ? "cancelled" : "hangup", false];
  }

  /** What the tab's next page needs to take this call over after a reload (resume.js). */
  snapshot() {
    return {
      call_id: this.callId,
      direction: this.direction,
      media: this.media,
      peer: this.peer,
      target: this.target ?? null,
      accepted: this._accepted,
      connected_at: this.connectedAt,
      sends_video: this.sendsVideo,
      muted: this.muted,
      camera_off: this.cameraOff,
    };
  }

  /** A call from ``snapshot()`` whose session the server resumed: set its media up again.
   * The other side gets a new offer (a new peer connection, 11.5.10) and follows it. */
  static rejoin({ kept, ...options }) {
    const call = new Call({
      ...options,
      direction: kept.direction,
      media: kept.media,
      peer: kept.peer,
      callId: kept.call_id,
    });
    call.ref = null;
    call.target = kept.target;
    call.connectedAt = kept.connected_at;
    call.state = "reconnecting";
    call._rejoining = true;
    call._chain = call._chain
      .then(async () => {
        call._turn = call._fetchTurn();
        await call._getMedia(kept.sends_video);
        if (kept.muted) call.toggleMute();
        if (kept.camera_off) call.toggleCamera();
        await call._onAccepted(kept.accepted);
      })
      .catch((error) => {
        call.line.send({ type: "hangup", call_id: call.callId });
        call._finish("failed", { error });
      });
    return call;
  }

  /** Tell the other device what we send (protocol 11.5.13), once the call is connected. */
  _tellMute() {
    if (!this.active || !this._accepted) return;
    this.line.send({
      type: "mute",
      call_id: this.callId,
      audio_muted: this.muted,
      video_muted: this.cameraOff,
      screen: this.screen.sharing,
    });
  }

  /** How a screen goes to the other side now: through the SFU or on our own connection. */
  _screenPath() {
    if (!this.sendsVideo || this.state !== "connected") return null;
    if (this.sfu) return this.sfu.uplink ? sfuPath(this.sfu) : null;
    return this.pc ? peerPath(this) : null;
  }

  /** Offer again in the connected call: a screen was added or removed (screenshare.js). */
  renegotiate() {
    const offer = () => this._offer(false);
    this._chain = this._chain.then(offer, offer);
    return this._chain;
  }

  /** Milliseconds since media connected (0 before). */
  duration() {
    return this.connectedAt ? Date.now() - this.connectedAt : 0;
  }

  // --- from the server ---------------------------------------------------------------------

  /** A message this call could not handle: its media can't be set up, so it ends. */
  _failed(message, error) {
    console.error("call: could not handle", message.type, error);
    if (this.active && this.callId) {
      this.line.send({ type: "hangup", call_id: this.callId });
      this._finish("failed", { error });
    }
  }

  async _receive(message) {
    if (!this.active && message.type !== "ended") return;
    switch (message.type) {
      case "ringing":
        if (!this._named(message.call_id)) return;
        if (this.state === "dialing") this.state = "ringing";
        this._emit();
        return;
      case "accepted":
        await this._onAccepted(message);
        return;
      case "sdp":
        await this._onDescription(message);
        return;
      case "relayed":
        await onRelayed(this, message);
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
      case "media_key":
      case "media_key_request":
        this.e2ee?.receive(message);
        return;
      case "ice":
        await this._onIce(message);
        return;
      case "peer_reconnecting":
        this.peerReconnecting = true;
        this._emit();
        return;
      case "peer_mute":
        this.peerMuted = message.audio_muted;
        this.peerCameraOff = message.video_muted;
        this.peerSharing = Boolean(message.screen);
        this._emit();
        return;
      case "peer_resumed":
        this.peerReconnecting = false;
        if (this.muted || this.cameraOff) this._tellMute(); // a reloaded page knows nothing
        this._emit();
        this._restartIfBroken();
        return;
      case "ended":
        this._finish(message.reason);
        return;
      case "error":
        this._onError(message, this.state === "dialing");
        return;
      default:
    }
  }

  /** Our own WebSocket came back with the session resumed: media may need an ICE restart. */
  resumed() {
    this._restartIfBroken();
  }

  async _onAccepted(message) {
    this._accepted = {
      role: message.role,
      relay_only: message.relay_only,
      peer: message.peer,
      sfu: message.sfu,
      participant: message.participant,
      participants: message.participants,
    };
    this.role = message.role;
    this.relayOnly = Boolean(message.relay_only);
    if (this.muted || this.cameraOff) this._tellMute();
    if (message.peer) this.peer = { ...message.peer, label: this.peer?.label };
    if (!this._rejoining) this.state = "connecting";
    this._emit();
    const turn = await (this._turn || this._fetchTurn());
    if (!this.active) return;
    this.iceServers = (turn.ice_servers || []).map((server) => {
      const entry = { urls: server.urls };
      if (server.username) entry.username = server.username;
      if (server.credential) entry.credential = server.credential;
      return entry;
    });
    if (message.sfu) {
      await this._throughSfu(message);
      return;
    }
    if (this.relayOnly && !hasTurn({ ice_servers: this.iceServers })) {
      // Relay-only with no relay: not a single candidate could ever be gathered.
      this._giveUp();
      return;
    }
    this._createPeerConnection();
    this._timer("connect", CONNECT_TIMEOUT_MS, () => this._giveUp());
    armFallback(this);
    if (this._offers()) {
      this._addLocalTracks();
      await this._offer(false);
    }
  }

  /** The caller offers; so does a page that took the call over after a reload (11.5.9). */
  _offers() {
    return this.role === "caller" || this._rejoining;
  }

  /** Media through the SFU: publish ours, take the other's as the SFU offers it. */
  async _throughSfu(accepted) {
    this.e2ee = new CallE2ee({
      line: this.line,
      callId: this.callId,
      me: accepted.participant,
      identity: await callKeys(this.api.identity),
    });
    this.e2ee.addEventListener("change", () => this._emit());
    this.e2ee.receive({ type: "participants", participants: accepted.participants ?? [] });
    // The SFU is the relay: it sees our address, the other device only the SFU's.
    const sfu = new SfuMedia({
      line: this.line,
      callId: this.callId,
      e2ee: this.e2ee,
      iceServers: this.iceServers,
      bundle: this.bundle,
    });
    this.sfu = sfu;
    sfu.addEventListener("track", (event) => {
      const { track, source } = event.detail;
      if (source === "screen") {
        showScreenTrack(this, track);
        return;
      }
      if (!this.remoteStream.getTracks().includes(track)) this.remoteStream.addTrack(track);
      this._emitMedia();
    });
    sfu.addEventListener("closed", (event) => {
      if (event.detail.source === "screen") {
        dropScreenTrack(this);
        return;
      }
      for (const track of this.remoteStream.getTracks()) this.remoteStream.removeTrack(track);
      this._emitMedia();
    });
    sfu.addEventListener("state", () => this._onConnectionState());
    this._timer("connect", CONNECT_TIMEOUT_MS, () => this._giveUp());
    await sfu.publish(this.localStream);
    this.pc = sfu.uplink;
    this._scheduleQuality();
    this._onConnectionState();
  }

  async _onDescription(message) {
    let pc = this.pc;
    if (!pc) return;
    if (message.kind === "offer") {
      // Ours crossed an offer of the page before a reload: the other side follows ours.
      if (this._rejoining && pc.signalingState === "have-local-offer") return;
      if (this._remoteSession && sessionOf(message.sdp) !== this._remoteSession) {
        pc = this._renewPeerConnection(); // the other side reloaded: a new peer connection
      }
      this._remoteSession = sessionOf(message.sdp);
      pc = await this._applyOffer(pc, message);
      this._addLocalTracks();
      await this._flushIce();
      this._localReady = false;
      await pc.setLocalDescription(await pc.createAnswer());
      await this._settleGathering();
      this._sendDescription("answer", Boolean(message.restart));
    } else if (pc.signalingState === "have-local-offer") {
      if (this.awaitingRestartAnswer && !message.restart) return; // crossed ``relayed``
      this.awaitingRestartAnswer = false;
      this._remoteSession = sessionOf(message.sdp);
      this._rejoining = false;
      await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      await this._flushIce();
    }
  }

  /** Applies a remote offer; a restart offer the connection cannot take (its numbering is
   * another connection's: a device whose session ids do not change with its connection) is
   * taken as from a new connection. Returns the connection that took it. */
  async _applyOffer(pc, message) {
    try {
      await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
      return pc;
    } catch (error) {
      if (!message.restart || error.name !== "InvalidAccessError") throw error;
    }
    const renewed = this._renewPeerConnection();
    await renewed.setRemoteDescription({ type: "offer", sdp: message.sdp });
    return renewed;
  }

  async _onIce(message) {
    if (!this.pc || !this.pc.remoteDescription) {
      this._pendingIce.push(message);
      return;
    }
    await this._addIce(message);
  }

  async _flushIce() {
    const waiting = this._pendingIce;
    this._pendingIce = [];
    for (const message of waiting) await this._addIce(message);
  }

  async _addIce(message) {
    try {
      if (!message.candidate) {
        await this.pc.addIceCandidate();
        return;
      }
      const init = { candidate: message.candidate };
      if (message.sdp_mid != null) init.sdpMid = message.sdp_mid;
      if (message.sdp_mline_index != null) init.sdpMLineIndex = message.sdp_mline_index;
      if (init.sdpMid === undefined && init.sdpMLineIndex === undefined) init.sdpMLineIndex = 0;
      await this.pc.addIceCandidate(init);
    } catch (error) {
      // One unusable candidate (another address family, a stale generation) is not fatal.
      console.warn("call: ignored a remote ICE candidate", error);
    }
  }

  // --- WebRTC --------------------------------------------------------------------------------

  _createPeerConnection() {
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers,
      iceTransportPolicy: this.relayOnly ? "relay" : "all",
      bundlePolicy: "max-bundle",
    });
    this.pc = pc;
    this._scheduleQuality();
    pc.onicecandidate = (event) => {
      if (!this.active || !this.callId) return;
      if (!event.candidate) {
        this._sendIce({ type: "ice", call_id: this.callId, candidate: "" });
        return;
      }
      if (!event.candidate.candidate) return; // per-section end marker; the null one follows
      const message = { type: "ice", call_id: this.callId, candidate: event.candidate.candidate };
      if (event.candidate.sdpMid != null) message.sdp_mid = event.candidate.sdpMid;
      if (event.candidate.sdpMLineIndex != null) {
        message.sdp_mline_index = event.candidate.sdpMLineIndex;
      }
      this._sendIce(message);
    };
    pc.ontrack = (event) => {
      if (takeScreenTrack(this, event)) return; // the other side's shared screen
      if (!this.remoteStream.getTracks().includes(event.track)) {
        this.remoteStream.addTrack(event.track);
      }
      event.track.onunmute = () => this._emitMedia();
      event.track.onended = () => {
        this.remoteStream.removeTrack(event.track);
        this._emitMedia();
      };
      this._emitMedia();
    };
    pc.onconnectionstatechange = () => this._onConnectionState();
    pc.oniceconnectionstatechange = () => this._onConnectionState();
    return pc;
  }

  /** Drop the peer connection of the other side's previous page; a new one answers its offer. */
  _renewPeerConnection() {
    this._closePeerConnection();
    for (const track of this.remoteStream.getTracks()) this.remoteStream.removeTrack(track);
    for (const track of this.screenStream.getTracks()) this.screenStream.removeTrack(track);
    this._tracksAdded = false;
    this._pendingIce = [];
    this._localIce = [];
    this._localReady = false;
    this._emitMedia();
    return this._createPeerConnection();
  }

  _closePeerConnection() {
    this.pc.onicecandidate = null;
    this.pc.ontrack = null;
    this.pc.onconnectionstatechange = null;
    this.pc.oniceconnectionstatechange = null;
    this.pc.close();
  }

  _addLocalTracks() {
    if (this._tracksAdded || !this.pc) return;
    this._tracksAdded = true;
    const stream = this.localStream;
    for (const track of stream?.getTracks() ?? []) this.pc.addTrack(track, stream);
    if (this._offers()) {
      // Receive what we do not send: an audio-only fallback still sees the other's camera.
      const kinds = new Set(this.pc.getTransceivers().map((t) => t.receiver.track.kind));
      if (!kinds.has("audio")) this.pc.addTransceiver("audio", { direction: "recvonly" });
      if (this.media === "video" && !kinds.has("video")) {
        this.pc.addTransceiver("video", { direction: "recvonly" });
      }
    }
  }

  async _offer(restart) {
    const pc = this.pc;
    if (!pc || !this.active) return;
    if (pc.signalingState !== "stable") return;
    this._localReady = false;
    await pc.setLocalDescription(await pc.createOffer(restart ? { iceRestart: true } : {}));
    await this._settleGathering();
    this._sendDescription("offer", restart);
  }

  _settleGathering() {
    const pc = this.pc;
    if (!pc || pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      const check = () => {
        if (pc.iceGatheringState === "complete") done();
      };
      const timer = setTimeout(done, GATHER_WAIT_MS);
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  /** Send our current description, then the candidates it does not already carry. */
  _sendDescription(kind, restart) {
    if (!this.active || !this.pc) return;
    const sdp = this.pc.localDescription.sdp;
    const message = { type: "sdp", call_id: this.callId, kind, sdp };
    if (restart) message.restart = true;
    this.line.send(message);
    this._localReady = true;
    const held = this._localIce;
    this._localIce = [];
    const carried = new Set(
      sdp.split(/\r?\n/).filter((l) => l.startsWith("a=candidate:")).map((l) => candidateKey(l.slice(2))),
    );
    for (const ice of held) {
      if (!ice.candidate || !carried.has(candidateKey(ice.candidate))) this.line.send(ice);
    }
  }

  _sendIce(message) {
    if (this._localReady) this.line.send(message);
    else this._localIce.push(message);
  }

  _onConnectionState() {
    const pc = this.pc;
    if (!pc || !this.active) return;
    const state = pc.connectionState;
    if (state === "connected") {
      this._clearTimer("connect");
      this._clearTimer("recover");
      this._clearTimer("restart");
      this._restarts = 0;
      if (!this.connectedAt) this.connectedAt = Date.now();
      if (this.state !== "connected") {
        this.state = "connected";
        this._emit();
      }
      return;
    }
    if (!this.connectedAt) {
      // Still setting up: the connect timer covers this, and a failed path asks for a relay.
      if (state === "failed") askForRelay(this);
      return;
    }
    if (state === "disconnected" || state === "failed") {
      if (this.state === "connected") {
        this.state = "reconnecting";
        this._emit();
      }
      this._timer("recover", RECOVER_WITHIN_MS, () => this._giveUp());
      // A new network breaks the WebSocket too; the restart needs it, so check it now.
      this.line.probe();
      if (state === "failed") this._restartIfBroken();
      else this._timer("restart", RESTART_AFTER_DISCONNECT_MS, () => this._restartIfBroken());
    }
  }

  _restartIfBroken() {
    const pc = this.pc;
    if (!pc || !this.active || this.role !== "caller" || this.sfu) return;
    if (pc.connectionState === "connected" || pc.connectionState === "new") return;
    if (this._restarts >= MAX_RESTARTS) return;
    this._restarts += 1;
    this._chain = this._chain.then(() => this._offer(true)).catch(() => {});
  }

  _giveUp() {
    if (!this.active) return;
    if (this.callId) this.line.send({ type: "hangup", call_id: this.callId });
    const noRelay = this.relayOnly && !hasTurn({ ice_servers: this.iceServers });
    this._finish(noRelay ? "no_relay" : "no_route");
  }

  async _fetchTurn() {
    try {
      return await this.api.turn();
    } catch {
      return { ice_servers: [], ttl: 0 };
    }
  }

  _getMedia(wantVideo) {
    return super._getMedia(wantVideo, 1280, 720);
  }

  _scheduleQuality() {
    this._timer("quality", QUALITY_INTERVAL_MS, () => {
      sendQuality(this).finally(() => {
        if (this.active) this._scheduleQuality();
      });
    });
  }

  // --- bookkeeping ---------------------------------------------------------------------------

  _release() {
    if (this.sfu) {
      this.sfu.close();
      this.e2ee?.close();
    } else if (this.pc) {
      this._closePeerConnection();
    }
  }
}
