// Screen sharing in a call (1:1 or group, docs/protocol.md 11.15.1 and 11.5.13): the screen is a
// SECOND video track, the camera goes on beside it, and the others show the screen large.
//
//   through the SFU (group calls, relayed 1:1 calls): a second sending connection,
//     publish {source: "screen", sdp} →  ← publish_answer {source: "screen"}
//     (the others get subscribe_offer {source: "screen"}); unpublish → (they get unpublished)
//   peer to peer (1:1): a second video transceiver and a renegotiation (sdp offer/answer in the
//     connected call); the screen is the second video section, the camera's the first.
//
// Either way ``mute {screen: true}`` tells the others, and the screen's frames go through the
// call's end-to-end encryption like the camera's (the sender's key covers all its tracks).
// Stopping — from the call's button or the browser's own "Stop sharing" — removes the track.
//
// Events of ScreenShare: ``change`` (sharing started or stopped).

import { gathered, preferCodec } from "./sfu.js";

export class ScreenShare extends EventTarget {
  /** ``path()``: how this call sends a second track now (``sfuPath``/``peerPath``), or null. */
  constructor(path) {
    super();
    this.path = path;
    this.track = null; // the screen's track while sharing
    this._sending = null; // the path it was sent on
  }

  get sharing() {
    return this.track !== null;
  }

  /** Whether this call can share now (it sends video and the browser can capture). */
  get possible() {
    return Boolean(this.path() && navigator.mediaDevices?.getDisplayMedia);
  }

  async toggle() {
    if (this.sharing) await this.stop();
    else await this.start();
  }

  /** Ask for a screen and send it; a refusal (the person cancels the picker) changes nothing. */
  async start() {
    const path = this.path();
    if (!path || this.sharing) return;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
    } catch (error) {
      if (error?.name === "NotAllowedError" || error?.name === "AbortError") return;
      throw error;
    }
    const [track] = stream.getVideoTracks();
    track.contentHint = "detail"; // text stays sharp: keep resolution, drop frames instead
    this.track = track;
    this._sending = path;
    track.addEventListener("ended", () => this.stop());
    this.dispatchEvent(new CustomEvent("change"));
    try {
      await path.add(track);
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  async stop() {
    const track = this.track;
    if (!track) return;
    this.track = null;
    track.stop();
    const path = this._sending;
    this._sending = null;
    this.dispatchEvent(new CustomEvent("change"));
    await path?.remove().catch(() => {});
  }
}

// --- through the SFU -------------------------------------------------------------------------

/** Sending a screen through the call's SFU (``SfuMedia``): its own connection, one track;
 * ``SfuMedia.onPublishAnswer`` applies the answer with ``source: "screen"`` to it. */
export function sfuPath(sfu) {
  return {
    async add(track) {
      if (sfu.closed) return;
      const pc = new RTCPeerConnection({ iceServers: sfu.iceServers, bundlePolicy: "max-bundle" });
      sfu.screenUplink = pc;
      const transceiver = pc.addTransceiver(track, { direction: "sendonly" });
      preferCodec(transceiver, "video");
      sfu.e2ee.attachSender(transceiver.sender, "video"); // the camera's key covers it too
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      if (sfu.closed || sfu.screenUplink !== pc) return;
      const message = { type: "publish", call_id: sfu.callId, sdp: pc.localDescription.sdp, source: "screen" };
      sfu.line.send(message);
    },
    async remove() {
      await null; // a call that is ending closes its SFU first: then nothing is sent
      const pc = sfu.screenUplink;
      sfu.screenUplink = null;
      if (!pc) return;
      pc.close();
      if (!sfu.closed) sfu.line.send({ type: "unpublish", call_id: sfu.callId, source: "screen" });
    },
  };
}

// --- peer to peer ------------------------------------------------------------------------------

/** The screen's transceiver of a 1:1 connection: any video transceiver after the first. */
export function screenTransceiver(pc) {
  const videos = pc.getTransceivers().filter((t) => t.receiver.track.kind === "video" && !t.stopped);
  return videos.length > 1 ? videos[1] : null;
}

/**
 * Sending a screen on a 1:1 call's own connection (``call.pc``): a second video transceiver,
 * renegotiated through the call (``call.renegotiate()``). It sends and receives, so the other
 * side may share on the same section; stopping leaves it receiving only.
 */
export function peerPath(call) {
  return {
    async add(track) {
      const pc = call.pc;
      let transceiver = screenTransceiver(pc);
      if (transceiver) await transceiver.sender.replaceTrack(track);
      else transceiver = pc.addTransceiver(track, { direction: "sendrecv" });
      transceiver.direction = "sendrecv";
      keepNegotiated(call, pc);
      await call.renegotiate();
    },
    async remove() {
      await null; // a call that is ending closes its connection first: then nothing is sent
      const pc = call.pc;
      const transceiver = pc && pc.connectionState !== "closed" ? screenTransceiver(pc) : null;
      if (!transceiver) return;
      await transceiver.sender.replaceTrack(null);
      transceiver.direction = "recvonly";
      await call.renegotiate();
    },
  };
}

const watched = new WeakSet();
const MAX_RETRIES = 3;

/**
 * Offers cross when both sides renegotiate at once (both share, or a share meets an ICE
 * restart): the one received wins (an implicit rollback of ours). Once the connection is stable
 * again, offer again while the screen's section does not yet send — or still sends — as wanted.
 */
function keepNegotiated(call, pc) {
  if (watched.has(pc)) return;
  watched.add(pc);
  let retries = 0;
  pc.addEventListener("signalingstatechange", () => {
    const transceiver = screenTransceiver(pc);
    if (pc.signalingState !== "stable" || !transceiver || !call.active) return;
    const wanted = transceiver.direction.startsWith("send");
    const current = Boolean(transceiver.currentDirection?.startsWith("send"));
    if (wanted === current) {
      retries = 0;
      return;
    }
    if (retries >= MAX_RETRIES) return;
    retries += 1;
    call.renegotiate();
  });
}

/**
 * The other side's screen in a 1:1 call: ``call.screenStream`` holds the screen's track (from
 * the second video transceiver peer to peer, or the SFU's ``source: "screen"`` subscription).
 * Returns true when ``event`` (a ``track`` event) was the screen's.
 */
export function takeScreenTrack(call, event) {
  const pc = event.target;
  if (event.track.kind !== "video" || !pc || screenTransceiver(pc) !== event.transceiver) return false;
  showScreenTrack(call, event.track);
  return true;
}

export function showScreenTrack(call, track) {
  const stream = call.screenStream;
  for (const old of stream.getTracks()) if (old !== track) stream.removeTrack(old);
  if (!stream.getTracks().includes(track)) stream.addTrack(track);
  track.onunmute = () => call._emitMedia();
  track.onmute = () => call._emitMedia();
  track.onended = () => call._emitMedia();
  call._emitMedia();
}

export function dropScreenTrack(call) {
  for (const track of call.screenStream.getTracks()) call.screenStream.removeTrack(track);
  call._emitMedia();
}

/** Whether a stream carries a video track with frames flowing now. */
export function showsVideo(stream) {
  return Boolean(stream?.getVideoTracks().some((t) => t.readyState === "live" && !t.muted));
}
