// Media through the server's SFU (docs/protocol.md 11.15): one connection that sends this
// device's microphone (and camera) and, with ``bundle`` (the default), receives every other
// participant's audio, video and shared screen too, renegotiated by the SFU (bundle.js):
//
//   publish {sdp: offer, candidates gathered, bundle: true}  →   ← publish_answer {sdp}
//   ← renegotiate {revision, sdp: offer, streams}   renegotiate_answer {revision, sdp} →
//   ← unpublished {participant, source: "screen"}     (its tracks go; the next offer agrees)
//
// A server that does not bundle answers the same ``publish`` and then offers one receive-only
// connection per other participant instead (the old way, still spoken: ``bundle: false``):
//
//   ← subscribe_offer {subscription, participant, sdp}
//   subscribe_answer {subscription, sdp: answer, candidates gathered} →
//
// A shared screen of our own is a second sending connection (screenshare.js, ``screenUplink``);
// without bundle, each other sharer's screen is one more receiving connection
// (``subscribe_offer`` with ``source: "screen"``).
//
// The SFU takes no trickled candidates: every new connection waits for ICE gathering to complete.
// It forwards packets as they are, so this side offers only Opus and VP8.
//
// Used by group calls (group.js) and by 1:1 calls the server relays through the SFU (call.js).
// Every frame is end-to-end encrypted: each sender and receiver goes through the call's
// E2EE worker (e2ee.js), so the SFU forwards only ciphertext behind a clear VP8/Opus prefix.

import { BundleReceiver } from "./bundle.js";
import { cameraTransceiverInit } from "./simulcast.js";

// The SFU never trickles, and neither can we: wait this long at most for gathering.
const GATHER_TIMEOUT_MS = 5000;
const PREFERRED = { audio: "audio/opus", video: "video/vp8" };

