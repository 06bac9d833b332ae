// Media through the server's SFU (docs/protocol.md 11.15): one connection that sends this
// device's microphone (and camera), one receive-only connection per other participant.
//
//   publish {sdp: offer, candidates gathered}  →   ← publish_answer {sdp}
//   ← subscribe_offer {subscription, participant, sdp}
//   subscribe_answer {subscription, sdp: answer, candidates gathered} →
//   ← unpublished {participant, source: "screen"}     (close that subscription)
//
// A shared screen is a second sending connection (screenshare.js, ``screenUplink``) and, for the
// others, a second receiving one per sharer: ``subscribe_offer`` with ``source: "screen"``.
//
// The SFU takes no trickled candidates: every description waits for ICE gathering to complete.
// It forwards packets as they are, so this side offers only Opus and VP8.
//
// Used by group calls (group.js) and by 1:1 calls the server relays through the SFU (call.js).
// Every frame is end-to-end encrypted: each sender and receiver goes through the call's
// E2EE worker (e2ee.js), so the SFU forwards only ciphertext behind a clear VP8/Opus prefix.

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
   * ``e2ee``: the call's CallE2ee (e2ee.js), which encrypts and decrypts every frame.
   * Events: ``track`` (detail: {participant, track, stream, source}), ``state`` (the sending
   * connection's connectionState changed), ``closed`` (detail: {participant, source}); ``source``
   * is "camera" (camera and microphone) or "screen" (a shared screen).
   */
  constructor({ line, callId, e2ee, iceServers = [] }) {
    super();
    this.line = line;
    this.e2ee = e2ee;
    this.callId = callId;
    this.iceServers = iceServers;
    this.uplink = null;
    this.screenUplink = null; // our shared screen's connection, while we share (screenshare.js)
    this.downlinks = new Map(); // subscription → {participant, pc, stream, source}
    this.closed = false;
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
    this.line.send({ type: "publish", call_id: this.callId, sdp: pc.localDescription.sdp });
  }

  async onPublishAnswer(message) {
    const pc = message.source === "screen" ? this.screenUplink : this.uplink;
    if (!pc || this.closed || pc.signalingState !== "have-local-offer") return;
    await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
  }

  /** One participant's media: a receive-only connection, answered with every candidate. */
  async onSubscribeOffer(message) {
    if (this.closed) return;
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
    for (const [subscription, entry] of [...this.downlinks]) {
      if (entry.participant === message.participant && entry.source === message.source) {
        this.closeSubscription(subscription);
      }
    }
  }

  /** Close the receiving connections of everyone not in ``present`` (participant ids). */
  keepOnly(present) {
    for (const [subscription, entry] of [...this.downlinks]) {
      if (!present.has(entry.participant)) this.closeSubscription(subscription);
    }
  }

  /** The receiving connections of one participant (for stats), of one ``source`` if given. */
  connectionsOf(participant, source = null) {
    return [...this.downlinks.values()]
      .filter((e) => e.participant === participant && (!source || e.source === source))
      .map((e) => e.pc);
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    for (const subscription of [...this.downlinks.keys()]) this.closeSubscription(subscription);
    if (this.uplink) {
      this.uplink.onconnectionstatechange = null;
      this.uplink.close();
    }
    this.screenUplink?.close();
    this.screenUplink = null;
  }
}