/** Resolve once the connection has gathered every candidate (or after a timeout). */
export function gathered(pc, timeoutMs = GATHER_TIMEOUT_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/**
 * Offer only the codec the SFU forwards (Opus, VP8), and RTX with VP8: without RTX the browser
 * sends its bandwidth-probing padding as empty packets on the video stream itself, which the
 * SFU would forward to everyone. The browser's own order if it can't.
 */
export function preferCodec(transceiver, kind) {
  if (typeof transceiver.setCodecPreferences !== "function") return;
  const codecs = RTCRtpSender.getCapabilities?.(kind)?.codecs ?? [];
  const media = codecs.filter((codec) => codec.mimeType.toLowerCase() === PREFERRED[kind]);
  if (!media.length) return;
  const wanted = [...media, ...codecs.filter((codec) => codec.mimeType.toLowerCase() === "video/rtx")];
  try {
    transceiver.setCodecPreferences(wanted);
  } catch (error) {
    console.warn("sfu: could not set codec preferences", error);
  }
}

export class SfuMedia extends EventTarget {
  /**
   * ``line``: the call WebSocket; ``callId``: the call; ``iceServers``: from GET /v1/turn;
   * ``e2ee``: the call's CallE2ee (e2ee.js), which encrypts and decrypts every frame;
   * ``bundle``: ask the SFU to send everything over the publishing connection (default).
   * Events: ``track`` (detail: {participant, track, stream, source}), ``state`` (the sending
   * connection's connectionState changed), ``closed`` (detail: {participant, source}); ``source``
   * is "camera" (camera and microphone) or "screen" (a shared screen).
   */
  constructor({ line, callId, e2ee, iceServers = [], bundle = true }) {
    super();
    this.line = line;
    this.e2ee = e2ee;
    this.callId = callId;
    this.iceServers = iceServers;
    this.bundle = bundle;
    // How the server sends us the others: "bundle" once a ``renegotiate`` came, "separate" once a
    // ``subscribe_offer`` did, null before either.
    this.mode = null;
    this.uplink = null; // our connection: sends, and with bundle receives everything
    this.screenUplink = null; // our shared screen's connection, while we share (screenshare.js)
    this.bundled = new BundleReceiver(this);
    this.downlinks = new Map(); // without bundle: subscription → {participant, pc, stream, source}
    this.closed = false;
    this._answered = false; // our publish is answered
  }

  _peerConnection() {
    return new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
  }

  /** Send our tracks: an offer with every candidate, as ``publish``. */
  async publish(stream) {
    if (this.closed || this.uplink) return;
    const pc = this._peerConnection();
    this.uplink = pc;
    pc.onconnectionstatechange = () => this.dispatchEvent(new CustomEvent("state"));
    for (const track of stream?.getTracks() ?? []) {
      const transceiver = pc.addTransceiver(track, cameraTransceiverInit(track, stream)); // simulcast.js
      preferCodec(transceiver, track.kind);
      this.e2ee.attachSender(transceiver.sender, track.kind);
    }
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    if (this.closed) return;
    this._sendPublish();
  }

  _sendPublish() {
    const message = { type: "publish", call_id: this.callId, sdp: this.uplink.localDescription.sdp };
    if (this.bundle) message.bundle = true;
    this.line.send(message);
  }

  async onPublishAnswer(message) {
    const screen = message.source === "screen";
    const pc = screen ? this.screenUplink : this.uplink;
    if (!pc || this.closed || pc.signalingState !== "have-local-offer") return;
    await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
    if (!screen) this._answered = true;
  }

  /**
   * An ``error`` that names no call: a server from before bundling refuses the unknown field
   * (``invalid_message``). Publish again the old way while ours is still unanswered.
   */
  onInvalidMessage(message) {
    if (!this.bundle || this._answered || this.closed || !this.uplink?.localDescription) return;
    if (!/bundle/.test(message.detail ?? "")) return;
    this.bundle = false;
    this._sendPublish();
  }

  /** ``renegotiate``: the SFU changed what our one connection receives (bundle.js). */
  async onRenegotiate(message) {
    if (this.closed) return;
    this.mode = "bundle";
    await this.bundled.onRenegotiate(message);
  }

  /** One participant's media: a receive-only connection, answered with every candidate. */
  async onSubscribeOffer(message) {
    if (this.closed) return;
    this.mode ??= "separate";
    this.closeSubscription(message.subscription);
    const pc = this._peerConnection();
    const stream = new MediaStream();
    const source = message.source ?? "camera";
    const entry = { participant: message.participant, pc, stream, source };
    this.downlinks.set(message.subscription, entry);
    pc.ontrack = (event) => {
      this.e2ee.attachReceiver(event.receiver, event.track.kind, message.participant, source);
      if (!stream.getTracks().includes(event.track)) stream.addTrack(event.track);
      const detail = { participant: message.participant, track: event.track, stream, source };
      this.dispatchEvent(new CustomEvent("track", { detail }));
      // Remote tracks start muted and unmute when media flows: the view shows video only then.
      event.track.onunmute = () => this.dispatchEvent(new CustomEvent("track", { detail }));
      event.track.onmute = () => this.dispatchEvent(new CustomEvent("track", { detail }));
    };
    await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    if (this.closed || this.downlinks.get(message.subscription) !== entry) return;
    this.line.send({
      type: "subscribe_answer",
      call_id: this.callId,
      subscription: message.subscription,
      sdp: pc.localDescription.sdp,
    });
  }

  closeSubscription(subscription) {
    const entry = this.downlinks.get(subscription);
    if (!entry) return;
    this.downlinks.delete(subscription);
    entry.pc.ontrack = null;
    entry.pc.close();
    for (const track of entry.stream.getTracks()) entry.stream.removeTrack(track);
    const detail = { participant: entry.participant, source: entry.source };
    this.dispatchEvent(new CustomEvent("closed", { detail }));
  }

  /** ``unpublished``: a participant stopped sharing its screen. */
  onUnpublished(message) {
    const { participant, source } = message;
    this.bundled.dropWhere((e) => e.participant === participant && e.source === source);
    for (const [subscription, entry] of [...this.downlinks]) {
      if (entry.participant === participant && entry.source === source) {
        this.closeSubscription(subscription);
      }
    }
  }

  /** Stop receiving everyone not in ``present`` (participant ids). */
  keepOnly(present) {
    this.bundled.dropWhere((e) => !present.has(e.participant));
    for (const [subscription, entry] of [...this.downlinks]) {
      if (!present.has(entry.participant)) this.closeSubscription(subscription);
    }
  }

  /**
   * What we receive now, one entry per track: [{participant, source, kind, receiver, pc}]
   * (``receiver.getStats()`` gives that track's inbound-rtp alone).
   */
  receiving() {
    const out = this.bundled.receiving().map((e) => ({ ...e, pc: this.uplink }));
    for (const { participant, source, pc } of this.downlinks.values()) {
      for (const receiver of pc.getReceivers()) {
        out.push({ participant, source, kind: receiver.track.kind, receiver, pc });
      }
    }
    return out;
  }

  /** The connection(s) carrying one participant's media (for stats), of one ``source`` if given. */
  connectionsOf(participant, source = null) {
    const pcs = new Set();
    for (const e of this.receiving()) {
      if (e.participant === participant && (!source || e.source === source)) pcs.add(e.pc);
    }
    return [...pcs];
  }

  /** Every open connection of ours to the SFU: one with bundle (two while we share a screen). */
  connections() {
    const all = [this.uplink, this.screenUplink, ...[...this.downlinks.values()].map((e) => e.pc)];
    return all.filter((pc) => pc && pc.connectionState !== "closed");
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.bundled.close();
    for (const subscription of [...this.downlinks.keys()]) this.closeSubscription(subscription);
    if (this.uplink) {
      this.uplink.onconnectionstatechange = null;
      this.uplink.close();
    }
    this.screenUplink?.close();
    this.screenUplink = null;
  }
}
